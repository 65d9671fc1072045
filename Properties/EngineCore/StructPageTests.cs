// Struct pages reached only through vmemmap: pristine boot contents, a write through a
// read-only mapping (recorded, not performed), and aliasing when two vmemmap PTEs map one frame.
using PropertySuite.Engine;
using PropertySuite.Properties.Infra;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Properties.EngineCore;

[Trait("Category", "engine")]
public class StructPageTests
{
    [Theory]
    [MemberData(nameof(Machines.Configs), MemberType = typeof(Machines))]
    public void BootStructPagesAreReservedBelowTheBootReservationsAndZeroAbove(string config)
    {
        var k = Machines.Boot(config, "1G");
        long end = k.Mem.BootReservedEnd;
        foreach (long pfn in new[] { 0, end / 2, end - 1 })
        {
            Assert.True(k.Mmu.PeekStructPage(k.Arch.PfnToPage(pfn), out var sp));
            Assert.Equal(StructPage.BootReserved, sp);
        }
        foreach (long pfn in new[] { end, end + 1, k.Mem.MaxPfn / 2, k.Mem.MaxPfn - 1 })
        {
            Assert.True(k.Mmu.PeekStructPage(k.Arch.PfnToPage(pfn), out var sp));
            Assert.Equal(default, sp);
        }
        // Reading through a CPU gives the same values and stores nothing: a 64 TiB machine
        // costs what is written, not what is read.
        Assert.True(k.Mmu.ReadStructPage(null, k.Arch.PfnToPage(end - 1), out var viaCpu));
        Assert.Equal(StructPage.BootReserved, viaCpu);
        long frame = k.Mmu.MappedFrame(k.Arch.PfnToPage(end - 1));
        Assert.False(k.StructPages.HasFrameContent(frame));
        Assert.True(k.Mmu.WriteStructPage(null, k.Arch.PfnToPage(end), new StructPage { Refcount = 1 }, "test"));
        Assert.True(k.StructPages.HasFrameContent(k.Mmu.MappedFrame(k.Arch.PfnToPage(end))));
        Assert.True(k.Mmu.PeekStructPage(k.Arch.PfnToPage(end - 1), out var still));
        Assert.Equal(StructPage.BootReserved, still); // its neighbour in the same frame is unchanged
        Assert.Empty(k.Faults);
    }

    [Fact]
    public void AWriteLandsInTheFrameBehindTheVmemmapAddress()
    {
        var k = Machines.Boot("arm64-16k-l3");
        long pfn = k.Mem.BootReservedEnd + 300;
        var sp = new StructPage { Refcount = 3, Flags = PageFlags.Head };
        Assert.True(k.Mmu.WriteStructPage(null, k.Arch.PfnToPage(pfn), sp, "test"));
        long frame = k.Mmu.MappedFrame(k.Arch.PfnToPage(pfn));
        Assert.Equal(sp, k.StructPages.FrameContent(frame).Read(k.StructPages.StructPageSlot(k.Arch.PfnToPage(pfn))));
        Assert.True(k.Mmu.PeekStructPage(k.Arch.PfnToPage(pfn), out var back));
        Assert.Equal(sp, back);
        Assert.True(k.Mmu.PeekStructPage(k.Arch.PfnToPage(pfn + 1), out var neighbour));
        Assert.Equal(default, neighbour);
    }

    [Fact]
    public void AWriteThroughAReadOnlyVmemmapMappingIsRecordedAndNotPerformed()
    {
        var k = Machines.Boot("arm64-64k-l3", "1G");
        long pfn = k.Mem.BootReservedEnd + 5;
        ulong page = k.Arch.PfnToPage(pfn);
        ulong vmemmapPage = page & ~((ulong)k.Arch.PageSize - 1);
        k.Pgtable.SetMemoryRo(vmemmapPage, vmemmapPage + (ulong)k.Arch.PageSize);
        k.Tlb.FlushTlbKernelRange(vmemmapPage, vmemmapPage + (ulong)k.Arch.PageSize);

        Assert.False(k.Mmu.WriteStructPage(null, page, new StructPage { Refcount = 1 }, "get_page"));

        var f = Assert.Single(k.Faults);
        Assert.Equal(FaultKind.WriteToReadOnly, f.Kind);
        Assert.Equal(page, f.Va);
        Assert.Contains("get_page", f.Detail);
        Assert.Contains($"pfn {pfn:x}", f.Detail);
        Assert.True(k.Mmu.PeekStructPage(page, out var sp));
        Assert.Equal(default, sp);
    }

