// The incremental structures behind cheap per-step checking agree with their full-scan oracles:
// the page table's leaf-frame index (CountVmemmapFrames, NoLeafMapsFreeFrame) with a walk of
// PageTable.Leaves, and the table-entry index (PageTableTreeWellFormed) with a walk of every
// entry. Random page-table surgery on every config, deliberately broken variants and whole
// generated scenarios are compared step by step, corrupt trees included.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.EngineCore;

[Trait("Category", "engine")]
public class IncrementalOracleTests
{
    private static readonly NoLeafMapsFreeFrame LeafInvariant = new();
    private static readonly PageTableTreeWellFormed TreeInvariant = new();
    private static readonly NoSharedLeafEntries SharedLeafInvariant = new();

    private static List<(long, long)> OracleRuns(PageTable pt, ulong start, ulong end) =>
        LeafFrameIndex.Coalesce(pt.Leaves(start, end)
            .Select(w => (w.Entry.Pfn, (long)(pt.EntrySize(w.Table) >> pt.Arch.PageShift))).ToList());

    private static readonly NoFreedFrameReachable FreedFrameInvariant = new();

    /// <summary>The incremental invariants that judge only what a step changed: each is compared
    /// while its full scan passed at the previous comparison, and at the first step it fails.</summary>
    private static readonly (string Name, Func<Kernel, Violation?> Incremental, Func<Kernel, Violation?> Full)[] StepJudged =
    [
        (nameof(NoSharedLeafEntries), SharedLeafInvariant.Check, SharedLeafInvariant.CheckFullScan),
        (nameof(NoFreedFrameReachable), FreedFrameInvariant.Check, FreedFrameInvariant.CheckFullScan),
    ];

    private static bool[] AllClean() => [.. StepJudged.Select(_ => true)];

    /// <summary>Compares the indexes and the incremental invariants with their full scans; the
    /// step-judged ones while <paramref name="clean"/> says their full scan passed before.</summary>
    private static void AssertAgree(Kernel k, string when, bool[] clean)
    {
        for (int i = 0; i < StepJudged.Length; i++)
        {
            if (!clean[i]) continue;
            var (name, inc, full) = StepJudged[i];
            string? f = full(k)?.ToString(), n = inc(k)?.ToString();
            Assert.True(f == n, $"{when}: {name} full scan says {f ?? "ok"}, incremental {n ?? "ok"}");
            clean[i] = f is null;
        }
        AssertAgree(k, when);
    }

    private static void AssertAgree(Kernel k, string when)
    {
        var a = k.Arch;
        foreach (var (start, end) in new[] { (a.VmemmapStart, a.VmemmapEnd), (a.VmallocStart, a.VmallocEnd), (0UL, 0UL), (a.PageOffset, a.PageOffset + (ulong)a.PmdSize * 3) })
            Assert.True(OracleRuns(k.SwapperPgDir, start, end).SequenceEqual(k.SwapperPgDir.LeafFrames(start, end).Runs), $"{when}: runs of [{start:x}, {end:x})");
        Assert.True(k.Vmemmap.CountVmemmapFramesFullScan() == k.Vmemmap.CountVmemmapFrames(), $"{when}: vmemmap frames");
        Assert.Equal(LeafInvariant.CheckFullScan(k)?.ToString(), LeafInvariant.Check(k)?.ToString());
        Assert.Equal(TreeInvariant.CheckFullScan(k)?.ToString(), TreeInvariant.Check(k)?.ToString());
    }

    public static TheoryData<string, bool> ConfigsAndVariants()
    {
        var data = new TheoryData<string, bool>();
        foreach (var c in ArchConfig.All) { data.Add(c.Name, false); data.Add(c.Name, true); }
        return data;
    }

