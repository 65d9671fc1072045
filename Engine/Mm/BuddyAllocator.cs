// mm/page_alloc.c: the buddy allocator (__rmqueue_smallest, expand, __free_one_page) and
// alloc_contig_pages for gigantic pages.
//
// Departures from the kernel:
// - Free lists are kept in address order and the lowest block is taken, instead of LIFO lists,
//   so that every run is deterministic and repros read naturally. Block sizes, natural alignment,
//   splitting (expand keeps the lower half) and merging with the buddy are the kernel's.
// - Blocks of MAX_PAGE_ORDER are held as coalesced ranges, not one list node per block, so a
//   64 TiB machine costs what its fragmented memory costs, not what its free memory costs.
// - Migration types, zones, watermarks and per-CPU lists are not modelled.
// - A free that the lists cannot hold — a block already on its list, or a max-order block that
//   overlaps a free range — is kept on a list of strays instead of throwing, as the kernel's
//   list_add would link the page in twice: the lists are then corrupt, and BuddyWellFormed
//   reports it with the blocks as evidence.
namespace PropertySuite.Engine.Mm;

/// <summary>One free block as the lists hold it: 2^Order pages at Pfn; a run of max-order blocks
/// has Order = MAX_PAGE_ORDER and Pages a multiple of its size. Stray: held twice (corrupt).</summary>
public readonly record struct BuddyBlock(long Pfn, long Pages, int Order, bool Stray)
{
    public override string ToString() => $"{(Stray ? "stray " : "")}order-{Order} block {Pfn:x}+{Pages}";
}

/// <summary>A buddy allocator over PFNs. Callers check ownership; this class trusts its input.</summary>
public sealed class BuddyAllocator : IBuddyView
{
    private readonly int _maxOrder;
    private readonly SortedSet<long>[] _freeArea;
    private readonly RangeSet _maxOrderBlocks = new();
    private readonly List<BuddyBlock> _strays = new();

    /// <summary>The ranges whose free blocks changed since <see cref="ClearTouched"/> (frees,
    /// merges, allocations, splits), for incremental checks.</summary>
    public List<(long Pfn, long Pages)> TouchedThisStep { get; } = new();
    IReadOnlyList<(long Pfn, long Pages)> IBuddyView.TouchedThisStep => TouchedThisStep;

    public void ClearTouched() => TouchedThisStep.Clear();

    private void Touch(long pfn, long pages)
    {
        if (TouchedThisStep.Count > 0 && TouchedThisStep[^1].Pfn + TouchedThisStep[^1].Pages == pfn)
            TouchedThisStep[^1] = (TouchedThisStep[^1].Pfn, TouchedThisStep[^1].Pages + pages);
        else TouchedThisStep.Add((pfn, pages));
    }

    /// <summary>Adds a run of max-order blocks, or keeps it as a stray if the lists already hold
    /// any of its pages as a max-order run.</summary>
    private void AddMaxOrder(long pfn, long pages)
    {
        Touch(pfn, pages);
        if (_maxOrderBlocks.Overlapping(pfn, pfn + pages).Any()) { _strays.Add(new(pfn, pages, _maxOrder, true)); return; }
        _maxOrderBlocks.Add(pfn, pages);
    }

    public BuddyAllocator(int maxOrder)
    {
        _maxOrder = maxOrder;
        _freeArea = new SortedSet<long>[maxOrder];
        for (int i = 0; i < maxOrder; i++) _freeArea[i] = new SortedSet<long>();
    }

    public int MaxOrder => _maxOrder;

    /// <summary>Pages currently free.</summary>
    public long NrFreePages { get; private set; }

    /// <summary>Hands a range of PFNs to the allocator, in naturally aligned blocks.</summary>
    public void FreeRange(long start, long count)
    {
        long pfn = start, end = start + count;
        long top = 1L << _maxOrder;
        while (pfn < end)
        {
            if ((pfn & (top - 1)) == 0 && end - pfn >= 2 * top)
            {
                // A run of whole MAX_PAGE_ORDER blocks: one range, merged with its neighbours
                // (the blocks on either side are either free max-order blocks or not free).
                long run = (end - pfn) & ~(top - 1);
                NrFreePages += run;
                AddMaxOrder(pfn, run);
                pfn += run;
                continue;
            }
            int order = _maxOrder;
            while (order > 0 && ((pfn & ((1L << order) - 1)) != 0 || pfn + (1L << order) > end)) order--;
            FreePages(pfn, order);
            pfn += 1L << order;
        }
    }

