// The fuzz loop behind `propertysuite fuzz`: fresh scenarios from one base seed, each run with
// every invariant checked after every step; the first violation of each invariant is shrunk
// (ScenarioShrinker through its greedy loop, same-invariant only) into a repro. Later
// violations of an invariant that already has a repro are counted, not shrunk again: the
// time goes to finding other bugs (syzkaller dedups crashes by title the same way).
//
// Scenario i uses seed Shard.SeedFor(baseSeed, i) and FsCheck-like size 1 + i mod 100, so a run
// is a pure function of (base seed, shard, options) up to where it stops; only the stopping
// point depends on the wall clock. Parallel fuzzing (NextBatch) generates and runs a batch of
// consecutive scenarios on several threads and then takes their results in scenario order, so
// the number of jobs changes how fast a run goes, never what it finds.
using System.Diagnostics;
using System.Globalization;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;

namespace PropertySuite.Generators;

/// <summary>A violation found by fuzzing, shrunk.</summary>
public sealed record FuzzFinding(
    long ScenarioIndex,
    ulong ScenarioSeed,
    int Size,
    Scenario Original,
    Scenario Shrunk,
    RunResult Run,
    int Attempts,
    int Shrinks,
    TimeSpan ShrinkTime)
{
    public string Invariant => Run.FailedInvariant!;
}

public sealed class Fuzzer
{
    /// <summary>Most candidates one shrink may run (FsCheck's own cap is 5,000; ours is higher
    /// because a fuzz run has time to spare, and chunk removal rarely needs 200).</summary>
    public const int MaxShrinkAttempts = 20_000;

    private readonly ScenarioOptions _options;
    private readonly ulong _baseSeed;
    private readonly Shard _shard;
    private readonly List<FuzzFinding> _findings = new();

    public Fuzzer(ScenarioOptions options, ulong baseSeed, Shard? shard = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _baseSeed = baseSeed;
        _shard = shard ?? Shard.Single;
    }

    public RunStatistics Statistics { get; } = new();
    public IReadOnlyList<FuzzFinding> Findings => _findings;
    public long ScenariosRun { get; private set; }
    /// <summary>Violations seen per invariant, including those not shrunk again.</summary>
    public IReadOnlyDictionary<string, long> Violations => Statistics.Violations;

    /// <summary>The seed and size of scenario <paramref name="index"/>.</summary>
    public (ulong Seed, int Size) ScenarioAt(long index) => (_shard.SeedFor(_baseSeed, index), 1 + (int)(index % ScenarioGenerator.FullSize));

    /// <summary>Generates and runs the next scenario. Returns the finding when it violated an
    /// invariant that had no repro yet (shrunk), else null.</summary>
    public FuzzFinding? Next()
    {
        long index = ScenariosRun++;
        var (seed, size) = ScenarioAt(index);
        return Examine(index, seed, size);
    }

    /// <summary>Generates and runs the scenario of one (seed, size), as fuzz printed them for a
    /// finding (`fuzz --scenario-seed`); the result as <see cref="Next"/> gives it, with
    /// <paramref name="index"/> as its scenario number.</summary>
    public FuzzFinding? Examine(long index, ulong seed, int size)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        if (index >= ScenariosRun) ScenariosRun = index + 1;
        var (s, _, r) = ScenarioGenerator.Generate(seed, size, _options);
        return Consider(index, seed, size, s, r);
    }

    /// <summary>Generates and runs the next <paramref name="n"/> scenarios on up to
    /// <paramref name="jobs"/> threads, then takes their results in scenario order (statistics,
    /// findings, shrinking), so that the outcome is the one <paramref name="n"/> calls of
    /// <see cref="Next"/> give, whatever the number of jobs. With
    /// <paramref name="stopAtFirstFinding"/>, the scenarios after the first new finding are
    /// dropped as if never run.</summary>
    public IReadOnlyList<FuzzFinding> NextBatch(int n, int jobs, bool stopAtFirstFinding = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(jobs, 1);
        long first = ScenariosRun;
        var drawn = new (Scenario Scenario, RunResult Run)[n];
        // Each scenario boots its own kernel; generation and the invariants share no mutable state.
        Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = jobs }, i =>
        {
            var (seed, size) = ScenarioAt(first + i);
            var (s, _, r) = ScenarioGenerator.Generate(seed, size, _options);
            drawn[i] = (s, r);
        });
        var found = new List<FuzzFinding>();
        for (int i = 0; i < n; i++)
        {
            ScenariosRun = first + i + 1;
            var (seed, size) = ScenarioAt(first + i);
            if (Consider(first + i, seed, size, drawn[i].Scenario, drawn[i].Run) is { } f)
            {
                found.Add(f);
                if (stopAtFirstFinding) break;
            }
        }
        return found;
    }

    private FuzzFinding? Consider(long index, ulong seed, int size, Scenario s, RunResult r)
    {
        Statistics.Add(s, r);
        if (!r.Failed || _findings.Any(f => f.Invariant == r.FailedInvariant)) return null;

        string target = ScenarioProperty.Signature(r);
        var clock = Stopwatch.StartNew();
        var shrunk = StepNaming.NameSteps(ScenarioShrinker.Minimize(s, r.Step, c =>
        {
            var cr = ScenarioRunner.Run(c);
            return cr.Failed && ScenarioProperty.Signature(cr) == target ? cr.Step : null;
        }, MaxShrinkAttempts, out int attempts, out int shrinks));
        clock.Stop();
        var run = ScenarioRunner.Run(shrunk);
        var finding = new FuzzFinding(index, seed, size, s, shrunk with { Expect = run.AsExpectation() }, run, attempts, shrinks, clock.Elapsed);
        _findings.Add(finding);
        return finding;
    }

    /// <summary>The repro file of a finding, with comments saying how it was found.</summary>
    public string ReproText(FuzzFinding f, string command)
    {
        ArgumentNullException.ThrowIfNull(f);
        var ci = CultureInfo.InvariantCulture;
        return ScenarioProperty.WithComments(f.Shrunk,
        [
            string.Create(ci, $"{command}: scenario {f.ScenarioIndex} (seed {f.ScenarioSeed}, size {f.Size}) violated {f.Invariant} at step {f.Run.Step}"),
            f.Run.Violation!.Evidence,
            string.Create(ci, $"shrunk from {f.Original.Ops.Length} to {f.Shrunk.Ops.Length} operation(s) in {f.Shrinks} shrink(s), {f.Attempts} run(s)"),
        ]);
    }
}
