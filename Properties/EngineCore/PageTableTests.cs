// init_mm as a radix tree: walks, maps at every leaf level the arch allows, block splits,
// permission changes, and free_empty_tables with its floor/ceiling rule (arch/arm64/mm/mmu.c).
using PropertySuite.Engine;
using PropertySuite.Properties.Infra;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Properties.EngineCore;

[Trait("Category", "engine")]
public class PageTableTests
{
    private static ulong AlignUp(ulong va, long size) => (va + (ulong)size - 1) & ~((ulong)size - 1);

    public static TheoryData<string, PtLevel> LeafLevels()
    {
        var data = new TheoryData<string, PtLevel>();
        foreach (var c in ArchConfig.All)
            foreach (var l in new[] { PtLevel.Pte, PtLevel.Pmd, PtLevel.Pud })
                if ((int)l < c.Levels && c.LeafAllowed(l)) data.Add(c.Name, l);
        return data;
    }

    [Theory]
    [MemberData(nameof(LeafLevels))]
    public void MapWalkAndUnmapAtEveryLeafLevel(string config, PtLevel level)
    {
        var k = Machines.Boot(config, "4G");
        var a = k.Arch;
        long pages = a.LevelSize(level) >> a.PageShift;
        Assert.True(k.Mem.TryAllocContigPages(pages, FrameOwner.Vmalloc, out long pfn));
        ulong va = AlignUp(a.VmallocStart, a.LevelSize(level));
        int tablesBefore = k.SwapperPgDir.Tables.Count;

        Assert.Equal(Errno.Ok, k.Pgtable.VmapRangeNoflush(va, pfn, pages, level, writable: true));

        foreach (long off in new[] { 0L, pages / 2, pages - 1 })
        {
            var w = k.SwapperPgDir.Walk(va + (ulong)(off << a.PageShift));
            Assert.True(w.IsLeaf);
            Assert.Equal(level, w.Level);
            Assert.Equal(pfn, w.Entry.Pfn);
            Assert.Equal(va, k.SwapperPgDir.EntryVa(w.Table, w.Index));
            Assert.Equal((ulong)a.LevelSize(level), k.SwapperPgDir.EntrySize(w.Table));
            Assert.Equal(pfn + off, k.Mmu.FrameOf(va + (ulong)(off << a.PageShift), out bool writable));
            Assert.True(writable);
        }
        var leaf = Assert.Single(k.SwapperPgDir.Leaves(va, va + (ulong)a.LevelSize(level)));
        Assert.Equal(level, leaf.Level);
        // Tables were allocated from the buddy only for the levels above the leaf that were missing.
        Assert.Equal(k.SwapperPgDir.Tables.Count, k.Mem.Count(FrameOwner.PageTable));
        Assert.True(k.SwapperPgDir.Tables.Count - tablesBefore <= a.Levels - 1 - (int)level);

        k.Pgtable.VunmapRangeNoflush(va, va + (ulong)a.LevelSize(level));
        Assert.False(k.SwapperPgDir.Walk(va).IsLeaf);
        Assert.Empty(k.SwapperPgDir.Leaves(va, va + (ulong)a.LevelSize(level)));
        Assert.Contains(k.Tlb.PendingFlushes, p => p.Start == va);
        Assert.Empty(k.Faults);
    }

    [Fact]
    public void WalkOfTheLinearMapEndsOnTheBootBlockAndOfAHoleOnANoneEntry()
    {
        var k = Machines.Boot("x86_64-4k-l4", "1G");
        var w = k.SwapperPgDir.Walk(k.Arch.PfnToVirt(12345));
        Assert.True(w.IsLeaf);
        Assert.Equal(PtLevel.Pud, w.Level);
        Assert.Equal(12345, k.Mmu.FrameOf(k.Arch.PfnToVirt(12345), out _));
        var hole = k.SwapperPgDir.Walk(k.Arch.VmallocStart);
        Assert.True(hole.Entry.IsNone);
        Assert.Equal(PtLevel.P4d, hole.Level); // the root's entry for vmalloc is empty after boot
        Assert.Null(k.Mmu.FrameOf(k.Arch.VmallocStart, out _));
    }

