// `replay FILE [--trace]`: parse a repro file, run it with every invariant checked after every
// step, and report the first violation (and whether it is the one the file's `expect` line
// states). Exit 0 no violation, 1 violation, 2 unreadable input.
using System.CommandLine;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Invariants;

namespace PropertySuite.Cli;

public static class ReplayCommand
{
    public static Command Create(CliContext cx)
    {
        var file = new Argument<string>("FILE") { Description = "a repro file (propertysuite-repro 1)" };
        var trace = new Option<bool>("--trace") { Description = "print every step with the state it touched (page-table entries, frames, TLBs, faults, CPUs)" };
        var cmd = new Command("replay", "Replay a repro file and report the first violated invariant.") { file, trace };
        cmd.SetAction(p =>
        {
            try
            {
                return Run(p.GetValue(file)!, p.GetValue(trace), cx.Out);
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

    public static int Run(string path, bool trace, TextWriter output)
    {
        var s = Load(path);
        output.WriteLine($"replay {path}: variant {s.VariantName}, config {s.Arch.Name}, memory {Engine.Config.ArchConfig.FormatSize(s.Machine.MemoryBytes)}, {s.Machine.Cpus} cpu(s), {s.Ops.Length} operation(s)");
        var tracer = trace ? new StepTracer() : null;
        var r = ScenarioRunner.Run(s,
            trace: tracer is null ? null : (i, op, k) => { foreach (var line in tracer.Describe(i, op, k)) output.WriteLine(line); },
            booted: tracer is null ? null : tracer.Attach);
        output.WriteLine(r.ToString());
        if (s.Expect is { } expect)
            output.WriteLine(expect == r.AsExpectation()
                ? $"as expected ({expect})"
                : $"DIFFERS from the file's '{expect}': the replay gives '{r.AsExpectation()}'");
        return r.Failed ? ExitCodes.Violation : ExitCodes.Ok;
    }
}