    /// <summary>__free_one_page: frees a block of 2^order pages and merges it with its buddies.</summary>
    public void FreePages(long pfn, int order)
    {
        if (order > _maxOrder)
        {
            FreeRange(pfn, 1L << order);
            return;
        }
        NrFreePages += 1L << order;
        while (order < _maxOrder)
        {
            long buddy = pfn ^ (1L << order);
            if (!_freeArea[order].Remove(buddy)) break;
            pfn = Math.Min(pfn, buddy);
            order++;
        }
        if (order == _maxOrder) AddMaxOrder(pfn, 1L << _maxOrder);
        else
        {
            Touch(pfn, 1L << order);
            if (!_freeArea[order].Add(pfn)) _strays.Add(new(pfn, 1L << order, order, true));
        }
    }

    /// <summary>__rmqueue_smallest + expand: allocates 2^order naturally aligned pages into
    /// <paramref name="pfn"/>; false when no block is free or the order is out of range.</summary>
    public bool TryAllocPages(int order, out long pfn)
    {
        pfn = 0;
        if (order < 0 || order > _maxOrder) return false;
        for (int current = order; current <= _maxOrder; current++)
        {
            if (current < _maxOrder)
            {
                if (_freeArea[current].Count == 0) continue;
                pfn = _freeArea[current].Min;
                _freeArea[current].Remove(pfn);
            }
            else
            {
                if (!_maxOrderBlocks.TryFirst(out pfn)) { pfn = 0; return false; }
                _maxOrderBlocks.Remove(pfn, 1L << _maxOrder);
            }
            Touch(pfn, 1L << current);
            // expand(): give the upper halves back, keep the lower one.
            while (current > order)
            {
                current--;
                _freeArea[current].Add(pfn + (1L << current));
            }
            NrFreePages -= 1L << order;
            return true;
        }
        pfn = 0;
        return false;
    }

    /// <summary>alloc_contig_pages: <paramref name="nrPages"/> free pages starting at a multiple
    /// of <paramref name="align"/> (a power of two) into <paramref name="pfn"/>, or false. A power-of-two size up to
    /// MAX_PAGE_ORDER is an ordinary buddy allocation (naturally aligned, which satisfies any
    /// smaller alignment). Larger requests take the lowest aligned run of free MAX_PAGE_ORDER
    /// blocks; a tail that does not fill a whole block goes back to the free lists as naturally
    /// aligned blocks, so every free block stays naturally aligned. Migrating in-use pages out
    /// of the way is not modelled.</summary>
    public bool TryAllocContig(long nrPages, long align, out long pfn)
    {
        if (nrPages <= 0 || align <= 0 || !long.IsPow2(align))
            throw new ModelBugException($"alloc_contig_pages of {nrPages} pages aligned to {align}: need a positive count and a power-of-two alignment");
        long top = 1L << _maxOrder;
        if (long.IsPow2(nrPages) && nrPages <= top && align <= nrPages)
            return TryAllocPages(System.Numerics.BitOperations.Log2((ulong)nrPages), out pfn);
        long whole = (nrPages + top - 1) & ~(top - 1);
        if (!_maxOrderBlocks.TryFindAlignedFit(whole, Math.Max(align, top), out pfn)) return false;
        _maxOrderBlocks.Remove(pfn, whole);
        Touch(pfn, whole);
        NrFreePages -= whole;
        if (whole > nrPages) FreeRange(pfn + nrPages, whole - nrPages);
        return true;
    }

