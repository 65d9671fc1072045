// CPU TLBs: filled by accesses, used even when stale, removed only by flushes (or by capacity
// eviction, oldest first), and the flush-range arithmetic.
using PropertySuite.Engine;
using PropertySuite.Properties.Infra;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Properties.EngineCore;

[Trait("Category", "engine")]
public class TlbTests
{
    private static readonly ulong[] Sizes4K = [1UL << 12, 1UL << 21, 1UL << 30];

    [Fact]
    public void AnAccessFillsTheTlbOfItsCpuOnly()
    {
        var k = Machines.Boot();
        var (area, _) = k.Vmalloc.VmallocNodeRange(2 * (ulong)k.Arch.PageSize);
        var ctx = PageTableTests.StartIdleTask(k, 1);
        Assert.Equal(0, k.Cpus[1].Tlb.Count);
        Assert.True(k.Mmu.Translate(ctx, area!.Addr + 5, write: false, out long frame, out _));
        Assert.Equal(area.Pages[0], frame);
        var e = Assert.Single(k.Cpus[1].Tlb.Entries);
        Assert.Equal(new TlbEntry(area.Addr, (ulong)k.Arch.PageSize, area.Pages[0], true), e);
        Assert.Equal(0, k.Cpus[0].Tlb.Count);
        // A block leaf is cached as one entry covering the whole block.
        Assert.True(k.Mmu.Translate(ctx, k.Arch.PfnToVirt(3), write: false, out frame, out _));
        Assert.Equal(3, frame);
        Assert.Contains(k.Cpus[1].Tlb.Entries, x => x.Va == k.Arch.PfnToVirt(0) && x.Size == (ulong)k.Arch.PmdSize);
    }

    [Fact]
    public void AStaleEntryIsUsedUntilAFlushCoversIt()
    {
        var k = Machines.Boot();
        var (area, _) = k.Vmalloc.VmallocNodeRange((ulong)k.Arch.PageSize);
        var ctx = PageTableTests.StartIdleTask(k, 0);
        k.Mmu.Translate(ctx, area!.Addr, false, out _, out _);
        long other = k.Mem.AllocPagesOrFail(0, FrameOwner.Vmalloc);
        var w = k.SwapperPgDir.Walk(area.Addr);
        k.SwapperPgDir.Set(w.Table, w.Index, Pte.MkLeaf(other, writable: true)); // remapped, not flushed

        Assert.True(k.Mmu.Translate(ctx, area.Addr, false, out long seen, out _));
        Assert.Equal(area.Pages[0], seen);                                   // old translation
        Assert.Contains(k.Tlb.PendingFlushes, p => p.Start == area.Addr);

        k.Tlb.FlushTlbKernelRange(area.Addr + (ulong)k.Arch.PageSize, area.Addr + 2 * (ulong)k.Arch.PageSize);
        Assert.True(k.Mmu.Translate(ctx, area.Addr, false, out seen, out _));
        Assert.Equal(area.Pages[0], seen);                                   // a flush beside it does not help

        k.Tlb.FlushTlbKernelRange(area.Addr, area.Addr + (ulong)k.Arch.PageSize);
        Assert.True(k.Mmu.Translate(ctx, area.Addr, false, out seen, out _));
        Assert.Equal(other, seen);
        Assert.Empty(k.Tlb.PendingFlushes);
    }

    [Fact]
    public void CapacityEvictsTheOldestLiveEntry()
    {
        var tlb = new Tlb(4, Sizes4K);
        for (ulong i = 0; i < 4; i++) tlb.Fill(new TlbEntry(i << 12, 1UL << 12, (long)i, true));
        tlb.Fill(new TlbEntry(4UL << 12, 1UL << 12, 4, true));
        Assert.Equal([1UL << 12, 2UL << 12, 3UL << 12, 4UL << 12], tlb.Entries.Select(e => e.Va));

        // Flush the oldest, refill it: it is now the youngest, and 2 is the oldest.
        tlb.FlushRange(1UL << 12, 2UL << 12);
        tlb.Fill(new TlbEntry(1UL << 12, 1UL << 12, 11, true));
        tlb.Fill(new TlbEntry(5UL << 12, 1UL << 12, 5, true));
        Assert.Equal([1UL << 12, 3UL << 12, 4UL << 12, 5UL << 12], tlb.Entries.Select(e => e.Va));
        Assert.True(tlb.TryLookup(1UL << 12, out var e1));
        Assert.Equal(11, e1.Pfn);
    }

    [Fact]
    public void ManyFlushesAndRefillsKeepEvictionOrderAndBoundedBookkeeping()
    {
        var tlb = new Tlb(8, Sizes4K);
        for (ulong i = 0; i < 8; i++) tlb.Fill(new TlbEntry(i << 12, 1UL << 12, (long)i, true));
        for (int round = 0; round < 10_000; round++)
        {
            ulong va = (ulong)(round % 8) << 12;
            tlb.FlushRange(va, va + 4096);
            tlb.Fill(new TlbEntry(va, 1UL << 12, round, true));
        }
        Assert.Equal(8, tlb.Count);
        // Refills happened in the order 0..7 (last round touched 7 last): a new entry evicts 0.
        tlb.Fill(new TlbEntry(100UL << 12, 1UL << 12, 100, true));
        Assert.False(tlb.TryLookup(0, out _));
        Assert.True(tlb.TryLookup(1UL << 12, out _));
    }

