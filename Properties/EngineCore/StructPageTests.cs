// Struct pages reached only through vmemmap: pristine boot contents, a write through a
// read-only mapping (recorded, not performed), and aliasing when two vmemmap PTEs map one frame.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Properties.EngineCore;

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
            Assert.True(k.PeekStructPage(k.PfnToPage(pfn), out var sp));
            Assert.Equal(StructPage.BootReserved, sp);
        }
        foreach (long pfn in new[] { end, end + 1, k.Mem.MaxPfn / 2, k.Mem.MaxPfn - 1 })
        {
            Assert.True(k.PeekStructPage(k.PfnToPage(pfn), out var sp));
            Assert.Equal(default, sp);
        }
        // Reading through a CPU gives the same values and stores nothing: a 64 TiB machine
        // costs what is written, not what is read.
        Assert.True(k.ReadStructPage(null, k.PfnToPage(end - 1), out var viaCpu));
        Assert.Equal(StructPage.BootReserved, viaCpu);
        long frame = k.WalkToFrame(k.PfnToPage(end - 1), out _);
        Assert.False(k.HasFrameContent(frame));
        Assert.True(k.WriteStructPage(null, k.PfnToPage(end), new StructPage { Refcount = 1 }, "test"));
        Assert.True(k.HasFrameContent(k.WalkToFrame(k.PfnToPage(end), out _)));
        Assert.True(k.PeekStructPage(k.PfnToPage(end - 1), out var still));
        Assert.Equal(StructPage.BootReserved, still); // its neighbour in the same frame is unchanged
        Assert.Empty(k.Faults);
    }

    [Fact]
    public void AWriteLandsInTheFrameBehindTheVmemmapAddress()
    {
        var k = Machines.Boot("arm64-16k-l3");
        long pfn = k.Mem.BootReservedEnd + 300;
        var sp = new StructPage { Refcount = 3, Flags = PageFlags.Head };
        Assert.True(k.WriteStructPage(null, k.PfnToPage(pfn), sp, "test"));
        long frame = k.WalkToFrame(k.PfnToPage(pfn), out _);
        Assert.Equal(sp, k.FrameContent(frame).Read(k.StructPageSlot(k.PfnToPage(pfn))));
        Assert.True(k.PeekStructPage(k.PfnToPage(pfn), out var back));
        Assert.Equal(sp, back);
        Assert.True(k.PeekStructPage(k.PfnToPage(pfn + 1), out var neighbour));
        Assert.Equal(default, neighbour);
    }

    [Fact]
    public void AWriteThroughAReadOnlyVmemmapMappingIsRecordedAndNotPerformed()
    {
        var k = Machines.Boot("arm64-64k-l3", "1G");
        long pfn = k.Mem.BootReservedEnd + 5;
        ulong page = k.PfnToPage(pfn);
        ulong vmemmapPage = page & ~((ulong)k.Arch.PageSize - 1);
        k.ProtectKernelRange(vmemmapPage, vmemmapPage + (ulong)k.Arch.PageSize, writable: false);
        k.FlushTlbKernelRange(vmemmapPage, vmemmapPage + (ulong)k.Arch.PageSize);

        Assert.False(k.WriteStructPage(null, page, new StructPage { Refcount = 1 }, "get_page"));

        var f = Assert.Single(k.Faults);
        Assert.Equal(FaultKind.WriteToReadOnly, f.Kind);
        Assert.Equal(page, f.Va);
        Assert.Contains("get_page", f.Detail);
        Assert.Contains($"pfn {pfn:x}", f.Detail);
        Assert.True(k.PeekStructPage(page, out var sp));
        Assert.Equal(default, sp);
    }

    [Fact]
    public void AStaleWritableTlbEntryLetsAWriteThroughAfterTheMappingWentReadOnly()
    {
        var k = Machines.Boot("arm64-64k-l3", "1G");
        ulong page = k.PfnToPage(k.Mem.BootReservedEnd + 5);
        ulong vmemmapPage = page & ~((ulong)k.Arch.PageSize - 1);
        var ctx = PageTableTests.StartIdleTask(k, 0);
        Assert.True(k.ReadStructPage(ctx, page, out _)); // caches the RW translation
        k.ProtectKernelRange(vmemmapPage, vmemmapPage + (ulong)k.Arch.PageSize, writable: false);

        Assert.True(k.WriteStructPage(ctx, page, new StructPage { Refcount = 1 }, "missing flush"));
        Assert.Empty(k.Faults);
        Assert.True(k.PeekStructPage(page, out var sp));
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
        ulong headPage = k.PfnToPage(head), tailPage = k.PfnToPage(head + s);
        var w = k.InitMm.Walk(tailPage);
        if (w.Level != PtLevel.Pte)
        {
            Assert.NotNull(k.SplitBlock(w.Table, w.Index));
            w = k.InitMm.Walk(tailPage);
        }
        Assert.Equal(PtLevel.Pte, w.Level);
        long headFrame = k.WalkToFrame(headPage, out _);
        // HVO-style remap, with break-before-make so that arm64 records no BBM fault.
        k.InitMm.Set(w.Table, w.Index, Pte.None);
        k.FlushTlbAll();
        k.InitMm.Set(w.Table, w.Index, Pte.MkLeaf(headFrame, writable: false));
        k.FlushTlbAll();

        var record = new StructPage { Flags = PageFlags.Head | PageFlags.Hugetlb, Refcount = 0 };
        Assert.True(k.WriteStructPage(null, headPage, record, "prep_compound_head"));

        // Struct page head + S is read through the alias: it shows the head's record (a fake head).
        Assert.True(k.ReadStructPage(null, tailPage, out var alias));
        Assert.Equal(record, alias);
        Assert.True(k.PeekStructPage(k.PfnToPage(head + s + 1), out var second));
        Assert.True(k.PeekStructPage(k.PfnToPage(head + 1), out var real));
        Assert.Equal(real, second);
        // And writing through the alias is refused: it is read-only.
        Assert.False(k.WriteStructPage(null, tailPage, default, "set_page_count"));
        Assert.Equal(FaultKind.WriteToReadOnly, Assert.Single(k.Faults).Kind);
    }
}
