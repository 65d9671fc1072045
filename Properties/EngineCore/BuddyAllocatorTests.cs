using PropertySuite.Properties.Infra;
// The buddy allocator of mm/page_alloc.c as the model keeps it: natural alignment, expand()
// keeping the lower half, merging with free buddies back to MAX_PAGE_ORDER, alloc_contig_pages,
// ENOMEM as false (no sentinel PFN), and the fail_page_alloc-style injection hook of PhysMem.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Properties.EngineCore;

[Trait("Category", "engine")]
public class BuddyAllocatorTests
{
    private const int MaxOrder = 10;
    private const long Top = 1L << MaxOrder;

    private static string Blocks(BuddyAllocator b) =>
        string.Join(" ", b.FreeBlocks().OrderBy(x => x.Pfn).Select(x => $"{x.Pfn}+{x.Pages}"));

    [Fact]
    public void EveryAllocationIsNaturallyAlignedToItsOrder()
    {
        var b = new BuddyAllocator(MaxOrder);
        b.FreeRange(3, 8 * Top - 5); // an unaligned range: blocks of every order appear at its ends
        var rng = new Random(7);
        for (int i = 0; i < 400; i++)
        {
            int order = rng.Next(0, MaxOrder + 1);
            if (!b.TryAllocPages(order, out long pfn)) continue;
            Assert.True(pfn % (1L << order) == 0, $"order {order} at pfn {pfn}");
            Assert.True(pfn >= 3 && pfn + (1L << order) <= 8 * Top - 2, $"order {order} at pfn {pfn} outside the freed range");
        }
    }

    [Fact]
    public void ExpandSplitsTheSmallestFitAndKeepsTheLowerHalf()
    {
        var b = new BuddyAllocator(MaxOrder);
        b.FreePages(8, 3); // one order-3 block: pfns 8..15
        Assert.True(b.TryAllocPages(0, out long pfn));
        Assert.Equal(8, pfn);
        // expand(): 16 → keep [8,12) give back [12,16); keep [8,10) give back [10,12); keep 8, give back 9.
        Assert.Equal("9+1 10+2 12+4", Blocks(b));
        Assert.Equal(7, b.NrFreePages);
    }

    [Fact]
    public void SmallestFreeOrderIsUsedBeforeSplittingALargerBlock()
    {
        var b = new BuddyAllocator(MaxOrder);
        b.FreePages(0, 4);
        b.FreePages(64, 1);
        Assert.True(b.TryAllocPages(1, out long pfn));
        Assert.Equal(64, pfn);
        Assert.Equal("0+16", Blocks(b));
    }

    [Fact]
    public void FreeingEveryPageInAnyOrderMergesBackToMaxOrderBlocks()
    {
        var b = new BuddyAllocator(MaxOrder);
        b.FreeRange(0, 2 * Top);
        var pages = new List<long>();
        while (b.TryAllocPages(0, out long pfn)) pages.Add(pfn);
        Assert.Equal(2 * Top, pages.Count);
        Assert.Equal(0, b.NrFreePages);
        var rng = new Random(42);
        foreach (long pfn in pages.OrderBy(_ => rng.Next())) b.FreePages(pfn, 0);
        Assert.Equal($"0+{2 * Top}", Blocks(b));
        Assert.True(b.TryAllocPages(MaxOrder, out long first));
        Assert.Equal(0, first); // the max-order blocks are whole again
    }

    [Fact]
    public void BuddiesMergeOnlyWithTheirOwnBuddy()
    {
        var b = new BuddyAllocator(MaxOrder);
        b.FreePages(2, 1);
        b.FreePages(4, 1); // not 2's buddy (2 ^ 2 = 0): must not merge into [2, 6)
        Assert.Equal("2+2 4+2", Blocks(b));
        b.FreePages(0, 1); // 0's buddy is 2: [0, 4); its buddy 4 at order 2 is [4, 8), only half free
        Assert.Equal("0+4 4+2", Blocks(b));
    }

    [Fact]
    public void OutOfMemoryAndImpossibleOrdersFail()
    {
        var b = new BuddyAllocator(MaxOrder);
        Assert.False(b.TryAllocPages(0, out _));
        b.FreePages(0, 2);
        Assert.False(b.TryAllocPages(3, out _));
        Assert.False(b.TryAllocPages(MaxOrder + 1, out _));
        Assert.False(b.TryAllocPages(-1, out _));
        Assert.False(b.TryAllocContig(2 * Top, Top, out _));
        Assert.Equal(4, b.NrFreePages);
    }