    /// <summary>Random surgery: vmalloc/vfree, block maps and splits, HVO-style remaps of vmemmap
    /// PTEs onto one frame, unmaps, permission changes, empty-table freeing (with the broken
    /// variant that leaves dangling parent entries, whose frames then come back as new tables).</summary>
    [Theory]
    [MemberData(nameof(ConfigsAndVariants))]
    public void IndexesAgreeWithFullScansUnderRandomPageTableSurgery(string config, bool danglingTables)
    {
        var arch = ArchConfig.ByName(config);
        var variant = new KernelVariant { Broken = new() { FreeTableKeepsParentEntry = danglingTables } };
        var k = Kernel.Boot(arch, new MachineConfig(Math.Max(1L << 30, 2 * arch.SectionSize), 2), variant);
        var rng = new Random(config.Sum(c => c) * 2 + (danglingTables ? 1 : 0));
        var areas = new List<VmArea>();
        ulong p = (ulong)arch.PageSize;
        var clean = AllClean();
        AssertAgree(k, "boot", clean);
        for (int step = 0; step < 100; step++)
        {
            k.BeginStep(step + 1);
            try
            {
            switch (rng.Next(8))
            {
                case 0:
                    var (area, _) = k.Vmalloc.VmallocNodeRange((ulong)rng.Next(1, 9) * p);
                    if (area is not null) areas.Add(area);
                    break;
                case 1 when areas.Count > 0:
                    int i = rng.Next(areas.Count);
                    k.Vmalloc.Vfree(areas[i]);
                    areas.RemoveAt(i);
                    break;
                case 2:
                {
                    // A PMD block in the upper half of vmalloc, then maybe split.
                    ulong va = ((arch.VmallocStart + (arch.VmallocEnd - arch.VmallocStart) / 2) & ~((ulong)arch.PmdSize - 1))
                               + (ulong)rng.Next(0, 4) * (ulong)arch.PmdSize;
                    if (k.SwapperPgDir.Walk(va).Entry.IsNone && k.SwapperPgDir.Walk(va).Level == PtLevel.Pmd || !k.SwapperPgDir.Walk(va).IsLeaf && k.SwapperPgDir.Walk(va).Level > PtLevel.Pmd)
                        k.Pgtable.VmapRangeNoflush(va, 0, arch.PmdSize >> arch.PageShift, PtLevel.Pmd, rng.Next(2) == 0);
                    var w = k.SwapperPgDir.Walk(va);
                    if (w.IsLeaf && w.Level == PtLevel.Pmd && rng.Next(2) == 0) k.SplitBlock(w.Table, w.Index);
                    break;
                }
                case 3:
                {
                    // Split a vmemmap block if any, then alias a vmemmap PTE onto its neighbour's frame.
                    ulong page = k.Arch.PfnToPage(rng.NextInt64(k.Mem.MaxPfn)) & ~(p - 1);
                    var w = k.SwapperPgDir.Walk(page);
                    if (w.IsLeaf && w.Level > PtLevel.Pte) { k.SplitBlock(w.Table, w.Index); w = k.SwapperPgDir.Walk(page); }
                    if (w.IsLeaf && w.Level == PtLevel.Pte && page >= arch.VmemmapStart + p)
                    {
                        if (k.Mmu.FrameOf(page - p, out _) is { } frame) k.SwapperPgDir.Set(w.Table, w.Index, Pte.MkLeaf(frame, writable: false));
                    }
                    break;
                }
                case 4 when areas.Count > 0:
                {
                    var a = areas[rng.Next(areas.Count)];
                    if (rng.Next(2) == 0) k.Pgtable.SetMemoryRw(a.Addr, a.Addr + a.Size); else k.Pgtable.SetMemoryRo(a.Addr, a.Addr + a.Size);
                    break;
                }
                case 5:
                {
                    ulong va = ((arch.VmallocStart + (arch.VmallocEnd - arch.VmallocStart) / 2) & ~((ulong)arch.PmdSize - 1));
                    k.Pgtable.VunmapRangeNoflush(va, va + 4 * (ulong)arch.PmdSize);
                    break;
                }
                case 6:
                    k.Tlb.FlushTlbAll();
                    k.Pgtable.FreeEmptyTables(arch.VmallocStart, arch.VmallocEnd, arch.VmallocStart, arch.VmallocEnd);
                    break;
                default:
                    // Consume page-table frames so freed (possibly still referenced) tables come back.
                    for (int n = 0; n < 3; n++)
                    {
                        var (a2, _) = k.Vmalloc.VmallocNodeRange(p);
                        if (a2 is not null) areas.Add(a2);
                    }
                    break;
            }
            }
            catch (ModelBugException) when (danglingTables)
            {
                // A walk through a dangling entry of the broken variant is refused (the engine's
                // BUG_ON); whatever state it left must still be summarised correctly.
            }
            AssertAgree(k, $"{config} step {step}", clean);
        }
    }

