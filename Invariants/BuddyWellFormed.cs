using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// The buddy allocator's free lists are well formed: every free block of order n starts at a
/// multiple of 2^n (__free_one_page finds a block's buddy as pfn ^ (1 &lt;&lt; order), which is only
/// meaningful for an aligned block); no frame lies in two free blocks (a frame on two lists, or
/// the same block linked twice, is what a double free that got past free_pages_prepare leaves:
/// the next two allocations hand the same frame to two owners); every frame in a free block is
/// owned Free (check_new_page / free_page_is_bad: a page with an owner — a refcount, a mapping,
/// PG_head — is never on a free list); and the free page count the lists keep (nr_free summed)
/// equals the number of frames owned Free, counted from the owners rather than from the lists.
/// Judged from the lists themselves, not from the allocator's bookkeeping of what it freed: a
/// corrupt list is a violation with the blocks as evidence, never a model exception.
/// Incremental: the blocks overlapping the ranges whose free blocks or owners changed this step
/// (a block merged this step covers its old parts); <see cref="CheckFullScan"/>, every block, is
/// the oracle. Sources: mm/page_alloc.c __free_one_page (buddy merging, the PageBuddy and order
/// checks of page_is_buddy), free_pages_prepare, free_page_is_bad / page_expected_state,
/// check_new_page, bad_page; include/linux/mmzone.h (free_area[order].nr_free).
/// </summary>
public sealed class BuddyWellFormed : IInvariant
{
    public string Name => nameof(BuddyWellFormed);
    public string Claim => "every free block is aligned to its order, no frame is in two free blocks, every frame in a free block is owned Free, and the free lists count the frames owned Free";
    public string Source => "mm/page_alloc.c __free_one_page, page_is_buddy, free_pages_prepare, free_page_is_bad, check_new_page";

    public Violation? Check(IKernelView k)
    {
        if (CheckCount(k) is { } c) return c;
        var touched = k.Mem.Buddy.TouchedThisStep;
        var changed = k.Mem.Changed;
        if (touched.Count == 0 && changed.Count == 0) return null;
        // Each changed range widened to the max-order blocks around it (a merge or split never
        // crosses one), then the windows merged, so that a step which allocated or freed many
        // pages of one block checks that block once.
        long top = 1L << k.Mem.Buddy.MaxOrder;
        var windows = new List<(long Lo, long Hi)>(touched.Count + changed.Count);
        foreach (var (pfn, n) in touched) windows.Add((AlignDown(pfn, top), AlignUp(pfn + n, top)));
        foreach (var r in changed) windows.Add((AlignDown(r.Start, top), AlignUp(r.End, top)));
        windows.Sort();
        for (int i = 0; i < windows.Count;)
        {
            long lo = windows[i].Lo, hi = windows[i].Hi;
            for (i++; i < windows.Count && windows[i].Lo <= hi; i++) hi = Math.Max(hi, windows[i].Hi);
            if (CheckBlocks(k, k.Mem.Buddy.BlocksOverlapping(lo, hi)) is { } v) return v;
        }
        return null;
    }

    /// <summary>The oracle: every block the lists hold.</summary>
    public Violation? CheckFullScan(IKernelView k) => CheckCount(k) ?? CheckBlocks(k, k.Mem.Buddy.AllBlocks());

    private Violation? CheckCount(IKernelView k)
    {
        long owned = k.Mem.Count(FrameOwner.Free), listed = k.Mem.Buddy.NrFreePages;
        return owned == listed ? null
            : new(Name, $"the free lists count {listed} free pages but {owned} frames are owned Free ({(listed > owned ? "a frame freed twice is counted twice" : "frames owned Free are on no list")})");
    }

    private Violation? CheckBlocks(IKernelView k, IEnumerable<BuddyBlock> blocks)
    {
        var sorted = new List<BuddyBlock>();
        foreach (var b in blocks)
        {
            long size = 1L << b.Order;
            if (b.Pfn < 0 || b.Pages <= 0 || b.Pfn + b.Pages > k.Mem.MaxPfn)
                return new(Name, $"{b} lies outside the machine's frames [0, {k.Mem.MaxPfn:x})");
            if (b.Pfn % size != 0 || b.Pages % size != 0 || (b.Order < k.Mem.Buddy.MaxOrder && b.Pages != size))
                return new(Name, $"{b} is not aligned to its order (2^{b.Order} = {size} pages)");
            if (!k.Mem.AllOwnedBy(b.Pfn, b.Pages, FrameOwner.Free))
                return new(Name, $"{b} holds frames with an owner: {FirstNotFree(k, b)}");
            sorted.Add(b);
        }
        sorted.Sort((a, b) => a.Pfn != b.Pfn ? a.Pfn.CompareTo(b.Pfn) : a.Order.CompareTo(b.Order));
        for (int i = 1, reach = 0; i < sorted.Count; i++)
        {
            // reach: the earlier block that ends last; any block starting before its end overlaps it.
            if (sorted[i].Pfn < sorted[reach].Pfn + sorted[reach].Pages)
                return new(Name, $"frame {sorted[i].Pfn:x} is in two free blocks: {sorted[reach]} and {sorted[i]}");
            if (sorted[i].Pfn + sorted[i].Pages > sorted[reach].Pfn + sorted[reach].Pages) reach = i;
        }
        return null;
    }

    private static string FirstNotFree(IKernelView k, BuddyBlock b)
    {
        for (long p = b.Pfn; p < b.Pfn + b.Pages; p++)
            if (k.Mem.OwnerOf(p) != FrameOwner.Free) return $"frame {p:x} is owned {k.Mem.OwnerOf(p)}";
        return "none found one by one";
    }

    private static long AlignDown(long x, long a) => x - x % a;

    private static long AlignUp(long x, long a) => (x + a - 1) / a * a;
}
