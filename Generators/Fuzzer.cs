// The fuzz loop behind `propertysuite fuzz`: fresh scenarios from one base seed, each run with
// every invariant checked after every step; the first violation of each invariant is shrunk
// (ScenarioShrinker through its greedy loop, same-invariant only) into a repro. Later
// violations of an invariant that already has a repro are counted, not shrunk again: the
// time goes to finding other bugs (syzkaller dedups crashes by title the same way).
//
// Scenario i uses seed Shard.SeedFor(baseSeed, i) and FsCheck-like size 1 + i mod 100, so a run
// is a pure function of (base seed, shard, options) up to where it stops; only the stopping
// point depends on the wall clock. Parallel fuzzing (Run with jobs > 1) generates and runs
// consecutive scenarios on several threads, a few ahead of the consumer, and takes their results
// in scenario order, so the number of jobs changes how fast a run goes, never what it finds.
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

    /// <summary>Runs scenarios from the next one on while <paramref name="more"/> says so, on
    /// <paramref name="jobs"/> threads, taking their results in scenario order (statistics,
    /// findings, shrinking) on the calling thread, so that what a run finds is what as many calls
    /// of <see cref="Next"/> give, whatever the number of jobs. Workers run ahead of the
    /// consumer by up to 32 scenarios each, so a slow scenario holds up only its own worker
    /// (scenario times are heavy-tailed: one in a hundred takes seconds), and <paramref name="more"/>
    /// is asked before each scenario is taken, so a deadline is overshot by at most the scenarios
    /// in flight. Scenarios run ahead past the stopping point are dropped as if never run.
    /// <paramref name="found"/> gets each new finding, <paramref name="taken"/> is called after
    /// each scenario is taken; with <paramref name="stopAtFirstFinding"/> the run ends at the first
    /// new finding. An exception in a worker (a harness bug) is rethrown here.</summary>
    public void Run(int jobs, Func<bool> more, Action<FuzzFinding> found, Action? taken = null, bool stopAtFirstFinding = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(jobs, 1);
        if (jobs == 1)
        {
            while (more())
            {
                var f = Next();
                taken?.Invoke();
                if (f is null) continue;
                found(f);
                if (stopAtFirstFinding) return;
            }
            return;
        }
        long first = ScenariosRun, handedOut = first;
        var ready = new Dictionary<long, (Scenario Scenario, RunResult Run)>();
        Exception? failed = null;
        var gate = new object();
        var room = new SemaphoreSlim(32 * jobs); // run-ahead: enough scenarios to cover a slow one (seconds) on another worker
        using var stop = new CancellationTokenSource();
        var workers = Enumerable.Range(0, jobs).Select(_ => new Thread(() =>
        {
            try
            {
                while (true)
                {
                    room.Wait(stop.Token);
                    long i = Interlocked.Increment(ref handedOut) - 1;
                    var (seed, size) = ScenarioAt(i);
                    var (sc, _, r) = ScenarioGenerator.Generate(seed, size, _options);
                    lock (gate) { ready[i] = (sc, r); Monitor.PulseAll(gate); }
                }
            }
            catch (OperationCanceledException) { }
            catch (Exception e)
            {
                lock (gate) { failed ??= e; Monitor.PulseAll(gate); }
            }
        }) { IsBackground = true, Name = "fuzz worker" }).ToList();
        workers.ForEach(w => w.Start());
        try
        {
            for (long want = first; more(); want++)
            {
                (Scenario Scenario, RunResult Run) got;
                lock (gate)
                {
                    while (!ready.Remove(want, out got))
                    {
                        if (failed is not null) throw new InvalidOperationException($"fuzz worker failed on a scenario near {want}: {failed.Message}", failed);
                        Monitor.Wait(gate);
                    }
                }
                room.Release();
                ScenariosRun = want + 1;
                var (seed, size) = ScenarioAt(want);
                var f = Consider(want, seed, size, got.Scenario, got.Run);
                taken?.Invoke();
                if (f is null) continue;
                found(f);
                if (stopAtFirstFinding) return;
            }
        }
        finally
        {
            stop.Cancel();
            // The workers finish the scenario each is running; their results are dropped.
            workers.ForEach(w => w.Join());
        }
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
