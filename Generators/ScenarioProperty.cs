// The property every test of the suite is built from: "every invariant holds for generated
// scenarios" (of one variant, or of the correct ones), run through PbtRunner with a budget.
// Generation runs and checks a scenario as it draws it (ScenarioGenerator), so the property
// takes that run instead of running the scenario again; shrink candidates are run here.
//
// On failure the shrunk scenario's counted `step` lines are named where that keeps the run
// (StepNaming: `step cpu1 to folio_try_get_rcu` survives a change in how many steps a path
// takes), then it is run once more to get its violation, rendered as a repro
// file with an `expect <Invariant> at <step>` line, parsed back and replayed to prove that the
// file reproduces exactly that violation, written atomically into the repro directory (Assert),
// and reported with the replay seeds and the exact commands that replay it.
//
// Shrinking keeps the failure: once the first failing scenario is seen, a candidate counts as
// failing only if it violates the same invariant (an engine exception: the same exception
// type). Otherwise a shrink could slide from the bug that was found to another one and report
// a repro for neither (Hypothesis calls this slippage).
//
// Statistics count the generated scenarios only (not the shrink candidates): what the run
// exercised, see RunStatistics.
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;

namespace PropertySuite.Generators;

/// <summary>A falsified scenario property, shrunk and replayed.</summary>
/// <param name="Original">The first generated scenario that failed.</param>
/// <param name="Shrunk">The shrunk scenario with its expectation (the repro).</param>
/// <param name="Run">The run of <paramref name="Shrunk"/>: invariant, step, evidence.</param>
public sealed record ScenarioFailure(
    Scenario Original,
    Scenario Shrunk,
    RunResult Run,
    string StepReplay,
    string RunReplay,
    int TestsRun,
    int Shrinks)
{
    public string Invariant => Run.FailedInvariant!;
    public int Step => Run.Step;
    public string Evidence => Run.Violation!.Evidence;
    /// <summary>Operation lines of the shrunk repro (the meta-tests' bound is on this).</summary>
    public int ReproOps => Shrunk.Ops.Length;
}

/// <summary>The outcome of a scenario property.</summary>
/// <param name="TimeToFind">Wall clock spent generating and running scenarios up to and
/// including the first failure (all of it when nothing failed). Reported, never compared.</param>
/// <param name="TimeToShrink">Wall clock spent shrinking.</param>
public sealed record ScenarioPropertyResult(
    string Name,
    ScenarioOptions Options,
    PbtResult<Scenario> Pbt,
    RunStatistics Statistics,
    ScenarioFailure? Failure,
    TimeSpan TimeToFind,
    TimeSpan TimeToShrink)
{
    public bool Passed => Failure is null;
}

public static class ScenarioProperty
{
    /// <summary>The CLI command that replays a repro file from the repository root.</summary>
    public const string CliReplay = "dotnet run --project Cli -c Release -- replay";