    [Theory]
    [InlineData(1L, "not aligned to the Pmd leaf size")]     // va off by a page
    [InlineData(2L, "not aligned to the Pmd leaf size")]     // pfn off by a page
    [InlineData(3L, "not aligned to the Pmd leaf size")]     // pages not a whole number of leaves
    public void MisalignedMapsAreModelBugsNamingTheRule(long which, string rule)
    {
        var k = Machines.Boot();
        var a = k.Arch;
        long pmdPages = a.PmdSize >> a.PageShift;
        ulong va = AlignUp(a.VmallocStart, a.PmdSize);
        var e = Assert.Throws<ModelBugException>(() => which switch
        {
            1 => k.Pgtable.VmapRangeNoflush(va + (ulong)a.PageSize, 0, pmdPages, PtLevel.Pmd, true),
            2 => k.Pgtable.VmapRangeNoflush(va, 1, pmdPages, PtLevel.Pmd, true),
            _ => k.Pgtable.VmapRangeNoflush(va, 0, pmdPages + 1, PtLevel.Pmd, true),
        });
        Assert.Contains(rule, e.Message);
    }

    [Fact]
    public void MappingOverALiveEntryOrAtALevelWithoutLeavesIsAModelBug()
    {
        var k = Machines.Boot("arm64-16k-l3");
        ulong va = k.Arch.VmallocStart;
        Assert.Equal(Errno.Ok, k.Pgtable.VmapRangeNoflush(va, 0, 1, PtLevel.Pte, true));
        Assert.Contains("already", Assert.Throws<ModelBugException>(() => k.Pgtable.VmapRangeNoflush(va, 0, 1, PtLevel.Pte, true)).Message);
        // arm64 16K has no PUD blocks (pud_sect_supported() is false).
        Assert.Contains("no leaf at Pud", Assert.Throws<ModelBugException>(
            () => k.Pgtable.VmapRangeNoflush(AlignUp(va, k.Arch.PudSize), 0, k.Arch.PudSize >> k.Arch.PageShift, PtLevel.Pud, true)).Message);
    }

    [Fact]
    public void UnmapThatCutsABlockClearsItWholeWithTheKernelsWarn()
    {
        var k = Machines.Boot("x86_64-4k-l4", "1G");
        ulong start = k.Arch.PfnToVirt(0);
        k.Pgtable.VunmapRangeNoflush(start, start + (ulong)k.Arch.PmdSize); // half of nothing: the 1G PUD block
        var f = Assert.Single(k.Faults);
        Assert.Equal(FaultKind.KernelBug, f.Kind);
        Assert.Contains("covers part of the Pud leaf", f.Detail);
        Assert.False(k.SwapperPgDir.Walk(start).IsLeaf); // pud_clear_huge cleared it all (61ef8ddaa35e's WARN)
    }

