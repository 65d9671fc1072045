// What a step touched of the vmalloc range, for the incremental forms of the vmalloc
// invariants: every init_mm entry store inside [VMALLOC_START, VMALLOC_END) (a table entry's
// store covers everything below it) and every vm area created, freed or changed
// (IVmallocView.AreasChangedThisStep), widened to a boundary the invariant names (an arm64
// contiguous run is judged as a whole), clipped to the vmalloc range, sorted and merged.
// Judging the leaves of these ranges, and the areas they overlap, after every step gives the
// verdict a full scan gives, because a full scan passed after the previous step and nothing
// else of what the invariants read changed (Properties/EngineCore/IncrementalOracleTests.cs
// compares the two after every step of generated scenarios). The same clipping and merging
// serve the incremental invariants of other ranges (vmemmap, the direct map): AddClipped, Merge.
using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

internal static class VmallocStepRanges
{
    /// <summary>The touched ranges, or the whole vmalloc range at step 0 (right after boot,
    /// whose stores are not in the step's log).</summary>
    public static List<(ulong Start, ulong End)> Touched(IKernelView k, ulong align)
    {
        ulong lo = k.Arch.VmallocStart, hi = k.Arch.VmallocEnd;
        var acc = new List<(ulong Start, ulong End)>();
        if (k.Step == 0) { acc.Add((lo, hi)); return acc; }
        string init = k.SwapperPgDir.Name;
        foreach (var e in k.StepEvents)
            if (e.Kind == KernelEventKind.EntryStore && e.Mm == init) Add(acc, e.Start, e.End, lo, hi, align);
        foreach (var (s, end) in k.Vmalloc.AreasChangedThisStep) Add(acc, s, end, lo, hi, align);
        return Merge(acc);
    }

    /// <summary>Adds [start, end) clipped to [lo, hi) to <paramref name="acc"/> (an end of 0 is
    /// the top of the address space), merged into the last range when they meet; nothing when
    /// they do not overlap. Callers <see cref="Merge"/> the list before use.</summary>
    public static void AddClipped(List<(ulong Start, ulong End)> acc, ulong start, ulong end, ulong lo, ulong hi)
    {
        if (!VaRange.Overlaps(start, end, lo, hi)) return;
        start = Math.Max(start, lo);
        end = end == 0 ? hi : Math.Min(end, hi);
        if (acc.Count > 0 && acc[^1].End >= start && acc[^1].Start <= end) acc[^1] = (Math.Min(acc[^1].Start, start), Math.Max(acc[^1].End, end));
        else acc.Add((start, end));
    }

    /// <summary>Sorts and merges overlapping or adjacent ranges.</summary>
    public static List<(ulong Start, ulong End)> Merge(List<(ulong Start, ulong End)> ranges)
    {
        if (ranges.Count < 2) return ranges;
        ranges.Sort();
        var merged = new List<(ulong Start, ulong End)> { ranges[0] };
        for (int i = 1; i < ranges.Count; i++)
        {
            var (s, e) = ranges[i];
            var last = merged[^1];
            if (s <= last.End) merged[^1] = (last.Start, Math.Max(last.End, e));
            else merged.Add((s, e));
        }
        return merged;
    }

    /// <summary>Whether [start, end) overlaps any of the sorted, merged <paramref name="ranges"/>.</summary>
    public static bool Overlaps(List<(ulong Start, ulong End)> ranges, ulong start, ulong end)
    {
        int lo = 0, hi = ranges.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) / 2;
            if (ranges[mid].End <= start) lo = mid + 1;
            else if (ranges[mid].Start >= end) hi = mid - 1;
            else return true;
        }
        return false;
    }

    /// <summary>The index of the live area whose [addr, addr + size) contains <paramref name="va"/>, or -1
    /// (areas are in address order and do not overlap).</summary>
    public static int Containing(IReadOnlyList<IVmAreaView> areas, ulong va)
    {
        int lo = 0, hi = areas.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) / 2;
            var a = areas[mid];
            if (va < a.Addr) hi = mid - 1;
            else if (va - a.Addr >= a.Size) lo = mid + 1;
            else return mid;
        }
        return -1;
    }

    private static void Add(List<(ulong Start, ulong End)> acc, ulong start, ulong end, ulong lo, ulong hi, ulong align)
    {
        if (!VaRange.Overlaps(start, end, lo, hi)) return;
        start = Math.Max(start, lo);
        end = end == 0 ? hi : Math.Min(end, hi);
        if (align > 1)
        {
            start &= ~(align - 1);
            end = Math.Min(hi, (end + align - 1) & ~(align - 1));
        }
        // Stores mostly come in address order: extend the last range rather than add one.
        if (acc.Count > 0 && acc[^1].End >= start && acc[^1].Start <= end) acc[^1] = (Math.Min(acc[^1].Start, start), Math.Max(acc[^1].End, end));
        else acc.Add((start, end));
    }
}