    /// <summary>A PTE table linked from a second vmemmap PMD entry: a walk by address misses its
    /// leaves there, the full scan finds them twice (the same frames through two entries), and
    /// the incremental form must notice that the tree is no longer one it can walk by address.</summary>
    [Fact]
    public void NoSharedLeafEntriesFallsBackToTheFullScanWhenATableHasTwoParents()
    {
        var k = Machines.Boot("x86_64-4k-l4", "1G");
        var pgd = k.SwapperPgDir;
        ulong va = k.Arch.PfnToPage(0), next = va + (ulong)k.Arch.PmdSize;
        var w = pgd.Walk(va);
        Assert.True(w.IsLeaf && w.Level == PtLevel.Pmd, $"vmemmap at {va:x} is a {w.Level} {(w.IsLeaf ? "leaf" : "entry")}");
        var pte = k.Pgtable.SplitPmd(w.Table, w.Index)!;
        var w2 = pgd.Walk(next);
        Assert.True(pgd.IsCanonicalTree);
        Assert.Null(SharedLeafInvariant.Check(k));

        k.BeginStep(1);
        pgd.Set(w2.Table, w2.Index, Pte.MkTable(pte.Pfn));

        Assert.False(pgd.IsCanonicalTree);
        var full = SharedLeafInvariant.CheckFullScan(k);
        Assert.NotNull(full);
        Assert.Equal(full!.ToString(), SharedLeafInvariant.Check(k)?.ToString());
        pgd.Set(w2.Table, w2.Index, w2.Entry);
        Assert.True(pgd.IsCanonicalTree);
    }

    [Theory]
    [InlineData("x86_64-4k-l4", "default")]
    [InlineData("arm64-16k-l3", "default")]
    [InlineData("x86_64-4k-l4", "broken-free-table-keeps-parent")]
    [InlineData("arm64-64k-l2", "broken-vunmap-skips-last-pte")]
    [InlineData("arm64-16k-l2", "broken-vunmap-skips-flush")]
    [InlineData("arm64-4k-l3", "broken-vfree-leaks-page")]
    public void InvariantsAgreeWithTheirOraclesAfterEveryScenarioStep(string config, string variant)
    {
        var rng = new Random(11);
        var lines = new List<string>();
        int next = 0;
        var live = new List<string>();
        for (int i = 0; i < 300; i++)
        {
            int r = rng.Next(10);
            if (live.Count == 0 || r < 4) { string h = $"v{++next}"; lines.Add($"{h} = vmalloc {4 << rng.Next(0, 5)}K"); live.Add(h); }
            else if (r < 7) lines.Add($"cpu{rng.Next(2)}: read {live[rng.Next(live.Count)]} {rng.Next(0, 64)}K");
            else if (r < 9) { int j = rng.Next(live.Count); lines.Add($"vfree {live[j]}"); live.RemoveAt(j); }
            else lines.Add("free_empty_tables");
        }
        var s = Repro.Parse($"propertysuite-repro 1\nconfig {config}\nmemory 1G\ncpus 2\nvariant {variant}\n{string.Join("\n", lines)}\n");
        int checkedSteps = 0;
        var r2 = ScenarioRunner.Run(s, invariants: [], trace: (step, _, k) => { AssertAgree(k, $"step {step}"); checkedSteps++; });
        // Without invariants a broken variant may run into the engine's own BUG_ON (a map over
        // the PTE it forgot to clear); every step up to there was compared.
        Assert.True(r2.Violation is null || r2.Violation.Invariant == RunResult.EngineExceptionName, r2.ToString());
        Assert.True(checkedSteps >= 2, $"only {checkedSteps} steps compared");
    }
}

