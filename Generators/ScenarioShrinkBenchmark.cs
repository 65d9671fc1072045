// How fast the real scenario shrinker (ScenarioShrinker through its greedy loop, every
// invariant checked after every step of every candidate) reduces a long failing scenario.
//
// The planted bug is broken-vunmap-skips-flush's three steps, `v1 = vmalloc 8K`, `read v1 0`,
// `vfree v1`: the read leaves a translation in cpu0's TLB and the vfree, skipping
// flush_tlb_kernel_range, leaves it stale. They are placed in order at positions drawn from a
// fixed seed among N benign steps that cannot cause or hide it: vmalloc of other areas (never
// read, never freed, so no other stale entry and no TLB fill that could evict v1's), RCU
// readers and grace periods, and free_empty_tables (v1's PTE table is never empty while v1 is
// mapped). A run is one machine, one CPU, so only chunk removal can shorten it. This is a
// benchmark, not a test: timings are printed, never asserted. "runs" and "steps run" (the
// candidates run and the steps they applied, every invariant checked after each) do not
// depend on the machine; wall and CPU time (the process's, all threads) do.
using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;

namespace PropertySuite.Generators;

/// <summary>One shrink: sizes before and after, candidates run, accepted shrinks, wall clock.</summary>
public sealed record ScenarioShrinkRow(int BenignSteps, ulong Seed, int OriginalOps, int FailingStep, int ShrunkOps, int Attempts, int Shrinks, long StepsRun, double Milliseconds, double CpuMilliseconds, string Shrunk);

public static class ScenarioShrinkBenchmark
{
    public const string Variant = "broken-vunmap-skips-flush";
    public const string Invariant = "TlbCoherentAfterFlush";
    public static IReadOnlyList<int> Sizes { get; } = [1_000, 3_000];
    public const int TrialsPerSize = 3;
    public const int MaxAttempts = 100_000;

    /// <summary>The three planted operations, in order.</summary>
    public static IReadOnlyList<Op> Trigger { get; } =
        [new VmallocOp(8192) { Bind = "v1" }, new ReadOp("v1", 0), new VfreeOp("v1")];

    /// <summary>The planted scenario: <paramref name="benignSteps"/> benign operations and the trigger.</summary>
    public static Scenario Plant(int benignSteps, ulong seed)
    {
        var rng = new Prng(seed);
        int length = benignSteps + Trigger.Count;
        var positions = new SortedSet<int>();
        while (positions.Count < Trigger.Count) positions.Add(rng.Next(length));
        var ops = ImmutableArray.CreateBuilder<Op>(length);
        int handle = 2, t = 0;
        for (int i = 0; i < length; i++)
        {
            if (positions.Contains(i)) { ops.Add(Trigger[t++]); continue; }
            ops.Add(rng.Next(10) switch
            {
                < 4 => new VmallocOp(rng.Range(1, 4) * 4096) { Bind = "v" + (handle++).ToString(CultureInfo.InvariantCulture) },
                < 7 => new RcuReaderOp(rng.Next(4)),
                < 9 => new SynchronizeRcuOp(),
                _ => new FreeEmptyTablesOp(),
            });
        }
        return new Scenario(ArchConfig.X86_64_4K, new MachineConfig(1L << 30, 1), Variant, ops.MoveToImmutable());
    }

    /// <summary>Shrinks one planted scenario with the real shrinker and runner.</summary>
    public static ScenarioShrinkRow Shrink(int benignSteps, ulong seed)
    {
        var s = Plant(benignSteps, seed);
        var first = ScenarioRunner.Run(s);
        if (first.FailedInvariant != Invariant)
            throw new InvalidOperationException($"the planted scenario does not fail as {Invariant}: {first}");
        long stepsRun = 0;
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        var shrunk = ScenarioShrinker.Minimize(s, first.Step, c =>
        {
            var r = ScenarioRunner.Run(c);
            stepsRun += r.StepsRun;
            return r.FailedInvariant == Invariant ? r.Step : null;
        }, MaxAttempts, out int attempts, out int shrinks);
        clock.Stop();
        cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu;
        return new ScenarioShrinkRow(benignSteps, seed, s.Ops.Length, first.Step, shrunk.Ops.Length, attempts, shrinks, stepsRun, clock.Elapsed.TotalMilliseconds, cpu.TotalMilliseconds,
            string.Join("; ", shrunk.Ops.Select(o => o.ToString())));
    }

    /// <summary>Runs every size and trial, printing one line each.</summary>
    /// <param name="warmUp">Shrink one 1,000-step scenario first, unreported, so that the first
    /// row is not charged for JIT compilation (tiered compilation needs a few hundred
    /// milliseconds of hot code before it optimizes).</param>
    /// <param name="sizes">Benign step counts (default <see cref="Sizes"/>).</param>
    public static IReadOnlyList<ScenarioShrinkRow> Run(TextWriter output, int trialsPerSize = TrialsPerSize, bool warmUp = true, IReadOnlyList<int>? sizes = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        var rows = new List<ScenarioShrinkRow>();
        if (warmUp) Shrink(1_000, 1);
        output.WriteLine($"ScenarioShrinker: {Variant}'s 3 steps planted among N benign steps (all invariants checked)");
        output.WriteLine($"{"N",6} {"seed",5} {"ops",6} {"fails at",8} {"shrunk",6} {"runs",6} {"shrinks",7} {"steps run",9} {"wall ms",9} {"cpu ms",9}  result");
        foreach (int n in sizes ?? Sizes)
            for (int trial = 0; trial < trialsPerSize; trial++)
            {
                var row = Shrink(n, (ulong)(n * 10 + trial));
                rows.Add(row);
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{row.BenignSteps,6} {row.Seed,5} {row.OriginalOps,6} {row.FailingStep,8} {row.ShrunkOps,6} {row.Attempts,6} {row.Shrinks,7} {row.StepsRun,9} {row.Milliseconds,9:F1} {row.CpuMilliseconds,9:F1}  {row.Shrunk}"));
            }
        return rows;
    }
}