    [Fact]
    public void AStaleWritableTlbEntryLetsAWriteThroughAfterTheMappingWentReadOnly()
    {
        var k = Machines.Boot("arm64-64k-l3", "1G");
        ulong page = k.Arch.PfnToPage(k.Mem.BootReservedEnd + 5);
        ulong vmemmapPage = page & ~((ulong)k.Arch.PageSize - 1);
        var ctx = PageTableTests.StartIdleTask(k, 0);
        Assert.True(k.Mmu.ReadStructPage(ctx, page, out _)); // caches the RW translation
        k.Pgtable.SetMemoryRo(vmemmapPage, vmemmapPage + (ulong)k.Arch.PageSize);

        Assert.True(k.Mmu.WriteStructPage(ctx, page, new StructPage { Refcount = 1 }, "missing flush"));
        Assert.Empty(k.Faults);
        Assert.True(k.Mmu.PeekStructPage(page, out var sp));
        Assert.Equal(1, sp.Refcount);
    }

    [Theory]
    [InlineData("x86_64-4k-l4")]  // PMD-mapped vmemmap: split the block first
    [InlineData("arm64-16k-l3")]  // base-page vmemmap
    public void TwoPtesMappingOneFrameMakeTwoStructPagesReadTheSameRecord(string config)
    {
        var k = Machines.Boot(config);
        var a = k.Arch;
        long s = a.StructPagesPerVmemmapPage;
        long head = (k.Mem.BootReservedEnd + 8 * s) / (8 * s) * (8 * s); // a vmemmap-page-aligned pfn
        ulong headPage = k.Arch.PfnToPage(head), tailPage = k.Arch.PfnToPage(head + s);
        var w = k.SwapperPgDir.Walk(tailPage);
        if (w.Level != PtLevel.Pte)
        {
            Assert.NotNull(k.SplitBlock(w.Table, w.Index));
            w = k.SwapperPgDir.Walk(tailPage);
        }
        Assert.Equal(PtLevel.Pte, w.Level);
        long headFrame = k.Mmu.MappedFrame(headPage);
        // HVO-style remap, with break-before-make so that arm64 records no BBM fault.
        k.SwapperPgDir.Set(w.Table, w.Index, Pte.None);
        k.Tlb.FlushTlbAll();
        k.SwapperPgDir.Set(w.Table, w.Index, Pte.MkLeaf(headFrame, writable: false));
        k.Tlb.FlushTlbAll();

        var record = new StructPage { Flags = PageFlags.Head | PageFlags.Hugetlb, Refcount = 0 };
        Assert.True(k.Mmu.WriteStructPage(null, headPage, record, "prep_compound_head"));

        // Struct page head + S is read through the alias: it shows the head's record (a fake head).
        Assert.True(k.Mmu.ReadStructPage(null, tailPage, out var alias));
        Assert.Equal(record, alias);
        Assert.True(k.Mmu.PeekStructPage(k.Arch.PfnToPage(head + s + 1), out var second));
        Assert.True(k.Mmu.PeekStructPage(k.Arch.PfnToPage(head + 1), out var real));
        Assert.Equal(real, second);
        // And writing through the alias is refused: it is read-only.
        Assert.False(k.Mmu.WriteStructPage(null, tailPage, default, "set_page_count"));
        Assert.Equal(FaultKind.WriteToReadOnly, Assert.Single(k.Faults).Kind);
    }
}