    [Theory]
    [InlineData(4 * Top, 4 * Top)]   // gigantic: a run of max-order blocks aligned to its size
    [InlineData(3 * Top, Top)]
    [InlineData(Top + 100, Top)]     // tail of a block goes back as naturally aligned blocks
    [InlineData(16, 16)]             // power of two below MAX_ORDER: an ordinary buddy allocation
    [InlineData(100, 4)]
    public void ContigAllocationIsAlignedAndKeepsEveryFreeBlockNaturallyAligned(long nrPages, long align)
    {
        var b = new BuddyAllocator(MaxOrder);
        b.FreeRange(Top / 2, 16 * Top); // starts mid-block: the first aligned fit is further up
        long before = b.NrFreePages;
        Assert.True(b.TryAllocContig(nrPages, align, out long pfn));
        Assert.Equal(0, pfn % align);
        Assert.Equal(before - nrPages, b.NrFreePages);
        for (long p = pfn; p < pfn + nrPages; p++) Assert.False(b.IsFree(p));
        foreach (var (start, pages) in b.FreeBlocks())
            if (pages <= Top) Assert.True(start % pages == 0, $"free block {start}+{pages} not naturally aligned");
            else Assert.True(start % Top == 0 && pages % Top == 0, $"max-order run {start}+{pages}");
        Assert.Equal(b.NrFreePages, b.FreeBlocks().Sum(x => x.Pages));
        // And a following max-order allocation is still naturally aligned.
        Assert.True(!b.TryAllocPages(MaxOrder, out long next) || next % Top == 0);
    }

    [Fact]
    public void ContigAllocationRefusesBadArguments()
    {
        var b = new BuddyAllocator(MaxOrder);
        b.FreeRange(0, 4 * Top);
        Assert.Throws<ModelBugException>(() => b.TryAllocContig(0, 1, out _));
        Assert.Throws<ModelBugException>(() => b.TryAllocContig(Top, 3, out _));
    }

    [Fact]
    public void InjectedFailuresStartAfterTheGivenCountAndStopAfterTheirCount()
    {
        var mem = new PhysMem(ArchConfig.X86_64_4K, 2 * ArchConfig.X86_64_4K.PagesPerSection);
        mem.AddSection(0, FrameOwner.Free);
        mem.Buddy.FreeRange(0, mem.PagesPerSection);
        mem.InjectFailures(after: 2, count: 3);
        var results = Enumerable.Range(0, 7).Select(i => mem.TryAllocPages(0, FrameOwner.Kernel, out _)).ToList();
        Assert.Equal([true, true, false, false, false, true, true], results);
        Assert.Equal(3, mem.AllocationsFailed);
        Assert.Equal(7, mem.AllocationsAttempted);
        Assert.Equal(4, mem.Count(FrameOwner.Kernel));
        // Contiguous allocations go through the same hook.
        mem.InjectFailures(after: 0, count: 1);
        Assert.False(mem.TryAllocContigPages(Top, FrameOwner.HugetlbFolio, out _));
        Assert.True(mem.TryAllocContigPages(Top, FrameOwner.HugetlbFolio, out _));
    }

    /// <summary>Any sequence of allocations and frees: every block is naturally aligned and
    /// disjoint from the live ones, free plus allocated pages stay constant, and freeing what is
    /// left merges everything back into max-order blocks.</summary>
    [PsProperty]
    public void AllocationsAreAlignedAndDisjointAndFreeingAllMergesBack((byte Order, bool Free, byte Which)[] steps)
    {
        const int Order = 3, Pages = 4 << Order;
        var b = new BuddyAllocator(Order);
        b.FreeRange(0, Pages);
        var live = new List<(long Pfn, int Order)>();
        foreach (var (rawOrder, free, which) in steps)
        {
            if (free && live.Count > 0)
            {
                var victim = live[which % live.Count];
                live.Remove(victim);
                b.FreePages(victim.Pfn, victim.Order);
            }
            else
            {
                int order = rawOrder % (Order + 1);
                if (!b.TryAllocPages(order, out long pfn)) continue;
                Assert.Equal(0, pfn % (1L << order));
                Assert.DoesNotContain(live, l => pfn < l.Pfn + (1L << l.Order) && l.Pfn < pfn + (1L << order));
                live.Add((pfn, order));
            }
            Assert.Equal(Pages, b.NrFreePages + live.Sum(l => 1L << l.Order));
        }
        foreach (var (pfn, order) in live) b.FreePages(pfn, order);
        Assert.Equal($"0+{Pages}", Blocks(b));
        for (int i = 0; i < Pages >> Order; i++)
        {
            Assert.True(b.TryAllocPages(Order, out long pfn));
            Assert.Equal(i << Order, pfn); // whole max-order blocks again
        }
    }
}
