// `fuzz`: time-boxed random search. Before anything new, the repros already in --out that this
// run's options cover are replayed (FailureDatabase: a bug found once is checked first until the
// file is deleted or pinned in Snapshots/Corpus). Then fresh scenarios from one base seed
// (printed, and taken from --seed to repeat a run), every invariant checked after every step,
// the first violation of each invariant shrunk and written atomically into --out; each finding
// prints the command that re-runs exactly its scenario (--scenario-seed, --size).
// Exit 0 nothing found, 1 a violation (its invariant printed), 2 bad input (nothing is written
// then), 130/143 stopped by SIGINT/SIGTERM (the summary so far and the files written are printed).
// Without a terminal a progress line is printed every ProgressInterval (CI logs).
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using PropertySuite.Engine.Config;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace PropertySuite.Cli;

public static class FuzzCommand
{
    public static readonly TimeSpan DefaultTime = TimeSpan.FromSeconds(60);

    /// <summary>Longest scenario --max-steps (and PS_MAX_STEPS) may ask for: a generated step can
    /// itself run thousands of kernel steps, and 100,000,000 ran for minutes before printing anything.</summary>
    public const int MaxStepsBound = 10_000;

    /// <summary>How often a run without a terminal prints a progress line.</summary>
    public static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(5);

    public static Command Create(CliContext cx)
    {
        var time = new Option<string?>("--time") { Description = "stop after this long (500ms, 90s, 10m, 2h); default 60s unless --count is given" };
        var count = new Option<string?>("--count") { Description = "stop after this many scenarios (with --seed: a fully deterministic run)" };
        var seed = new Option<string?>("--seed") { Description = "base seed (default: a random one, printed)" };
        var variant = new Option<string?>("--variant") { Description = "kernel variant to fuzz (default: every correct variant, one drawn per scenario); see 'variants'" };
        var config = new Option<string?>("--config") { Description = "configuration (default: drawn per scenario among those the variant allows); see 'configs'" };
        var output = new Option<string?>("--out") { Description = "directory for shrunk repro files (default: PS_REPRO_DIR, else <repository>/repros)" };
        var maxSteps = new Option<string?>("--max-steps") { Description = $"longest scenario, at most {MaxStepsBound} (default: PS_MAX_STEPS, else 100)" };
        var stopOnFirst = new Option<bool>("--stop-on-first") { Description = "stop at the first violation (after shrinking and writing it)" };
        var scenarioSeed = new Option<string?>("--scenario-seed") { Description = "run only the scenario of this seed (as a finding prints it; needs --size and the same --variant/--config/--max-steps)" };
        var jobs = new Option<string?>("--jobs") { Description = $"scenarios run at once on this many threads, 1-{MaxJobs} (default: the number of cores, {Environment.ProcessorCount} here); what a run finds does not depend on it" };
        var size = new Option<string?>("--size") { Description = "the size of the --scenario-seed scenario (1-100)" };
        var cmd = new Command("fuzz", "Search for invariant violations with random scenarios; shrink and save what is found.")
        {
            time, count, seed, variant, config, output, maxSteps, stopOnFirst, scenarioSeed, size, jobs,
        };
        cmd.SetAction((p, ct) =>
        {
            try
            {
                var args = Validate(cx, p.GetValue(time), p.GetValue(count), p.GetValue(seed), p.GetValue(variant), p.GetValue(config), p.GetValue(output), p.GetValue(maxSteps))
                    with { StopOnFirst = p.GetValue(stopOnFirst), Jobs = ParseJobs(p.GetValue(jobs)) };
                args = WithScenario(args, p.GetValue(scenarioSeed), p.GetValue(size));
                return Task.FromResult(Run(cx, args, ct));
            }
            catch (BadInputException e)
            {
                cx.Err.WriteLine($"error: {e.Message}");
                return Task.FromResult(ExitCodes.BadInput);
            }
        });
        return cmd;
    }

    /// <summary>Most threads `--jobs` may ask for.</summary>
    public const int MaxJobs = 64;

