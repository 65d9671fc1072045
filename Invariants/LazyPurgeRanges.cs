using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// The vmap ranges that lazy purging excuses, indexed once per check: a range lies inside one
/// vmap area on the purge list (vfree unmapped it at once; purge_vmap_area_lazy flushes it later)
/// and overlaps no live vm area and no busy vmap area (nothing may touch it, and it has not been
/// handed out again). Built only when a check first needs it; each question is then two binary
/// searches instead of scans of every area.
/// </summary>
internal sealed class LazyPurgeRanges
{
    private readonly (ulong Start, ulong End)[] _lazy;
    private readonly (ulong Start, ulong End)[] _used;

    public LazyPurgeRanges(IKernelView k)
    {
        var v = k.Vmalloc;
        _lazy = [.. v.LazyRanges.Select(l => (l.VaStart, l.VaEnd)).OrderBy(r => r.Item1)];
        _used = [.. v.LiveAreas.Select(a => (a.Addr, a.Addr + a.Size + a.GuardSize))
            .Concat(v.BusyVmapAreas.Select(b => (b.VaStart, b.VaEnd))).OrderBy(r => r.Item1)];
    }

    /// <summary>Whether [start, end) awaits its purge and nothing else claims it.</summary>
    public bool Excuses(ulong start, ulong end)
    {
        int i = LastStartingAtOrBelow(_lazy, start);
        if (i < 0 || end - 1 > _lazy[i].End - 1) return false;
        // Vm areas and busy vmap areas never overlap each other: sorted by start, they are sorted
        // by end too, so only the last one starting below `end` can overlap [start, end).
        int j = LastStartingAtOrBelow(_used, end - 1);
        return j < 0 || _used[j].End - 1 < start;
    }

    private static int LastStartingAtOrBelow((ulong Start, ulong End)[] ranges, ulong x)
    {
        int lo = 0, hi = ranges.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (ranges[mid].Start <= x) { found = mid; lo = mid + 1; } else hi = mid - 1;
        }
        return found;
    }
}