    /// <summary>Runs the property and returns the outcome; writes nothing, throws only on
    /// harness errors (bad options, a repro that does not replay).</summary>
    /// <param name="name">Seeds derive from it (PbtRunner): give each property its own.</param>
    public static ScenarioPropertyResult Check(string name, ScenarioOptions options, Budget budget)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Check(name, ScenarioGenerator.Gen(options), options, budget);
    }

    /// <summary><see cref="Check(string, ScenarioOptions, Budget)"/> over scenarios from any
    /// generator (hand-built ones, say), shrunk and reported the same way.</summary>
    public static ScenarioPropertyResult Check(string name, FsCheck.Gen<Scenario> gen, ScenarioOptions options, Budget budget)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(gen);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(budget);

        var stats = new RunStatistics();
        var runs = new ConditionalWeakTable<Scenario, RunResult>();
        string? target = null;
        var clock = Stopwatch.StartNew();
        TimeSpan found = TimeSpan.Zero;

        string? Check(Scenario s)
        {
            // A generated scenario has run (and been checked) while it was drawn; a shrink
            // candidate, or a scenario from another generator, runs now.
            var r = ScenarioGenerator.RunOf(s) ?? ScenarioRunner.Run(s);
            runs.AddOrUpdate(s, r);
            if (target is null)
            {
                stats.Add(s, r);
                if (!r.Failed) return null;
                target = Signature(r);
                found = clock.Elapsed;
                return r.ToString();
            }
            return r.Failed && Signature(r) == target ? r.ToString() : null;
        }

        // The failing step is looked up when FsCheck enumerates the candidates, which it does
        // after running the property on s (see ScenarioShrinker.Candidates).
        IEnumerable<Scenario> Shrink(Scenario s) =>
            ScenarioShrinker.Candidates(s, () => runs.TryGetValue(s, out var r) && r.Failed ? r.Step : null);

        var pbt = PbtRunner.Run(name, gen, Shrink, Check, budget);
        var total = clock.Elapsed;
        if (pbt.Failure is not { } f)
            return new ScenarioPropertyResult(name, options, pbt, stats, null, total, TimeSpan.Zero);

        var shrunk = StepNaming.NameSteps(f.Shrunk);
        var run = ScenarioRunner.Run(shrunk);
        if (!run.Failed || Signature(run) != target)
            throw new InvalidOperationException($"property {name}: the shrunk scenario no longer fails as {target} ({run}); the engine is not deterministic:\n{shrunk}");
        var failure = new ScenarioFailure(f.Original, shrunk with { Expect = run.AsExpectation() }, run, f.StepReplay, f.RunReplay, f.TestsRun, f.Shrinks);
        VerifyReplays(name, failure, ReproText(name, failure));
        return new ScenarioPropertyResult(name, options, pbt, stats, failure, found, total - found);
    }

    /// <summary>
    /// Runs the property; on failure writes the repro file into the budget's repro directory
    /// and throws <see cref="PropertyFailedException"/> with the full report.
    /// </summary>
    /// <param name="budget">Null: <see cref="Budget.FromEnvironment"/>.</param>
    /// <param name="testFilter">What `dotnet test --filter FullyQualifiedName~...` needs to
    /// select the calling test (default: <paramref name="name"/> up to its first '/').</param>
    public static ScenarioPropertyResult Assert(string name, ScenarioOptions options, Budget? budget = null, string? testFilter = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(options);
        budget ??= Budget.FromEnvironment();
        string filter = testFilter is null ? TestFilter(name) : $"FullyQualifiedName~{testFilter}";
        if (budget.Replay is null) ReplayStoredFirst(name, options, budget, filter);
        var result = Check(name, options, budget);
        if (result.Failure is not { } f) return result;

        string text = ReproText(name, f, filter);
        string path = PbtRunner.WriteReproAtomically(budget.ReproDir, ReproFileName(f.Shrunk, name), text);
        var commands = ReplayCommandsForFilter(filter, f, result.Pbt.TestsPerRun, path);
        var report = new StringBuilder();
        report.Append(CultureInfo.InvariantCulture, $"Property {name} falsified after {f.TestsRun} test(s); shrunk from {f.Original.Ops.Length} to {f.ReproOps} operation(s) in {f.Shrinks} shrink(s).\n");
        report.Append(f.Run).Append('\n');
        report.Append("Repro (written to ").Append(path).Append("):\n");
        report.Append(text);
        report.Append("Replay the failing case: ").Append(commands[0]).Append('\n');
        report.Append("Replay the whole run:    ").Append(commands[1]).Append('\n');
        report.Append("Replay the repro file:   ").Append(commands[2]).Append('\n');
        report.Append("Generated before the failure:\n").Append(result.Statistics.Render());
        throw new PropertyFailedException(report.ToString(), f.Run.EngineError)
        {
            Invariant = f.Invariant,
            Step = f.Step,
            Evidence = f.Evidence,
            ReproText = text,
            ReproPath = path,
            StepReplay = f.StepReplay,
            RunReplay = f.RunReplay,
            ReplayCommands = commands,
        };
    }

    /// <summary>The replay commands: the failing case and the whole run through `dotnet test`,
    /// and the repro file through the CLI (<paramref name="testFilter"/>: a FullyQualifiedName~ value).</summary>
    public static IReadOnlyList<string> ReplayCommands(string testFilter, ScenarioFailure f, int testsPerRun, string reproPath) =>
        ReplayCommandsForFilter($"FullyQualifiedName~{testFilter}", f, testsPerRun, reproPath);

    /// <summary><see cref="ReplayCommands"/> with a whole `dotnet test --filter` expression.</summary>
    public static IReadOnlyList<string> ReplayCommandsForFilter(string filter, ScenarioFailure f, int testsPerRun, string reproPath) =>
    [
        PbtRunner.ReplayCommandForFilter(filter, f.StepReplay),
        PbtRunner.ReplayCommandForFilter(filter, f.RunReplay, testsPerRun),
        $"{CliReplay} {reproPath}",
    ];

    /// <summary>
    /// The `dotnet test --filter` expression that selects exactly the test a property name
    /// stands for. A name `Class.Method/row` is a theory row (xunit's display name of a
    /// one-argument theory ends in <c>"row")</c>), so the filter also pins the row (checked by
    /// hand: `dotnet test --filter` with it runs exactly one row of MetaTests): without it
    /// every row of the theory would run. Other names select by FullyQualifiedName.
    /// </summary>
    public static string TestFilter(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        int slash = name.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0) return $"FullyQualifiedName~{name}";
        // In a VSTest filter '(' and ')' are operators, escaped with a backslash; `dotnet test`
        // hands the filter to MSBuild, which refuses a bare '"', so the quotes are written %22
        // (MSBuild's escape, unescaped before VSTest sees the filter).
        return $"FullyQualifiedName~{name[..slash]}&DisplayName~%22{name[(slash + 1)..]}%22\\)";
    }

    /// <summary>The failure database (FailureDatabase): repros an earlier run left in the repro
    /// directory that this property covers are replayed before anything is generated; one that
    /// still fails fails the property with its path, until it is deleted or pinned.</summary>
    private static void ReplayStoredFirst(string name, ScenarioOptions options, Budget budget, string filter)
    {
        foreach (var r in FailureDatabase.Replay(budget.ReproDir, options, FailureDatabase.CorpusDirectory(Directory.GetCurrentDirectory())))
        {
            if (r.Error is { } error)
                throw new PropertyFailedException($"Property {name}: a stored repro in {budget.ReproDir} does not parse: {error}\nFix or delete it.");
            if (!r.StillFails) continue;
            var run = r.Run!;
            var report = new StringBuilder();
            report.Append(CultureInfo.InvariantCulture, $"Property {name}: the stored repro {r.Path}, which an earlier run wrote, still fails (replayed before generating anything new):\n");
            report.Append(run).Append('\n');
            report.Append(File.ReadAllText(r.Path));
            report.Append("Replay the repro file:   ").Append(CliReplay).Append(' ').Append(r.Path).Append('\n');
            report.Append("Re-run this property:    dotnet test --filter '").Append(filter).Append("'\n");
            report.Append("Delete the file once the bug is fixed, or pin it by moving it to Snapshots/Corpus.\n");
            throw new PropertyFailedException(report.ToString(), run.EngineError)
            {
                Invariant = run.FailedInvariant,
                Step = run.Step,
                Evidence = run.Violation?.Evidence,
                ReproText = File.ReadAllText(r.Path),
                ReproPath = r.Path,
                ReplayCommands = [$"{CliReplay} {r.Path}"],
            };
        }
    }

    /// <summary>What identifies a failure while shrinking: the invariant, and for an engine
    /// exception also its type.</summary>
    public static string Signature(RunResult r) =>
        r.EngineError is { } e ? $"{r.FailedInvariant}:{e.GetType().FullName}" : r.FailedInvariant ?? "";

    /// <summary>The repro file: the shrunk scenario (with its expect line) and, as comments
    /// after the version line, where it comes from and how to replay the search.</summary>
    public static string ReproText(string name, ScenarioFailure f) => ReproText(name, f, TestFilter(name));

    /// <summary><see cref="ReproText(string, ScenarioFailure)"/> naming the test filter that replays it.</summary>
    public static string ReproText(string name, ScenarioFailure f, string filter)
    {
        ArgumentNullException.ThrowIfNull(f);
        var comments = new List<string>
        {
            $"property {name}: {f.Invariant} violated at step {f.Step}",
            f.Evidence,
            $"found after {f.TestsRun} test(s), shrunk from {f.Original.Ops.Length} to {f.ReproOps} operation(s) in {f.Shrinks} shrink(s)",
            $"{PbtRunner.ReplayCommandForFilter(filter, f.StepReplay)} replays the failing case",
        };
        return WithComments(f.Shrunk, comments);
    }

    /// <summary>A scenario's repro text with comment lines after the version line. Comments
    /// are single lines cut to fit the parser's line limit.</summary>
    public static string WithComments(Scenario s, IEnumerable<string> comments)
    {
        string text = s.ToString();
        int firstLine = text.IndexOf('\n', StringComparison.Ordinal) + 1;
        var sb = new StringBuilder(text[..firstLine]);
        foreach (var c in comments)
        {
            string line = "# " + c.ReplaceLineEndings(" ");
            if (line.Length > Repro.MaxLineLength) line = line[..(Repro.MaxLineLength - 3)] + "...";
            sb.Append(line).Append('\n');
        }
        sb.Append(text[firstLine..]);
        return sb.ToString();
    }

    /// <summary>`variant-Invariant-hash.repro`: stable for the same scenario, distinct for different ones.</summary>
    public static string ReproFileName(Scenario shrunk) => ReproFileName(shrunk, null);

    /// <summary>`variant-Invariant-hash.repro` where the hash also covers the property's name, so
    /// two properties that shrink to the same scenario write two files, not one over the other.</summary>
    public static string ReproFileName(Scenario shrunk, string? property)
    {
        ArgumentNullException.ThrowIfNull(shrunk);
        if (property is not null)
        {
            string invariant = shrunk.Expect?.Invariant ?? "none";
            uint h = (uint)PbtRunner.StableHash(property + "\n" + shrunk);
            return string.Create(CultureInfo.InvariantCulture, $"{shrunk.VariantName}-{invariant}-{h:x8}.repro");
        }
        string inv = shrunk.Expect?.Invariant ?? "none";
        uint hash = (uint)PbtRunner.StableHash(shrunk.ToString());
        return string.Create(CultureInfo.InvariantCulture, $"{shrunk.VariantName}-{inv}-{hash:x8}.repro");
    }

    /// <summary>Parses the repro text back and replays it: it must give the same scenario and
    /// the same violation at the same step with the same evidence.</summary>
    private static void VerifyReplays(string name, ScenarioFailure f, string text)
    {
        var parsed = Repro.Parse(text);
        if (!parsed.SameAs(f.Shrunk))
            throw new InvalidOperationException($"property {name}: the repro text does not parse back to the shrunk scenario:\n{text}\nparsed:\n{parsed}");
        var replay = ScenarioRunner.Run(parsed);
        if (replay.ToString() != f.Run.ToString())
            throw new InvalidOperationException($"property {name}: replaying the repro gives '{replay}', the property saw '{f.Run}':\n{text}");
    }
}
