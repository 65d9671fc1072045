// The coalescing rules of the ptdump renderer: one line per run of leaves with the same level,
// permission and contiguous bit whose frames continue each other, split at region boundaries.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Properties.EngineCore;

[Trait("Category", "engine")]
public class PtDumpTests
{
    private static (Kernel K, ulong Va, ulong P) Machine()
    {
        var k = Machines.Boot();
        return (k, k.Arch.VmallocStart, (ulong)k.Arch.PageSize);
    }

    [Fact]
    public void ContiguousFramesWithTheSameAttributesAreOneRange()
    {
        var (k, va, p) = Machine();
        k.Pgtable.VmapRangeNoflush(va, 100, 8, PtLevel.Pte, true);
        var r = Assert.Single(PtDump.Ranges(k.SwapperPgDir, va, va + 8 * p));
        Assert.Equal((va, va + 8 * p, 8, 100L, 108L), (r.Start, r.End, r.Count, r.Pfn, r.PfnEnd));
    }

    [Fact]
    public void ARunBreaksAtAFrameGapAPermissionChangeAHoleAndTheContBit()
    {
        var (k, va, p) = Machine();
        k.Pgtable.VmapRangeNoflush(va, 100, 2, PtLevel.Pte, true);
        k.Pgtable.VmapRangeNoflush(va + 2 * p, 200, 2, PtLevel.Pte, true);          // frames jump
        k.Pgtable.VmapRangeNoflush(va + 4 * p, 202, 2, PtLevel.Pte, false);         // RO
        k.Pgtable.VmapRangeNoflush(va + 7 * p, 205, 1, PtLevel.Pte, false);         // after a hole
        var w = k.SwapperPgDir.Walk(va + 7 * p);
        k.SwapperPgDir.Set(w.Table, w.Index, Pte.MkLeaf(205, false, cont: true));
        k.Pgtable.VmapRangeNoflush(va + 8 * p, 206, 1, PtLevel.Pte, false);         // contiguous frame, no CONT
        var ranges = PtDump.Ranges(k.SwapperPgDir, va, va + 16 * p);
        Assert.Equal([2, 2, 2, 1, 1], ranges.Select(r => r.Count));
        Assert.Equal([100L, 200, 202, 205, 206], ranges.Select(r => r.Pfn));
        Assert.Equal([true, true, false, false, false], ranges.Select(r => r.Writable));
        Assert.Equal([false, false, false, true, false], ranges.Select(r => r.Cont));
    }

    [Fact]
    public void AliasedPtesToOneFrameAreOneLineEach()
    {
        var (k, va, p) = Machine();
        for (ulong i = 0; i < 4; i++) k.Pgtable.VmapRangeNoflush(va + i * p, 300, 1, PtLevel.Pte, false);
        Assert.Equal(4, PtDump.Ranges(k.SwapperPgDir, va, va + 4 * p).Count);
    }

    [Fact]
    public void RestrictingTheRangeKeepsLeavesThatOverlapItsEdges()
    {
        var k = Machines.Boot("x86_64-4k-l4", "1G");
        ulong inside = k.Arch.PfnToVirt(12345);
        var r = Assert.Single(PtDump.Ranges(k.SwapperPgDir, inside, inside + 1));
        Assert.Equal(k.Arch.PfnToVirt(0), r.Start);   // the whole 1G block that covers it
        Assert.Equal(PtLevel.Pud, r.Level);
        string text = PtDump.Render(k, k.Arch.VmallocStart, k.Arch.VmallocEnd);
        Assert.StartsWith("(no leaves in [0xffffc90000000000, 0xffffe90000000000))", text);
    }

    [Fact]
    public void RegionMarkersPrecedeTheFirstRangeOfEachRegionAndRangesDoNotCrossThem()
    {
        var k = Machines.Boot("arm64-4k-l4", "1G");
        string text = PtDump.Render(k);
        var lines = text.Split('\n');
        Assert.Equal("---[ linear map ]---", lines[0]);
        Assert.Equal("---[ vmemmap ]---", lines[2]);
        Assert.StartsWith("tables: 4 (PGD 1, PUD 2, PMD 1)", lines[4]);
        Assert.DoesNotContain("---", PtDump.Render(k.SwapperPgDir, 0, 0, null));
        // A region boundary splits a run even when everything else matches.
        var regions = new[] { new PtDumpRegion("a", k.Arch.PfnToVirt(0), k.Arch.PfnToVirt(0) + (1UL << 29)),
                              new PtDumpRegion("b", k.Arch.PfnToVirt(0) + (1UL << 29), k.Arch.PfnToVirt(0) + (1UL << 30)) };
        var blocks = k.SwapperPgDir.Walk(k.Arch.PfnToVirt(0));
        k.SplitBlock(blocks.Table, blocks.Index);                        // 1G → 512 PMD blocks
        var ranges = PtDump.Ranges(k.SwapperPgDir, k.Arch.PfnToVirt(0), k.Arch.PfnToVirt(0) + (1UL << 30), regions);
        Assert.Equal(["a", "b"], ranges.Select(r => r.Region));
        Assert.Equal([256, 256], ranges.Select(r => r.Count));
    }

    [Fact]
    public void RenderingIsDeterministic()
    {
        static string Once()
        {
            var k = Machines.Boot("arm64-16k-l3", "1G");
            for (int i = 0; i < 5; i++) k.Vmalloc.VmallocNodeRange((ulong)(i + 1) * (ulong)k.Arch.PageSize);
            return PtDump.Render(k);
        }
        Assert.Equal(Once(), Once());
    }
}