    [Theory]
    [InlineData(0x200000UL, 0x201000UL, 1)]  // inside the 2M entry
    [InlineData(0x1ff000UL, 0x200001UL, 2)]  // one byte into the 2M entry plus the 4K entry
    [InlineData(0x400000UL, 0x500000UL, 0)]  // starts where the 2M entry ends: half-open
    [InlineData(0x1ff000UL, 0x200000UL, 1)]  // ends where the 2M entry begins
    [InlineData(0UL, 0UL, 3)]                // end 0 is the top of the address space
    public void FlushRangeDropsExactlyTheOverlappingEntries(ulong start, ulong end, int dropped)
    {
        var tlb = new Tlb(8, Sizes4K);
        tlb.Fill(new TlbEntry(0x1ff000, 0x1000, 1, true));
        tlb.Fill(new TlbEntry(0x200000, 0x200000, 512, true));
        tlb.Fill(new TlbEntry(0xfffffffffffff000, 0x1000, 7, true));
        Assert.Equal(dropped, tlb.FlushRange(start, end));
        Assert.Equal(3 - dropped, tlb.Count);
    }

    [Fact]
    public void LookupFindsAnEntryOfAnySupportedSize()
    {
        var tlb = new Tlb(8, Sizes4K);
        tlb.Fill(new TlbEntry(0x40000000, 0x40000000, 0x40000, false));
        Assert.True(tlb.TryLookup(0x7fffffff, out var e));
        Assert.Equal(0x40000 + (0x3ffff000L >> 12), e.PfnFor(0x7ffff123, 12));
        Assert.False(e.Writable);
        Assert.False(tlb.TryLookup(0x80000000, out _));
    }

    [Fact]
    public void PartialFlushesLeaveThePendingRemainder()
    {
        var k = Machines.Boot();
        var (area, _) = k.Vmalloc.VmallocNodeRange(4 * (ulong)k.Arch.PageSize);
        ulong p = (ulong)k.Arch.PageSize;
        k.Pgtable.SetMemoryRo(area!.Addr, area.Addr + 4 * p);
        Assert.Equal(4, k.Tlb.PendingFlushes.Count);
        k.Tlb.FlushTlbKernelRange(area.Addr + p, area.Addr + 3 * p);
        Assert.Equal([area.Addr, area.Addr + 3 * p], k.Tlb.PendingFlushes.Select(x => x.Start).Order());
        k.Tlb.FlushTlbAll();
        Assert.Empty(k.Tlb.PendingFlushes);
    }

    [Theory]
    [InlineData("arm64-4k-l4", true)]   // flush_tlb_kernel_range is TLBI VAALE1IS: last level only
    [InlineData("x86_64-4k-l4", false)] // INVLPG drops the paging-structure caches too
    public void WalkCachesOutliveALastLevelFlushUntilThePgtableFlush(string config, bool survivesLeafFlush)
    {
        var k = Machines.Boot(config);
        var (area, _) = k.Vmalloc.VmallocNodeRange((ulong)k.Arch.PageSize);
        var ctx = PageTableTests.StartIdleTask(k, 1);
        ulong va = area!.Addr;
        Assert.True(k.Mmu.Translate(ctx, va, false, out _, out _));
        bool CachesPteTable() => k.Cpus[1].Tlb.WalkEntries.Any(e => e.Level == Engine.Config.PtLevel.Pmd && va - e.Va < e.Size);
        Assert.True(CachesPteTable());
        k.Vmalloc.Vfree(area);        // unmap now; the flush waits for the lazy purge
        Assert.True(CachesPteTable());
        k.Vmalloc.VmUnmapAliases();   // purge_vmap_area_lazy: flush_tlb_kernel_range
        Assert.Equal(survivesLeafFlush, CachesPteTable());
        Assert.DoesNotContain(k.Cpus[1].Tlb.Entries, e => va - e.Va < e.Size);
        // free_empty_tables clears the PMD entry and issues __flush_tlb_kernel_pgtable before the free.
        Assert.True(k.Pgtable.FreeEmptyTables(va, va + (ulong)k.Arch.PmdSize, k.Arch.VmallocStart, k.Arch.VmallocEnd) > 0);
        Assert.False(CachesPteTable());
        Assert.DoesNotContain(k.Tlb.PendingFlushes, p => p.WalkCache);
    }

    [Fact]
    public void AWalkThroughAFreedTableIsRecorded()
    {
        var k = Machines.Boot("arm64-4k-l4");
        var (area, _) = k.Vmalloc.VmallocNodeRange((ulong)k.Arch.PageSize);
        var ctx = PageTableTests.StartIdleTask(k, 1);
        ulong va = area!.Addr;
        k.Mmu.Translate(ctx, va, false, out _, out _);
        k.Vmalloc.Vfree(area);
        // The PTE table is unlinked and freed after a last-level flush only: the walk cache still
        // points at it, and the next walk of va on cpu1 reads the freed page.
        var table = k.SwapperPgDir.Walk(va).Table;
        Assert.Equal(Engine.Config.PtLevel.Pte, table.Level);
        var pmdTable = Assert.Single(k.SwapperPgDir.ParentsOf(table.Pfn));
        k.SwapperPgDir.Set(pmdTable, k.SwapperPgDir.Index(va, Engine.Config.PtLevel.Pmd), Pte.None);
        k.Tlb.FlushTlbKernelRange(va, va + (ulong)k.Arch.PmdSize);
        k.SwapperPgDir.ForgetTable(table);
        k.Mem.FreePages(table.Pfn, 0, FrameOwner.PageTable, "test");
        Assert.Contains(k.Tlb.PendingFlushes, p => p.WalkCache);
        Assert.False(k.Mmu.Translate(ctx, va, false, out _, out _));
        Assert.Contains(k.Faults, f => f.Kind == FaultKind.KernelBug && f.Detail.Contains("no longer a init_mm page table"));
    }
}
