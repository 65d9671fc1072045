// `replay FILE-or-DIR [--trace] [--check]`: parse repro files, run each with every invariant
// checked after every step, and report the first violation and whether it is the one the
// file's `expect` line states. A directory replays every *.repro in it, in name order.
//
// Exit codes. Plain replay: 0 no file violates an invariant, 1 one does (whatever the expect
// line says). --check (for corpora kept outside the test suite): 0 exactly when every outcome
// matches its file's expect line, 1 otherwise, with the difference printed; a file without an
// expect line is bad input then. 2 unreadable input, before anything runs.
//
// A handle that no earlier line defines (`vfree v9` with no `v9 =`) makes its operation a
// no-op, as the shrinker needs; in a hand-written file that is usually a typo, so replay warns.
using System.CommandLine;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Invariants;

namespace PropertySuite.Cli;

public static class ReplayCommand
{
    public static Command Create(CliContext cx)
    {
        var file = new Argument<string>("FILE") { Description = "a repro file (propertysuite-repro 1), or a directory of them" };
        var trace = new Option<bool>("--trace") { Description = "print every step with the state it touched (page-table entries, frames, TLBs, faults, CPUs)" };
        var check = new Option<bool>("--check") { Description = "exit 0 exactly when every outcome matches its expect line, 1 otherwise" };
        var cmd = new Command("replay", "Replay a repro file (or every one in a directory) and report the first violated invariant.") { file, trace, check };
        cmd.SetAction(p =>
        {
            try
            {
                return Run(p.GetValue(file)!, p.GetValue(trace), cx.Out, p.GetValue(check), cx.Err);
            }
            catch (BadInputException e)
            {
                cx.Err.WriteLine($"error: {e.Message}");
                return ExitCodes.BadInput;
            }
        });
        return cmd;
    }

    /// <summary>Reads and checks the file; throws BadInputException naming what is wrong.</summary>
    public static Scenario Load(string path)
    {
        if (Directory.Exists(path)) throw new BadInputException($"{path}: is a directory, not a repro file");
        var info = new FileInfo(path);
        if (!info.Exists) throw new BadInputException($"{path}: no such file");
        if (info.Length > Repro.MaxBytes) throw new BadInputException($"{path}: file is {info.Length} bytes; a repro file has at most {Repro.MaxBytes}");
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BadInputException($"{path}: {e.Message}");
        }
        Scenario s;
        try
        {
            s = Repro.Parse(text);
        }
        catch (ReproParseException e)
        {
            throw new BadInputException($"{path}:{e.Line}:{e.Column}: {e.Reason}");
        }
        if (s.Expect?.Invariant is { } inv && inv != RunResult.EngineExceptionName && InvariantRegistry.All.All(i => i.Name != inv))
            throw new BadInputException($"{path}: the expect line names the unknown invariant '{inv}': known are {string.Join(", ", InvariantRegistry.All.Select(i => i.Name))}");
        return s;
    }

    /// <summary>The files a path names: itself, or the *.repro files of a directory in ordinal order.</summary>
    public static IReadOnlyList<string> Files(string path)
    {
        if (!Directory.Exists(path)) return [path];
        var files = Directory.GetFiles(path, "*" + FailureDatabase.Extension)
            .Where(f => !Path.GetFileName(f).StartsWith('.'))
            .Order(StringComparer.Ordinal).ToList();
        return files.Count > 0 ? files : throw new BadInputException($"{path}: directory holds no *{FailureDatabase.Extension} file");
    }

    /// <summary>Plain replay of one file (the form other code calls).</summary>
    public static int Run(string path, bool trace, TextWriter output) => Run(path, trace, output, check: false, TextWriter.Null);

    public static int Run(string path, bool trace, TextWriter output, bool check, TextWriter errors)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(errors);
        // Every file is read and checked before any runs: bad input means nothing ran.
        var scenarios = Files(path).Select(f => (File: f, Scenario: Load(f))).ToList();
        if (check && scenarios.FirstOrDefault(x => x.Scenario.Expect is null) is { File: { } missing })
            throw new BadInputException($"{missing}: has no expect line, so --check has nothing to compare (add `expect none` or `expect INVARIANT at STEP`)");

        bool violated = false, differs = false;
        foreach (var (file, s) in scenarios)
        {
            foreach (var warning in UndefinedHandles(s, File.ReadAllText(file)))
                errors.WriteLine($"warning: {file}:{warning}");
            var (v, d) = RunOne(file, s, trace, output);
            violated |= v;
            differs |= d;
        }
        if (scenarios.Count > 1)
            output.WriteLine($"replayed {scenarios.Count} files");
        if (check) return differs ? ExitCodes.Violation : ExitCodes.Ok;
        return violated ? ExitCodes.Violation : ExitCodes.Ok;
    }

    private static (bool Violated, bool Differs) RunOne(string path, Scenario s, bool trace, TextWriter output)
    {
        output.WriteLine($"replay {path}: variant {s.VariantName}, config {s.Arch.Name}, memory {Engine.Config.ArchConfig.FormatSize(s.Machine.MemoryBytes)}, {s.Machine.Cpus} cpu(s), {s.Ops.Length} operation(s)");
        var tracer = trace ? new StepTracer() : null;
        var r = ScenarioRunner.Run(s,
            trace: tracer is null ? null : (i, op, k) => { foreach (var line in tracer.Describe(i, op, k)) output.WriteLine(line); },
            booted: tracer is null ? null : tracer.Attach);
        output.WriteLine(r.ToString());
        // The states of interest the run reached (KernelLog.Note), so that a hand-written
        // interleaving can be checked to reach the window it aims at.
        if (r.Reached.Any(kv => kv.Value > 0))
            output.WriteLine("reached: " + string.Join(", ", r.Reached.Where(kv => kv.Value > 0).Select(kv => kv.Value == 1 ? kv.Key : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{kv.Key} x{kv.Value}"))));
        bool differs = false;
        if (s.Expect is { } expect)
        {
            differs = expect != r.AsExpectation();
            output.WriteLine(!differs
                ? $"as expected ({expect})"
                : $"DIFFERS from the file's '{expect}': the replay gives '{r.AsExpectation()}'");
        }
        return (r.Failed, differs);
    }

    /// <summary>Operations that use a handle no earlier operation binds, as `L:C: ...` of the
    /// file's text (operation lines are the lines after the header that are not comments,
    /// blank or the expect line, in order).</summary>
    public static IEnumerable<string> UndefinedHandles(Scenario s, string text)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(text);
        var opLines = new List<int>();
        string[] headers = ["config", "memory", "cpus", "hotplug", "variant", "expect"];
        var lines = text.ReplaceLineEndings("\n").Split('\n');
        for (int i = 1; i < lines.Length; i++)
        {
            string t = lines[i].Trim();
            if (t.Length == 0 || t.StartsWith('#')) continue;
            string first = t.Split(' ', '\t')[0];
            if (headers.Contains(first)) continue;
            opLines.Add(i + 1);
        }
        var bound = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < s.Ops.Length; i++)
        {
            var op = s.Ops[i];
            int line = i < opLines.Count ? opLines[i] : 0;
            foreach (var h in op.Uses.Where(h => !bound.Contains(h)).Distinct())
            {
                int col = i < opLines.Count ? lines[line - 1].IndexOf(h, StringComparison.Ordinal) + 1 : 0;
                yield return $"{line}:{Math.Max(col, 1)}: '{op}' uses the handle {h}, which no earlier line defines; the operation does nothing";
            }
            if (op.Bind is { } b) bound.Add(b);
        }
    }
}