    /// <summary>Removes [start, start+count), wholly free and split by no free block at its ends,
    /// from the free lists (offline_pages: isolated pages leave the buddy; a memmap_on_memory
    /// block's range starts after its memmap pages, inside a max-order block). A free block never
    /// straddles a max-order boundary, so every block inside the range lies wholly inside it.</summary>
    public void TakeFreeRange(long start, long count)
    {
        long top = 1L << _maxOrder, end = start + count;
        if (((start & (top - 1)) != 0 && _maxOrderBlocks.Contains(start)) || ((end & (top - 1)) != 0 && _maxOrderBlocks.Contains(end - 1)))
            throw new ModelBugException($"buddy take of {start:x}+{count}: a free MAX_PAGE_ORDER block straddles an end of the range");
        long taken = 0;
        foreach (var (s, n) in _maxOrderBlocks.Overlapping(start, start + count).ToList())
        {
            long a = Math.Max(s, start), b = Math.Min(s + n, start + count);
            _maxOrderBlocks.Remove(a, b - a);
            taken += b - a;
        }
        for (int order = 0; order < _maxOrder; order++)
            foreach (long b in _freeArea[order].GetViewBetween(start, start + count - 1).ToList())
            {
                _freeArea[order].Remove(b);
                taken += 1L << order;
            }
        if (taken != count) throw new ModelBugException($"buddy take of {start:x}+{count}: only {taken} pages were free");
        Touch(start, count);
        NrFreePages -= count;
    }

    /// <summary>Whether <paramref name="pfn"/> lies in a free block (slow; for checks).</summary>
    public bool IsFree(long pfn)
    {
        if (_maxOrderBlocks.Contains(pfn)) return true;
        foreach (var b in _strays) if (pfn >= b.Pfn && pfn < b.Pfn + b.Pages) return true;
        for (int order = 0; order < _maxOrder; order++)
            if (_freeArea[order].Contains(pfn & ~((1L << order) - 1))) return true;
        return false;
    }

    /// <summary>The free pages inside [start, end), as the parts of free blocks that fall in it
    /// (max-order runs first, then each lower order in address order). Costs what the free
    /// blocks overlapping the range cost, not the length of the range.</summary>
    public IEnumerable<(long Pfn, long Pages)> FreeBlocksIn(long start, long end)
    {
        if (end <= start) yield break;
        foreach (var (s, n) in _maxOrderBlocks.Overlapping(start, end))
        {
            long a = Math.Max(s, start), b = Math.Min(s + n, end);
            yield return (a, b - a);
        }
        for (int order = _maxOrder - 1; order >= 0; order--)
        {
            long size = 1L << order;
            var set = _freeArea[order];
            if (set.Count == 0) continue;
            long lo = Math.Max(set.Min, start - size + 1), hi = end - 1;
            if (lo > hi) continue;
            foreach (long b in set.GetViewBetween(lo, hi))
            {
                long a = Math.Max(b, start), e = Math.Min(b + size, end);
                yield return (a, e - a);
            }
        }
        foreach (var b in _strays)
            if (b.Pfn < end && b.Pfn + b.Pages > start)
            {
                long a = Math.Max(b.Pfn, start), e = Math.Min(b.Pfn + b.Pages, end);
                yield return (a, e - a);
            }
    }

    /// <summary>Every block that overlaps [start, end), whole (not clipped), with its order; strays
    /// last. Costs what the blocks overlapping the range cost.</summary>
    public IEnumerable<BuddyBlock> BlocksOverlapping(long start, long end)
    {
        if (end <= start) yield break;
        foreach (var (s, n) in _maxOrderBlocks.Overlapping(start, end)) yield return new(s, n, _maxOrder, false);
        for (int order = _maxOrder - 1; order >= 0; order--)
        {
            long size = 1L << order;
            var set = _freeArea[order];
            if (set.Count == 0) continue;
            long lo = Math.Max(set.Min, start - size + 1), hi = end - 1;
            if (lo > hi) continue;
            foreach (long b in set.GetViewBetween(lo, hi)) yield return new(b, size, order, false);
        }
        foreach (var b in _strays)
            if (b.Pfn < end && b.Pfn + b.Pages > start) yield return b;
    }

    /// <summary>Every block the lists hold (max-order runs, each order's list, strays); for checks.</summary>
    public IEnumerable<BuddyBlock> AllBlocks()
    {
        foreach (var (s, n) in _maxOrderBlocks.Ranges) yield return new(s, n, _maxOrder, false);
        for (int order = _maxOrder - 1; order >= 0; order--)
            foreach (long pfn in _freeArea[order]) yield return new(pfn, 1L << order, order, false);
        foreach (var b in _strays) yield return b;
    }