/// <summary>The range queries behind FrameConservation's exact buddy cross-check agree with
/// frame-by-frame oracles, and the cross-check catches owners that disagree with the free lists
/// even when every count still adds up.</summary>
[Trait("Category", "engine")]
public class BuddyCrossCheckTests
{
    [Fact]
    public void FreeBlocksInAndCountOwnedAgreeWithFrameByFrameScans()
    {
        var k = Machines.Boot("x86_64-4k-l4", "512M");
        var mem = k.Mem;
        var rng = new Random(99);
        var held = new List<(long Pfn, int Order)>();
        for (int i = 0; i < 400; i++)
        {
            if (held.Count == 0 || rng.Next(3) > 0)
            {
                int order = rng.Next(0, 11);
                if (mem.TryAllocPages(order, FrameOwner.Vmalloc, out long pfn)) held.Add((pfn, order));
            }
            else
            {
                int j = rng.Next(held.Count);
                mem.FreePages(held[j].Pfn, held[j].Order, FrameOwner.Vmalloc, "test");
                held.RemoveAt(j);
            }
            if (i % 40 != 0) continue;
            for (int q = 0; q < 20; q++)
            {
                long start = rng.NextInt64(mem.MaxPfn), len = rng.NextInt64(1, 5000);
                long oracleFree = 0, oracleOwned = 0;
                for (long p = start; p < start + len; p++)
                {
                    if (p < mem.MaxPfn && mem.Buddy.IsFree(p)) oracleFree++;
                    if (mem.OwnerOf(p) == FrameOwner.Free) oracleOwned++;
                }
                var blocks = mem.Buddy.FreeBlocksIn(start, start + len).ToList();
                Assert.Equal(oracleFree, blocks.Sum(b => b.Pages));
                Assert.All(blocks, b => Assert.True(b.Pfn >= start && b.Pfn + b.Pages <= start + len));
                Assert.Equal(oracleOwned, mem.CountOwned(start, len, FrameOwner.Free));
                Assert.Equal(Enumerable.Range(0, (int)len).LongCount(d => mem.OwnerOf(start + d) == FrameOwner.Absent),
                    mem.CountOwned(start, len, FrameOwner.Absent));
            }
        }
    }

    [Fact]
    public void OwnersSwappedBehindTheBuddysBackAreCaughtThoughCountsBalance()
    {
        var k = Machines.Boot();
        var (area, _) = k.Vmalloc.VmallocNodeRange((ulong)k.Arch.PageSize);
        long allocated = area!.Pages[0];
        long free = k.Mem.Buddy.FreeBlocks().First().Pfn;
        k.Mem.ClearChanged();
        k.Mem.SetOwner(free, 1, FrameOwner.Vmalloc);
        k.Mem.SetOwner(allocated, 1, FrameOwner.Free);

        var v = new FrameConservation().Check(k);

        Assert.NotNull(v);
        Assert.Equal($"frame {free:x} is owned Vmalloc but is on the buddy free lists", v!.Evidence);
        // Only the frame owned Free while not on the free lists changed this step.
        k.Mem.ClearChanged();
        k.Mem.SetOwner(allocated, 1, FrameOwner.Vmalloc);
        k.Mem.SetOwner(allocated, 1, FrameOwner.Free);
        Assert.Equal($"frame {allocated:x} is owned Free but is not on the buddy free lists", new FrameConservation().Check(k)!.Evidence);
    }
}
