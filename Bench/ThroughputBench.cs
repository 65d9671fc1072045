// Engine throughput: struct-page reads through vmemmap, kernel map/unmap of 4K and 2M ranges,
// and whole scenario steps with every invariant checked after each step vs none.
using System.Diagnostics;
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;
using PropertySuite.Invariants;

namespace PropertySuite.Bench;

public static class ThroughputBench
{
    public static int Run(string[] args)
    {
        var t = new TextTable("operation", "machine", "count", "seconds", "per second");
        StructPageReads(t, "x86_64-4k-l4", "4G");
        StructPageReads(t, "arm64-16k-l3", "4G");
        MapUnmap(t, "x86_64-4k-l4", PtLevel.Pte);
        MapUnmap(t, "x86_64-4k-l4", PtLevel.Pmd);
        if (args.Length > 0 && args[0] == "each")
        {
            var s0 = Workload.Scenario("x86_64-4k-l4", "1G", 2, 2000, seed: 1);
            foreach (var inv in InvariantRegistry.All) ScenarioSteps(t, s0, [inv], inv.Name);
            t.Write(Console.Out);
            return 0;
        }
        foreach (var (config, memory) in new[] { ("x86_64-4k-l4", "1G"), ("arm64-16k-l3", "1G"), ("x86_64-4k-l4", "1T") })
        {
            var s = Workload.Scenario(config, memory, 2, 4000, seed: 1);
            ScenarioSteps(t, s, InvariantRegistry.All, "all invariants");
            ScenarioSteps(t, s, [], "no invariants");
        }
        Console.WriteLine("Throughput (Release build; wall clock, single thread):");
        t.Write(Console.Out);
        return 0;
    }

    private static Kernel Boot(string config, string memory)
    {
        ArchConfig.TryParseSize(memory, out long bytes);
        return Kernel.Boot(ArchConfig.ByName(config), new MachineConfig(bytes, 2));
    }

    private static void StructPageReads(TextTable t, string config, string memory)
    {
        var k = Boot(config, memory);
        var task = new LambdaTask("reader", (_, _) => Idle());
        k.Sched.StartTask(0, task);
        var ctx = k.Cpus[0].Top!;
        var rng = new Random(5);
        const int n = 2_000_000;
        long[] pfns = Enumerable.Range(0, 4096).Select(_ => rng.NextInt64(k.Mem.MaxPfn)).ToArray();
        foreach (var (label, c) in new[] { ("read_page, random pfn, via cpu0 TLB", ctx), ("read_page, random pfn, walk only", (ExecContext?)null) })
        {
            long sink = 0;
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
            {
                k.Mmu.ReadStructPage(c, k.Arch.PfnToPage(pfns[i & 4095]), out var sp);
                sink += sp.Refcount;
            }
            clock.Stop();
            t.Add(label, $"{config} {memory}", n, clock.Elapsed.TotalSeconds, n / clock.Elapsed.TotalSeconds);
            GC.KeepAlive(sink);
        }
    }

    private static IEnumerable<StepStatus> Idle() { yield return StepStatus.Progress; }

    private static void MapUnmap(TextTable t, string config, PtLevel level)
    {
        var k = Boot(config, "4G");
        var a = k.Arch;
        long pages = a.LevelSize(level) >> a.PageShift;
        if (!k.Mem.TryAllocContigPages(pages, FrameOwner.Vmalloc, out long pfn))
            throw new InvalidOperationException($"{config}: no {pages} contiguous frames for the bench mapping");
        ulong size = (ulong)a.LevelSize(level);
        ulong va = (a.VmallocStart + size - 1) & ~(size - 1);
        const int n = 200_000;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < n; i++)
        {
            ulong at = va + (ulong)(i % 64) * size;
            k.BeginStep(i); // one step each, as in a scenario: the step's event log starts empty
            k.Pgtable.VmapRangeNoflush(at, pfn, pages, level, writable: true);
            k.Pgtable.VunmapRangeNoflush(at, at + size);
            k.Tlb.FlushTlbKernelRange(at, at + size);
        }
        clock.Stop();
        t.Add($"map+unmap+flush {ArchConfig.FormatSize((long)size)} ({level})", $"{config} 4G", n, clock.Elapsed.TotalSeconds, n / clock.Elapsed.TotalSeconds);
    }

    private static void ScenarioSteps(TextTable t, Engine.Scenario.Scenario s, IReadOnlyList<IInvariant> invariants, string label)
    {
        var (steps, seconds) = TimeScenario(s, invariants);
        t.Add($"scenario steps, {label}", $"{s.Arch.Name} {ArchConfig.FormatSize(s.Machine.MemoryBytes)}", steps, seconds, steps / seconds);
    }

    /// <summary>Runs <paramref name="s"/> checking <paramref name="invariants"/> after every step
    /// (after a 200-step warm-up run for the JIT): the steps run and the wall seconds they took.</summary>
    public static (long Steps, double Seconds) TimeScenario(Engine.Scenario.Scenario s, IReadOnlyList<IInvariant> invariants)
    {
        ScenarioRunner.Run(s with { Ops = s.Ops[..Math.Min(200, s.Ops.Length)] }, invariants); // warm-up (JIT)
        var clock = Stopwatch.StartNew();
        var r = ScenarioRunner.Run(s, invariants);
        clock.Stop();
        if (r.Failed) throw new InvalidOperationException($"benchmark scenario failed: {r}");
        return (r.StepsRun, clock.Elapsed.TotalSeconds);
    }
}
