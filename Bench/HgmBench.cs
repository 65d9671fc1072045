// HGM throughput: scenario steps per second with every invariant checked after each step vs
// none, on an x86_64-4k-l4 machine of 4G holding 1,000 HGM-mapped 2M folios (issue 10's
// benchmark). Setup: a 1,000-page hugetlbfs file mapped twice in one mm; every page faulted in
// through the alias (a PMD each), the other mapping MADV_SPLIT and registered for minor faults,
// and 8 PAGE_SIZE pieces of every page UFFDIO_CONTINUEd (8,000 PTEs under 1,000 PTE tables).
// Measured: a seeded random mix of further continues, user loads through both mappings, HGM
// walks and collapses of single pages, timed after the setup (setup time is reported apart).
using System.Diagnostics;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Bench;

public static class HgmBench
{
    private const long Huge = 2L << 20, Page = 4096;

    public static int Run(string[] args)
    {
        int folios = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 1000;
        int steps = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 2000;
        var hgm = new HashSet<string>(StringComparer.Ordinal)
        {
            nameof(VmaTreeWellFormed), nameof(HugetlbPteShape), nameof(UserLeafMapsLiveFolio), nameof(MapcountEqualsPageTableReferences),
            nameof(RefcountCoversMappings), nameof(NoFreedFrameReachable), nameof(TlbCoherentAfterFlush), nameof(PageTableTreeWellFormed),
        };
        // Whole-memory scans of struct pages that cost in proportion to the HugeTLB folios (not HGM's).
        var perFolio = new HashSet<string>(StringComparer.Ordinal) { nameof(CompoundHeadResolvesRealHead), nameof(NoSharedLeafEntries) };
        var runs = new List<(string Label, IReadOnlyList<IInvariant> Invariants, int Steps)>
        {
            ("all invariants", InvariantRegistry.All, Math.Max(1, steps / 10)),
            ($"all but {string.Join(", ", perFolio)}", [.. InvariantRegistry.All.Where(i => !perFolio.Contains(i.Name))], steps),
            ("the HGM and per-mm invariants", [.. InvariantRegistry.All.Where(i => hgm.Contains(i.Name))], steps),
            ("no invariants", [], steps),
        };
        if (args.Length > 2 && args[2] == "each") runs = [.. InvariantRegistry.All.Where(i => hgm.Contains(i.Name)).Select(i => (i.Name, (IReadOnlyList<IInvariant>)[i], steps))];
        var t = new TextTable("workload steps checked with", "folios", "steps", "seconds", "steps per second");
        var setupClock = Stopwatch.StartNew();
        foreach (var (label, invariants, n) in runs)
        {
            // The setup runs unchecked (its 9,000 steps would dominate); the workload checked.
            var gate = new Gate();
            var run = new ScenarioExecution(Scenario([]).Boot(), [.. invariants.Select(i => new Gated(i, gate))]);
            setupClock.Restart();
            foreach (var op in Setup(folios))
                if (!run.Step(op)) throw new InvalidOperationException($"HGM benchmark setup failed: {run.Outcome}");
            double tSetup = setupClock.Elapsed.TotalSeconds;
            gate.On = true;
            var clock = Stopwatch.StartNew();
            foreach (var op in Workload(folios, n, seed: 1))
                if (!run.Step(op)) throw new InvalidOperationException($"HGM benchmark workload failed: {run.Outcome}");
            clock.Stop();
            t.Add(label, folios, n, clock.Elapsed.TotalSeconds, n / clock.Elapsed.TotalSeconds);
            if (label == runs[^1].Label) Console.WriteLine($"(setup of {folios} folios, unchecked: {tSetup:F1} s)");
        }
        Console.WriteLine($"HGM throughput (Release build; wall clock, single thread; x86_64-4k-l4 4G, {folios} HGM-mapped 2M folios, 8 PTEs each to start):");
        t.Write(Console.Out);
        return 0;
    }

    private sealed class Gate { public bool On; }

    /// <summary>An invariant checked only once the gate is open (the benchmark's setup is not timed with checks).</summary>
    private sealed class Gated(IInvariant inner, Gate gate) : IInvariant
    {
        public string Name => inner.Name;
        public string Claim => inner.Claim;
        public string Source => inner.Source;
        public Violation? Check(Engine.IKernelView k) => gate.On ? inner.Check(k) : null;
    }

    private static Scenario Scenario(List<Op> ops) =>
        new(ArchConfig.X86_64_4K, new MachineConfig(4L << 30, 2), "default", [.. ops]);

    private static List<Op> Setup(int folios)
    {
        var ops = new List<Op>
        {
            new HgmMmapOp(Huge, folios) { Bind = "a1" },
            new HgmAliasOp("a1") { Bind = "a2" },
        };
        for (int i = 0; i < folios; i++) ops.Add(new HgmTouchOp("a2", i * Huge));
        ops.Add(new MadviseSplitOp("a1", 0, folios * Huge));
        ops.Add(new UffdRegisterOp("a1", 0, folios * Huge, Minor: true));
        for (int i = 0; i < folios; i++)
            for (int j = 0; j < 8; j++) ops.Add(new UffdioContinueOp("a1", i * Huge + j * 64 * Page, Page));
        return ops;
    }

    private static List<Op> Workload(int folios, int steps, int seed)
    {
        var rng = new Random(seed);
        var ops = new List<Op>();
        for (int n = 0; n < steps; n++)
        {
            long page = rng.NextInt64(folios) * Huge;
            ops.Add(rng.Next(10) switch
            {
                < 4 => new UffdioContinueOp("a1", page + (rng.NextInt64(511) + 1) * Page, Page),
                < 6 => new HgmTouchOp("a1", page + rng.NextInt64(512) * Page) { Cpu = rng.Next(2) },
                < 8 => new HgmTouchOp("a2", page + rng.NextInt64(512) * Page) { Cpu = rng.Next(2) },
                8 => new HgmWalkOp("a1", page + rng.NextInt64(512) * Page),
                _ => new MadviseCollapseOp("a1", page, Huge),
            });
        }
        return ops;
    }
}