    public static TheoryData<string, PtLevel, bool> Blocks()
    {
        var data = new TheoryData<string, PtLevel, bool>();
        foreach (var c in ArchConfig.All)
            foreach (var l in new[] { PtLevel.Pmd, PtLevel.Pud })
                if ((int)l < c.Levels && c.LeafAllowed(l))
                    foreach (bool rw in new[] { true, false }) data.Add(c.Name, l, rw);
        return data;
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void SplittingABlockKeepsEveryFrameAndThePermission(string config, PtLevel level, bool writable)
    {
        var k = Machines.Boot(config, "4G");
        var a = k.Arch;
        long pages = a.LevelSize(level) >> a.PageShift;
        long pfn = k.Mem.AllocContigPagesOrFail(pages, FrameOwner.Vmalloc);
        ulong va = AlignUp(a.VmallocStart, a.LevelSize(level));
        k.Pgtable.VmapRangeNoflush(va, pfn, pages, level, writable);
        var samples = Enumerable.Range(0, 64).Select(i => va + (ulong)(((long)i * 7919 % pages) << a.PageShift)).ToList();
        var before = samples.Select(x => k.Mmu.FrameOf(x, out _)).ToList();
        var block = k.SwapperPgDir.Walk(va);

        var child = k.SplitBlock(block.Table, block.Index);

        Assert.NotNull(child);
        Assert.Equal(level - 1, child!.Level);
        Assert.Equal(va, child.BaseVa);
        Assert.Equal(a.PtrsPerTable, child.Used);
        long step = a.LevelSize(level - 1) >> a.PageShift;
        for (int i = 0; i < child.Entries.Length; i++)
        {
            Assert.True(child.Entries[i].IsLeaf);
            Assert.Equal(pfn + i * step, child.Entries[i].Pfn);
            Assert.Equal(writable, child.Entries[i].Writable);
        }
        Assert.Equal(before, samples.Select(x => k.Mmu.FrameOf(x, out bool w) is var f && w == writable ? f : -2).ToList());
        Assert.Equal(Pte.MkTable(child.Pfn), block.Table.Entries[block.Index]);
        Assert.Same(child, k.SwapperPgDir.Walk(va).Table);
        Assert.Equal(FrameOwner.PageTable, k.Mem.OwnerOf(child.Pfn));
    }

    [Fact]
    public void SplitFailsCleanlyOnEnomemAndRefusesNonBlocks()
    {
        var k = Machines.Boot("x86_64-4k-l4", "1G");
        var block = k.SwapperPgDir.Walk(k.Arch.PfnToVirt(0));
        k.Mem.InjectFailures(0, 1);
        Assert.Null(k.SplitBlock(block.Table, block.Index));
        Assert.True(k.SwapperPgDir.Walk(k.Arch.PfnToVirt(0)).IsLeaf);
        Assert.Equal(PtLevel.Pud, k.SwapperPgDir.Walk(k.Arch.PfnToVirt(0)).Level);
        var child = k.SplitBlock(block.Table, block.Index)!;
        var pmd = k.SwapperPgDir.Walk(k.Arch.PfnToVirt(0));
        Assert.Equal(PtLevel.Pmd, pmd.Level);
        var pte = k.SplitBlock(pmd.Table, pmd.Index)!;
        Assert.Throws<ModelBugException>(() => k.SplitBlock(pte, 0)); // a PTE is not a block
        Assert.Throws<ModelBugException>(() => k.SplitBlock(block.Table, block.Index)); // now a table entry
        Assert.Equal(PtLevel.Pmd, child.Level);
    }

    [Fact]
    public void ProtectChangesEveryLeafInRangeAndLeavesTheTlbStaleUntilAFlush()
    {
        var k = Machines.Boot();
        var (area, err) = k.Vmalloc.VmallocNodeRange(4 * (ulong)k.Arch.PageSize);
        Assert.Equal(Errno.Ok, err);
        var ctx = StartIdleTask(k, 0);
        Assert.True(k.Mmu.Translate(ctx, area!.Addr, write: false, out _, out bool rw) && rw);
        k.Tlb.FlushTlbAll();
        Assert.True(k.Mmu.Translate(ctx, area.Addr, write: false, out _, out rw) && rw); // cached RW

        k.Pgtable.SetMemoryRo(area.Addr, area.Addr + 2 * (ulong)k.Arch.PageSize);

        Assert.False(k.SwapperPgDir.Walk(area.Addr).Entry.Writable);
        Assert.False(k.SwapperPgDir.Walk(area.Addr + (ulong)k.Arch.PageSize).Entry.Writable);
        Assert.True(k.SwapperPgDir.Walk(area.Addr + 2 * (ulong)k.Arch.PageSize).Entry.Writable);
        Assert.Equal(2, k.Tlb.PendingFlushes.Count);
        Assert.True(k.Mmu.Translate(ctx, area.Addr, write: false, out _, out rw) && rw);   // stale RW entry
        k.Tlb.FlushTlbKernelRange(area.Addr, area.Addr + 2 * (ulong)k.Arch.PageSize);
        Assert.Empty(k.Tlb.PendingFlushes);
        Assert.True(k.Mmu.Translate(ctx, area.Addr, write: false, out _, out rw) && !rw);  // refilled RO
    }

    /// <summary>A context on <paramref name="cpu"/> for direct calls (a task that never runs).</summary>
    internal static Engine.Smp.ExecContext StartIdleTask(Kernel k, int cpu)
    {
        var t = new Engine.Smp.LambdaTask("test context", (_, _) => Idle());
        Assert.True(k.Sched.StartTask(cpu, t));
        return k.Cpus[cpu].Top!;
    }

    private static IEnumerable<Engine.Smp.StepStatus> Idle() { yield return Engine.Smp.StepStatus.Progress; }

    // ---- free_empty_tables ----

    [Fact]
    public void FreeEmptyTablesFreesEveryEmptyTableInsideFloorAndCeiling()
    {
        var k = Machines.Boot();
        int boot = k.SwapperPgDir.Tables.Count;
        ulong va = k.Arch.VmallocStart;
        k.Pgtable.VmapRangeNoflush(va, 0, 1, PtLevel.Pte, true);
        Assert.Equal(boot + 3, k.SwapperPgDir.Tables.Count); // PUD, PMD and PTE tables for vmalloc
        k.Pgtable.VunmapRangeNoflush(va, va + (ulong)k.Arch.PageSize);
        k.Tlb.FlushTlbAll();

        int freed = k.Pgtable.FreeEmptyTables(k.Arch.VmallocStart, k.Arch.VmallocEnd, k.Arch.VmallocStart, k.Arch.VmallocEnd);

        Assert.Equal(3, freed);
        Assert.Equal(boot, k.SwapperPgDir.Tables.Count);
        Assert.Equal(boot, k.Mem.Count(FrameOwner.PageTable));
        Assert.True(k.SwapperPgDir.Root.Entries[k.SwapperPgDir.Index(va, k.Arch.TopLevel)].IsNone);
    }

    [Fact]
    public void FreeEmptyTablesKeepsATableWhoseSpanReachesBelowTheFloor()
    {
        var k = Machines.Boot();
        var a = k.Arch;
        ulong va = a.VmallocStart + 2 * (ulong)a.PmdSize; // third PMD entry of the first PMD table
        k.Pgtable.VmapRangeNoflush(va, 0, 1, PtLevel.Pte, true);
        k.Pgtable.VunmapRangeNoflush(va, va + (ulong)a.PageSize);
        int before = k.SwapperPgDir.Tables.Count;

        int freed = k.Pgtable.FreeEmptyTables(va, va + (ulong)a.PmdSize, floor: a.VmallocStart + (ulong)a.PmdSize, ceiling: a.VmallocEnd);

        Assert.Equal(1, freed); // the PTE table [va, va + 2M) is inside; its PMD table starts below the floor
        Assert.Equal(before - 1, k.SwapperPgDir.Tables.Count);
        var w = k.SwapperPgDir.Walk(va);
        Assert.Equal(PtLevel.Pmd, w.Level);
        Assert.True(w.Entry.IsNone);
    }

    [Fact]
    public void FreeEmptyTablesNeverFreesTheRoot()
    {
        var k = Machines.Boot("arm64-16k-l2"); // the root is the PMD table itself
        ulong kernelHalf = PageTable.KernelVaBase(k.Arch);
        k.Pgtable.VunmapRangeNoflush(kernelHalf, 0);     // up to 2^64: every leaf, linear map and vmemmap
        k.Tlb.FlushTlbAll();

        int freed = k.Pgtable.FreeEmptyTables(kernelHalf, 0, 0, 0);

        Assert.Equal(1, freed); // vmemmap's PTE table
        var only = Assert.Single(k.SwapperPgDir.Tables.Values);
        Assert.Same(k.SwapperPgDir.Root, only);
        Assert.Equal(0, k.SwapperPgDir.Root.Used);
        Assert.Equal(FrameOwner.PageTable, k.Mem.OwnerOf(k.SwapperPgDir.Root.Pfn));
    }

    /// <summary>S004: vmalloc and vmemmap share an upper-level table at their boundary. Freeing
    /// the empty tables of one region must keep the shared one, both while the other region
    /// still uses it and when it is empty but its span reaches outside [floor, ceiling).</summary>
    [Fact]
    public void FreeEmptyTablesKeepsATableSharedAcrossTheRegionBoundary()
    {
        var k = Machines.Boot("arm64-4k-l4");
        var a = k.Arch;
        ulong lastVmallocPage = a.VmallocEnd - (ulong)a.PageSize;
        k.Pgtable.VmapRangeNoflush(lastVmallocPage, 0, 1, PtLevel.Pte, true);
        var shared = k.SwapperPgDir.Walk(lastVmallocPage).Table;                  // the PTE table
        var pudOfVmalloc = TableAt(k, lastVmallocPage, PtLevel.Pud);
        var pudOfVmemmap = TableAt(k, a.VmemmapStart, PtLevel.Pud);
        Assert.Same(pudOfVmalloc, pudOfVmemmap);                            // one PUD table serves both
        k.Pgtable.VunmapRangeNoflush(lastVmallocPage, lastVmallocPage + (ulong)a.PageSize);
        k.Tlb.FlushTlbAll();

        int freed = k.Pgtable.FreeEmptyTables(a.VmallocStart, a.VmallocEnd, a.VmallocStart, a.VmallocEnd);

        // The PTE table (2M span) lies inside vmalloc: freed. Its PMD table spans the 1G just
        // below VMEMMAP_START, which ends past VMALLOC_END: kept though empty. The PUD table
        // holds vmemmap's entries: kept.
        Assert.Equal(1, freed);
        Assert.False(k.SwapperPgDir.TryGetTable(shared.Pfn, out _));
        var pmd = TableAt(k, lastVmallocPage, PtLevel.Pmd);
        Assert.Equal(0, pmd.Used);
        Assert.True(k.SwapperPgDir.TryGetTable(pudOfVmemmap.Pfn, out _));
        Assert.True(k.Mmu.PeekStructPage(k.Arch.PfnToPage(0), out _)); // vmemmap still reachable
    }

    [Fact]
    public void FreeEmptyTablesReachesTheLastEntryOfTheRoot()
    {
        // arm64 64K with 3 levels: the root's last entry covers [0xfffffc0000000000, 2^64).
        var k = Machines.Boot("arm64-64k-l3", "1G");
        ulong top = 0UL - (ulong)k.Arch.PmdSize; // the last PMD entry of the address space
        k.Pgtable.VmapRangeNoflush(top, 0, 1, PtLevel.Pte, true);
        var pte = k.SwapperPgDir.Walk(top).Table;
        var ctx = StartIdleTask(k, 1);
        Assert.True(k.Mmu.Translate(ctx, top, false, out _, out _));
        k.Pgtable.VunmapRangeNoflush(top, 0);
        k.Tlb.FlushTlbKernelRange(top, 0);
        Assert.Equal(0, k.Cpus[1].Tlb.Count);
        Assert.Empty(k.Tlb.PendingFlushes);

        int freed = k.Pgtable.FreeEmptyTables(top, 0, top, 0);

        Assert.Equal(1, freed);
        Assert.False(k.SwapperPgDir.TryGetTable(pte.Pfn, out _));
    }

    private static PtTable TableAt(Kernel k, ulong va, PtLevel level)
    {
        PtTable t = k.SwapperPgDir.Root;
        while (t.Level > level)
        {
            var e = t.Entries[k.SwapperPgDir.Index(va, t.Level)];
            Assert.True(e.IsTable, $"no {t.Level - 1} table at {va:x}");
            Assert.True(k.SwapperPgDir.TryGetTable(e.Pfn, out t));
        }
        return t;
    }
}