    /// <summary>Every free block as (pfn, pages), in address order within each order; for checks.</summary>
    public IEnumerable<(long Pfn, long Pages)> FreeBlocks()
    {
        foreach (var r in _maxOrderBlocks.Ranges) yield return r;
        for (int order = _maxOrder - 1; order >= 0; order--)
            foreach (long pfn in _freeArea[order]) yield return (pfn, 1L << order);
        foreach (var b in _strays) yield return (b.Pfn, b.Pages);
    }
}

/// <summary>A set of disjoint, coalesced half-open ranges [start, start+count) of longs.</summary>
public sealed class RangeSet
{
    // Keyed by start; value is the exclusive end.
    private readonly SortedDictionary<long, long> _byStart = new();
    private readonly SortedSet<long> _starts = new();

    public IEnumerable<(long Start, long Count)> Ranges => _byStart.Select(kv => (kv.Key, kv.Value - kv.Key));
    public int Count => _byStart.Count;

    public bool TryFirst(out long start)
    {
        if (_starts.Count == 0) { start = 0; return false; }
        start = _starts.Min;
        return true;
    }

    private bool Floor(long x, out long start)
    {
        if (_starts.Count == 0 || _starts.Min > x) { start = 0; return false; }
        start = _starts.GetViewBetween(long.MinValue, x).Max;
        return true;
    }

    public bool Contains(long x) => Floor(x, out long s) && _byStart[s] > x;

    public void Add(long start, long count)
    {
        long end = start + count;
        if (count <= 0) throw new ModelBugException($"RangeSet.Add [{start:x}, {end:x}): empty or inverted range");
        // A range that starts inside [start, end) overlaps, whatever the merging below finds.
        if (Floor(end - 1, out long inner) && inner >= start)
            throw new ModelBugException($"RangeSet.Add [{start:x}, {end:x}) overlaps range at {inner:x}");
        if (Floor(start, out long ps) && _byStart[ps] >= start)
        {
            if (_byStart[ps] > start) throw new ModelBugException($"RangeSet.Add [{start:x}, {end:x}) overlaps [{ps:x}, {_byStart[ps]:x})");
            start = ps;
            Remove(ps);
        }
        if (_byStart.TryGetValue(end, out long nextEnd))
        {
            Remove(end);
            end = nextEnd;
        }
        _byStart[start] = end;
        _starts.Add(start);
    }

    private void Remove(long start)
    {
        _byStart.Remove(start);
        _starts.Remove(start);
    }

    /// <summary>Removes [start, start+count), which must lie inside one range.</summary>
    public void Remove(long start, long count)
    {
        long end = start + count;
        if (count <= 0) throw new ModelBugException($"RangeSet.Remove [{start:x}, {end:x}): empty or inverted range");
        if (!Floor(start, out long rs) || _byStart[rs] < end)
            throw new ModelBugException($"RangeSet.Remove [{start:x}, {end:x}) is not inside one free range");
        long re = _byStart[rs];
        Remove(rs);
        if (rs < start) { _byStart[rs] = start; _starts.Add(rs); }
        if (end < re) { _byStart[end] = re; _starts.Add(end); }
    }

    /// <summary>The ranges that share at least one element with [start, end), in order.</summary>
    public IEnumerable<(long Start, long Count)> Overlapping(long start, long end)
    {
        if (end <= start || _starts.Count == 0) yield break;
        if (Floor(start, out long first) && _byStart[first] > start) yield return (first, _byStart[first] - first);
        if (start + 1 > end - 1 || _starts.Max < start + 1) yield break;
        foreach (long s in _starts.GetViewBetween(start + 1, end - 1)) yield return (s, _byStart[s] - s);
    }

    /// <summary>The lowest x with [x, x+count) inside one range and x % align == 0; false
    /// when there is none.</summary>
    public bool TryFindAlignedFit(long count, long align, out long start)
    {
        foreach (var (s, e) in _byStart)
        {
            long x = (s + align - 1) / align * align;
            if (x + count <= e) { start = x; return true; }
        }
        start = 0;
        return false;
    }
}