    private static int ParseJobs(string? text) =>
        text is null ? Math.Clamp(Environment.ProcessorCount, 1, MaxJobs)
        : int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int j) && j >= 1 && j <= MaxJobs ? j
        : throw new BadInputException($"--jobs {text}: must be a whole number from 1 to {MaxJobs}");

    /// <summary>Validated arguments of one fuzz run.</summary>
    public sealed record FuzzArgs(ScenarioOptions Options, ulong Seed, bool SeedGiven, TimeSpan? Time, long? Count, string OutDir, Shard Shard)
    {
        public bool StopOnFirst { get; init; }
        /// <summary>Threads that run scenarios at once (--jobs); the findings do not depend on it.</summary>
        public int Jobs { get; init; } = 1;
        /// <summary>Set by --scenario-seed/--size: run that one scenario only.</summary>
        public (ulong Seed, int Size)? Scenario { get; init; }

        /// <summary>The command that repeats this run (up to where time stops it).</summary>
        public string Command()
        {
            var sb = new System.Text.StringBuilder();
            if (Shard.Count > 1) sb.Append(CultureInfo.InvariantCulture, $"{Budget.ShardVariable}={Shard} ");
            sb.Append(CultureInfo.InvariantCulture, $"{CliApp.Invocation} fuzz --seed {Seed}");
            AppendOptions(sb);
            return sb.ToString();
        }

        /// <summary>The command that runs exactly one scenario of this run again.</summary>
        public string ScenarioCommand(ulong scenarioSeed, int size)
        {
            var sb = new System.Text.StringBuilder();
            sb.Append(CultureInfo.InvariantCulture, $"{CliApp.Invocation} fuzz --scenario-seed {scenarioSeed} --size {size}");
            AppendOptions(sb);
            return sb.ToString();
        }

        private void AppendOptions(System.Text.StringBuilder sb)
        {
            if (Options.Variant is { } v) sb.Append(" --variant ").Append(v);
            if (Options.Config is { } c) sb.Append(" --config ").Append(c);
            sb.Append(CultureInfo.InvariantCulture, $" --max-steps {Options.MaxSteps}");
        }
    }

    private static FuzzArgs WithScenario(FuzzArgs a, string? seedText, string? sizeText)
    {
        if (seedText is null && sizeText is null) return a;
        if (seedText is null || sizeText is null)
            throw new BadInputException("--scenario-seed and --size go together: a finding prints both");
        ulong seed = ulong.TryParse(seedText, NumberStyles.None, CultureInfo.InvariantCulture, out ulong sd) ? sd
            : throw new BadInputException($"--scenario-seed {seedText}: must be a decimal integer from 0 to {ulong.MaxValue}");
        int size = int.TryParse(sizeText, NumberStyles.None, CultureInfo.InvariantCulture, out int sz) && sz >= 1 && sz <= ScenarioGenerator.FullSize ? sz
            : throw new BadInputException($"--size {sizeText}: must be a whole number from 1 to {ScenarioGenerator.FullSize}");
        return a with { Scenario = (seed, size), Count = 1, Time = null };
    }

    public static FuzzArgs Validate(CliContext cx, string? time, string? countText, string? seedText, string? variant, string? config, string? output, string? maxStepsText)
    {
        TimeSpan? limit = null;
        if (time is not null)
            limit = Budget.TryParseDuration(time, out var rule) ?? throw new BadInputException($"--time {time}: {rule}");
        long? count = countText is null ? null
            : long.TryParse(countText, NumberStyles.None, CultureInfo.InvariantCulture, out long c) && c >= 1 ? c
            : throw new BadInputException($"--count {countText}: must be a whole number of scenarios, at least 1");
        ulong? seed = seedText is null ? null
            : ulong.TryParse(seedText, NumberStyles.None, CultureInfo.InvariantCulture, out ulong sd) ? sd
            : throw new BadInputException($"--seed {seedText}: must be a decimal integer from 0 to {ulong.MaxValue}");
        int? maxSteps = maxStepsText is null ? null
            : int.TryParse(maxStepsText, NumberStyles.None, CultureInfo.InvariantCulture, out int m) && m >= 1 ? m
            : throw new BadInputException($"--max-steps {maxStepsText}: must be a positive integer");
        if (maxSteps > MaxStepsBound)
            throw new BadInputException($"--max-steps {maxStepsText}: at most {MaxStepsBound} (a scenario of that many operations already takes seconds to run and shrink)");
        if (limit is null && count is null) limit = DefaultTime;

        Budget env;
        try
        {
            env = cx.Budget();
        }
        catch (BudgetException e)
        {
            throw new BadInputException(e.Message);
        }
        if (maxSteps is null && env.MaxSteps > MaxStepsBound)
            throw new BadInputException($"{Budget.MaxStepsVariable}={env.MaxSteps}: fuzz takes at most {MaxStepsBound} steps per scenario");
        var options = new ScenarioOptions { Variant = variant, Config = config, MaxSteps = maxSteps ?? env.MaxSteps };
        try
        {
            options.Validate();
        }
        catch (ConfigException e)
        {
            throw new BadInputException(e.Message);
        }

        string dir = output is null ? env.ReproDir : Path.GetFullPath(output);
        if (File.Exists(dir)) throw new BadInputException($"--out {output}: is a file, not a directory");
        ulong s = seed ?? (ulong)Random.Shared.NextInt64(long.MaxValue);
        return new FuzzArgs(options, s, seed is not null, limit, count, dir, env.Shard);
    }

    public static int Run(CliContext cx, FuzzArgs a, CancellationToken ct)
    {
        var fuzzer = new Fuzzer(a.Options, a.Seed, a.Shard);
        var stop = cx.Stop;
        stop.Observed = true;
        try
        {
            return RunObserved(cx, a, ct, fuzzer, stop);
        }
        finally
        {
            stop.Observed = false;
        }
    }

    private static int RunObserved(CliContext cx, FuzzArgs a, CancellationToken ct, Fuzzer fuzzer, StopRequest stop)
    {
        var ci = CultureInfo.InvariantCulture;
        if (a.Scenario is { } one)
            cx.Out.WriteLine($"fuzz: one scenario, seed {one.Seed}, size {one.Size}, variant {a.Options.Variant ?? "any correct"}, config {a.Options.Config ?? "any"}, max steps {a.Options.MaxSteps}");
        else
            cx.Out.WriteLine($"fuzz: seed {a.Seed}{(a.SeedGiven ? "" : " (random; pass --seed to repeat)")}{(a.Shard.Count > 1 ? $", shard {a.Shard}" : "")}, variant {a.Options.Variant ?? "any correct"}, config {a.Options.Config ?? "any"}, max steps {a.Options.MaxSteps}, {a.Jobs} job(s), "
                + $"stop after {string.Join(" or ", new[] { a.Time is { } t ? FormatTime(t) : null, a.Count is { } c ? string.Create(ci, $"{c} scenarios") : null }.Where(x => x is not null))}{(a.StopOnFirst ? " or the first violation" : "")}");

        // The failure database first: what an earlier run saved and this run would look for.
        int stored = 0;
        var storedFailing = new List<StoredRepro>();
        if (a.Scenario is null)
        {
            foreach (var r in FailureDatabase.Replay(a.OutDir, a.Options, FailureDatabase.CorpusDirectory(a.OutDir)))
            {
                if (r.Error is { } error)
                {
                    cx.Err.WriteLine($"warning: skipped a stored repro that does not parse: {error}");
                    continue;
                }
                stored++;
                if (r.StillFails)
                {
                    storedFailing.Add(r);
                    cx.Out.WriteLine($"STILL FAILS {r.Path}: {r.Run}");
                    cx.Out.WriteLine($"  replay: {ScenarioProperty.CliReplay} {r.Path}");
                }
                else
                {
                    cx.Out.WriteLine($"passes now {r.Path} ({r.Scenario!.Expect?.ToString() ?? "no expect line"}; the replay gives {r.Run!.AsExpectation()}): delete it, or pin it in Snapshots/Corpus");
                }
            }
            if (stored > 0)
                cx.Out.WriteLine(string.Create(ci, $"replayed {stored} stored repro(s) from {a.OutDir}: {storedFailing.Count} still fail"));
        }

        var clock = Stopwatch.StartNew();
        var written = new List<(FuzzFinding Finding, string Path)>();
        bool More() =>
            !ct.IsCancellationRequested && !stop.Requested
            && !(a.StopOnFirst && (written.Count > 0 || storedFailing.Count > 0))
            && (a.Count is null || fuzzer.ScenariosRun < a.Count) && (a.Time is null || clock.Elapsed < a.Time);
        void Write(FuzzFinding f) =>
            written.Add((f, PbtRunner.WriteReproAtomically(a.OutDir, ScenarioProperty.ReproFileName(f.Shrunk), fuzzer.ReproText(f, a.Command()))));
        // One scenario given by --scenario-seed, or the run: scenario after scenario while More().
        void Fuzz(Action taken)
        {
            if (a.Scenario is { } sc)
            {
                if (fuzzer.Examine(0, sc.Seed, sc.Size) is { } f) Write(f);
                taken();
                return;
            }
            fuzzer.Run(a.Jobs, More, Write, taken, a.StopOnFirst);
        }

        if (cx.Interactive)
        {
            cx.Console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("fuzzing", maxValue: 1000);
                    Fuzz(() =>
                    {
                        double byTime = a.Time is { } t ? clock.Elapsed / t : 0;
                        double byCount = a.Count is { } n ? (double)fuzzer.ScenariosRun / n : 0;
                        task.Value = 1000 * Math.Min(1, Math.Max(byTime, byCount));
                        task.Description = string.Create(ci, $"{fuzzer.ScenariosRun} scenarios, {fuzzer.Findings.Count} violation(s)");
                    });
                    task.Value = task.MaxValue;
                });
        }
        else
        {
            // No terminal (CI logs, a pipe): a plain line now and then shows the run is alive.
            var next = ProgressInterval;
            Fuzz(() =>
            {
                if (clock.Elapsed >= next)
                {
                    next = clock.Elapsed + ProgressInterval;
                    cx.Out.WriteLine(string.Create(ci, $"progress {clock.Elapsed.TotalSeconds:F0} s: {fuzzer.ScenariosRun} scenarios, {fuzzer.Statistics.Steps} steps, {fuzzer.Findings.Count} violation(s)"));
                }
            });
        }
        clock.Stop();

        if (stop.Requested)
            cx.Out.WriteLine(string.Create(ci, $"stopped by {stop.Signal} after {fuzzer.ScenariosRun} scenarios; the summary so far:"));
        var stats = fuzzer.Statistics;
        cx.Out.WriteLine(string.Create(ci, $"ran {stats.Scenarios} scenarios, {stats.Steps} steps"));
        cx.Out.WriteLine(string.Create(ci, $"time {clock.Elapsed.TotalSeconds:F1} s, {stats.Steps / Math.Max(clock.Elapsed.TotalSeconds, 1e-9):F0} steps/s"));
        cx.Console.Write(OperationsTable(stats));
        cx.Console.Write(StatesTable(stats));
        if (stats.NeverReached().Count > 0) cx.Console.Write(NeverReachedTable(stats));
        cx.Console.Write(DistributionTable(stats));
        if (stats.Violations.Count > 0) cx.Console.Write(ViolationsTable(stats, written));
        foreach (var (f, path) in written)
        {
            cx.Out.WriteLine(string.Create(ci, $"VIOLATION {f.Invariant} at step {f.Run.Step} (scenario {f.ScenarioIndex}, seed {f.ScenarioSeed}, size {f.Size}): {f.Run.Violation!.Evidence}"));
            cx.Out.WriteLine(string.Create(ci, $"  repro: {path} ({f.Shrunk.Ops.Length} operation(s), shrunk from {f.Original.Ops.Length} in {f.Shrinks} shrink(s))"));
            cx.Out.WriteLine(string.Create(ci, $"  replay: {ScenarioProperty.CliReplay} {path}"));
            cx.Out.WriteLine(string.Create(ci, $"  scenario: {a.ScenarioCommand(f.ScenarioSeed, f.Size)}"));
            cx.Out.WriteLine(string.Create(ci, $"  time to shrink {f.ShrinkTime.TotalMilliseconds:F0} ms"));
        }
        if (written.Count == 0 && storedFailing.Count == 0) cx.Out.WriteLine("no violation found");
        if (stop.Requested)
        {
            cx.Out.WriteLine(written.Count == 0 ? "no repro written" : string.Create(ci, $"{written.Count} repro(s) written to {a.OutDir}"));
            return stop.ExitCode;
        }
        return written.Count > 0 || storedFailing.Count > 0 ? ExitCodes.Violation : ExitCodes.Ok;
    }

    private static string FormatTime(TimeSpan t) =>
        t.TotalHours >= 1 && t.TotalHours == Math.Floor(t.TotalHours) ? $"{t.TotalHours}h"
        : t.TotalMinutes >= 1 && t.TotalMinutes == Math.Floor(t.TotalMinutes) ? $"{t.TotalMinutes}m"
        : t.TotalSeconds >= 1 && t.TotalSeconds == Math.Floor(t.TotalSeconds) ? $"{t.TotalSeconds}s"
        : $"{t.TotalMilliseconds}ms";

    private static Table OperationsTable(RunStatistics stats)
    {
        // Counts of operation lines: generated by the families, applied = did something (an
        // operation whose handle is gone or whose CPU is busy is a no-op).
        var table = NewTable("operation", "generated (ops)", "applied (ops)");
        foreach (var kind in stats.Generated.Keys.Union(stats.Applied.Keys).Order(StringComparer.Ordinal))
        {
            bool pseudo = kind == "start" || kind.StartsWith("irq/", StringComparison.Ordinal);
            table.AddRow(Cells(kind, N(stats.Generated.GetValueOrDefault(kind)), pseudo ? "" : N(stats.Applied.GetValueOrDefault(kind))));
        }
        return table;
    }

    private static Table StatesTable(RunStatistics stats)
    {
        var table = NewTable("state reached", "scenarios reaching it", "times in all");
        foreach (var (state, n) in stats.ReachedScenarios) table.AddRow(Cells(state, N(n), N(stats.ReachedTimes.GetValueOrDefault(state))));
        if (stats.ReachedScenarios.Count == 0) table.AddRow(Cells("(none noted)", "", ""));
        return table;
    }

    /// <summary>The declared states (Generators/ReachTargets.cs) that no scenario of the run
    /// reached: the states this run did not check at all, with what reaching them takes.</summary>
    private static Table NeverReachedTable(RunStatistics stats)
    {
        var table = new Table().Border(TableBorder.Simple);
        table.AddColumn(new TableColumn(new Text("declared state never reached")));
        table.AddColumn(new TableColumn(new Text("what reaching it takes")));
        foreach (var (state, needs) in stats.NeverReached()) table.AddRow(Cells(state, needs));
        return table;
    }

    /// <summary>What the scenarios ran on: configurations, variants and CPU counts, in scenarios.</summary>
    private static Table DistributionTable(RunStatistics stats)
    {
        var table = NewTable("drawn", "scenarios");
        foreach (var (c, n) in stats.Configs) table.AddRow(Cells($"config {c}", N(n)));
        foreach (var (v, n) in stats.Variants) table.AddRow(Cells($"variant {v}", N(n)));
        foreach (var (c, n) in stats.Cpus) table.AddRow(Cells(string.Create(CultureInfo.InvariantCulture, $"{c} cpu(s)"), N(n)));
        return table;
    }

    private static Table ViolationsTable(RunStatistics stats, List<(FuzzFinding Finding, string Path)> written)
    {
        var table = NewTable("violated invariant", "scenarios", "first in scenario");
        foreach (var (inv, n) in stats.Violations)
            table.AddRow(Cells(inv, N(n), written.FirstOrDefault(w => w.Finding.Invariant == inv).Finding is { } f ? N(f.ScenarioIndex) : ""));
        return table;
    }

    private static Table NewTable(params string[] header)
    {
        var table = new Table().Border(TableBorder.Simple);
        table.AddColumn(new TableColumn(new Text(header[0])));
        foreach (var h in header.Skip(1)) table.AddColumn(new TableColumn(new Text(h)).RightAligned());
        return table;
    }

    private static IRenderable[] Cells(params string[] cells) => cells.Select(c => (IRenderable)new Text(c)).ToArray();

    private static string N(long n) => n.ToString(CultureInfo.InvariantCulture);
}
