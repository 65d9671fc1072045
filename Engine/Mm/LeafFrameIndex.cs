// An incrementally maintained summary of a page table: which frames the leaves over one virtual
// range map. Invariants ask it after every step ("is every vmemmap leaf's frame a vmemmap
// frame?", "how many distinct frames does vmemmap map?"); a full walk would cost what the whole
// range maps (a 64 TiB machine has half a million vmemmap PMD leaves), while a step changes a
// handful of entries.
//
// How: each table page caches the sorted, coalesced frame runs mapped by the leaves below it
// (its own and its children's) that intersect the range, so a table is recomputed only when an
// entry in it or below it changed. PageTable.Set, NewTable and ForgetTable invalidate the table
// concerned and, through the index of table entries by target frame, every table above it. The
// summary is exactly what PageTable.Leaves over the same range would produce, corrupt trees
// included (dangling entries lead nowhere, a table with two parents is counted through both);
// a test checks it against that full walk after random operations and broken variants.
namespace PropertySuite.Engine.Mm;

public sealed class LeafFrameIndex
{
    private readonly PageTable _pt;
    private readonly ulong _last; // inclusive last address of the range (end 0 = 2^64)
    // Clean tables only: a table absent from the cache is dirty. Invariant kept by Invalidate:
    // a dirty table's parents that reach it through an entry intersecting the range are dirty.
    private readonly Dictionary<PtTable, List<(long Pfn, long Count)>> _cache = new();

    public ulong Start { get; }
    public ulong End { get; }

    internal LeafFrameIndex(PageTable pt, ulong start, ulong end)
    {
        _pt = pt;
        Start = start;
        End = end;
        _last = end - 1;
    }

    /// <summary>The distinct frames mapped by leaves intersecting [Start, End), as sorted,
    /// disjoint, non-adjacent runs (a frame mapped twice, like an HVO alias, appears once).</summary>
    public IReadOnlyList<(long Pfn, long Count)> Runs => End == 0 || Start < End ? Compute(_pt.Root) : [];

    /// <summary>How many distinct frames those leaves map.</summary>
    public long DistinctFrames
    {
        get
        {
            long n = 0;
            foreach (var (_, count) in Runs) n += count;
            return n;
        }
    }

    private readonly Stack<PtTable> _work = new();

    internal void Invalidate(PtTable t)
    {
        if (!_cache.Remove(t)) return; // already dirty: so are its parents
        foreach (var p in _pt.ParentsOf(t.Pfn)) _work.Push(p);
        while (_work.Count > 0)
        {
            var x = _work.Pop();
            if (_cache.Remove(x))
                foreach (var p in _pt.ParentsOf(x.Pfn)) _work.Push(p);
        }
    }

    internal void Forget(PtTable t) => Invalidate(t);

    private List<(long Pfn, long Count)> Compute(PtTable t)
    {
        if (_cache.TryGetValue(t, out var cached)) return cached;
        var runs = new List<(long Pfn, long Count)>();
        ulong size = _pt.EntrySize(t);
        ulong firstIndex = Start <= t.BaseVa ? 0 : (Start - t.BaseVa) / size;
        int pageShift = _pt.Arch.PageShift;
        for (ulong i = firstIndex; i < (ulong)t.Entries.Length; i++)
        {
            ulong va = _pt.EntryVa(t, (int)i);
            if (va > _last) break;
            Pte e = t.Entries[(int)i];
            if (e.IsLeaf) runs.Add((e.Pfn, (long)(size >> pageShift)));
            else if (_pt.TryGetChild(t, e, out var child)) runs.AddRange(Compute(child));
        }
        var merged = Coalesce(runs);
        _cache[t] = merged;
        return merged;
    }

    /// <summary>Adds to <paramref name="into"/> every leaf intersecting [Start, End) that maps a
    /// frame of <paramref name="frames"/> (sorted, disjoint runs), in address order. Descends only
    /// into tables whose cached runs meet those frames, so the cost follows the leaves found and
    /// the tables above them, not the size of the range. In a tree that is not canonical
    /// (<see cref="PageTable.IsCanonicalTree"/>) a table reached twice is visited twice, as
    /// <see cref="PageTable.Leaves"/> would.</summary>
    public void LeavesMapping(IReadOnlyList<(long Pfn, long Count)> frames, List<PtWalk> into)
    {
        if (frames.Count == 0 || !(End == 0 || Start < End)) return;
        // The root's own runs are not computed: they would merge every run of the range (what a
        // step that changed an entry pays at the next query); its entries are judged one by one.
        CollectMapping(_pt.Root, frames, into);
    }

    private void CollectMapping(PtTable t, IReadOnlyList<(long Pfn, long Count)> frames, List<PtWalk> into)
    {
        ulong size = _pt.EntrySize(t);
        ulong firstIndex = Start <= t.BaseVa ? 0 : (Start - t.BaseVa) / size;
        long pages = (long)(size >> _pt.Arch.PageShift);
        for (ulong i = firstIndex; i < (ulong)t.Entries.Length; i++)
        {
            if (_pt.EntryVa(t, (int)i) > _last) break;
            Pte e = t.Entries[(int)i];
            if (e.IsLeaf) { if (Meets(e.Pfn, pages, frames)) into.Add(new PtWalk(t, (int)i, e)); }
            else if (_pt.TryGetChild(t, e, out var child) && Meets(Compute(child), frames)) CollectMapping(child, frames, into);
        }
    }

    /// <summary>Whether [pfn, pfn + count) meets one of the sorted, disjoint <paramref name="runs"/>.</summary>
    private static bool Meets(long pfn, long count, IReadOnlyList<(long Pfn, long Count)> runs)
    {
        int lo = 0, hi = runs.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            var (p, n) = runs[mid];
            if (p + n <= pfn) lo = mid + 1;
            else if (p >= pfn + count) hi = mid - 1;
            else return true;
        }
        return false;
    }

    private static bool Meets(List<(long Pfn, long Count)> a, IReadOnlyList<(long Pfn, long Count)> b)
    {
        if (a.Count == 0) return false;
        var (small, large) = a.Count <= b.Count ? ((IReadOnlyList<(long Pfn, long Count)>)a, b) : (b, a);
        foreach (var (p, n) in small)
            if (Meets(p, n, large)) return true;
        return false;
    }

    /// <summary>Sorts runs and merges the overlapping and adjacent ones.</summary>
    public static List<(long Pfn, long Count)> Coalesce(List<(long Pfn, long Count)> runs)
    {
        if (runs.Count <= 1) return runs;
        runs.Sort();
        var merged = new List<(long Pfn, long Count)>(runs.Count);
        long start = runs[0].Pfn, end = runs[0].Pfn + runs[0].Count;
        for (int i = 1; i < runs.Count; i++)
        {
            var (p, n) = runs[i];
            if (p <= end) { end = Math.Max(end, p + n); continue; }
            merged.Add((start, end - start));
            start = p;
            end = p + n;
        }
        merged.Add((start, end - start));
        return merged;
    }
}
