using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// arm64 break-before-make (Arm ARM D8.16, "Translation table entry updates"): a valid entry is
/// never replaced by a different valid one in place when the change alters the output address,
/// the contiguous bit or the block size (leaf ↔ table); such a change must write an invalid
/// entry, invalidate the TLB for it, and only then write the new entry. So a "make" (none →
/// valid) is also wrong while the "break" before it (valid → none) of the same entry has not been
/// invalidated yet — inside one step or across steps. Permission-only changes of a leaf are
/// allowed in place, and under FEAT_BBM level 2 (BBML2_NOABORT) so is a block split into a table
/// of the same frames. The make rule holds for every address, not only for the entry that was
/// broken: in every mm (init_mm and each user mm's ASID) and at every level, a valid leaf may be
/// made over [start, end) only when every break of any entry overlapping that range (a PTE under
/// a PMD that is now made a block, a PMD block over a table that is now made) has been
/// invalidated on every CPU; otherwise a CPU can cache the old translation and the new one
/// together (the TLB conflict of Arm ARM D8.16.1). Judged from the step's entry stores and
/// flushes, in order, and from the breaks earlier steps left unflushed.
/// Source: 060a2c92d1b6 (arm64 HVO disabled for lack of BBM); pgattr_change_is_safe in
/// arch/arm64/mm/mmu.c; the BBM thread of Nanyong Sun's vmemmap series.
/// </summary>
public sealed class BreakBeforeMake : IInvariant
{
    public string Name => nameof(BreakBeforeMake);
    public string Claim => "on arm64 no valid entry changes output address, contiguity or block size in place, and no entry is made over an address (any mm, any level) before every break there was invalidated";
    public string Source => "Arm ARM D8.16; 060a2c92d1b6; arch/arm64/mm/mmu.c pgattr_change_is_safe";

    public Violation? Check(IKernelView k)
    {
        if (k.Arch.Arch != Arch.Arm64) return null;
        bool bbml2 = k.Variant.Arm64.VmemmapUpdate == VmemmapUpdate.Bbml2;
        var events = k.StepEvents;
        if (OnlyMakesOfEmptyEntries(k, events)) return null;
        // One pass: the previous store of each entry, the flushes in order, the last store of
        // each entry in the step, and the breaks still pending from earlier steps, so that a
        // step of many stores (a large vmalloc) is checked in linear time.
        var last = new Dictionary<(string?, PtLevel, ulong), int>(EntryKeyComparer.Instance);
        for (int i = 0; i < events.Count; i++)
            if (events[i].Kind == KernelEventKind.EntryStore) last[(events[i].Mm, events[i].Level, events[i].Start)] = i;
        var previous = new Dictionary<(string?, PtLevel, ulong), int>(EntryKeyComparer.Instance);
        var flushes = new List<int>();
        for (int i = 0; i < events.Count; i++)
        {
            var e = events[i];
            if (e.Kind == KernelEventKind.Flush) { flushes.Add(i); continue; }
            var key = (e.Mm, e.Level, e.Start);
            int prev = previous.TryGetValue(key, out int pj) ? pj : -1;
            previous[key] = i;
            if (e.New.IsNone) continue;
            if (!e.Old.IsNone)
            {
                if (InPlaceChangeNeedsBreak(e.Level, e.Old, e.New, bbml2) is { } why)
                    return new(Name, $"{e.Mm} {e.Level} entry at {e.Start:x} changed in place: {e.Old} -> {e.New} ({why})");
                continue;
            }
            // A make: find the break of the same entry, and whether an invalidation followed it.
            if (UninvalidatedBreak(k, events, flushes, i, prev, last[key] > i) is { } brk)
                return new(Name, $"{e.Mm} {e.Level} entry at {e.Start:x} made ({e.New}) before the break {brk} was invalidated");
        }
        return OverlappingBreakNotInvalidated(k, events);
    }

    /// <summary>Whether the step only filled empty entries (none → valid) while no break is
    /// outstanding, from this step or an earlier one: then neither rule has anything to judge
    /// (a make needs a break before it to be wrong, a change in place needs a valid old entry).
    /// The common case of a large vmalloc or ioremap, checked without building the indexes.</summary>
    private static bool OnlyMakesOfEmptyEntries(IKernelView k, IReadOnlyList<KernelEvent> events)
    {
        if (k.PendingBreaks.Count > 0) return false;
        foreach (var e in events)
            if (e.Kind == KernelEventKind.EntryStore && !e.Old.IsNone) return false;
        return true;
    }

    /// <summary>The make rule across entries: a make over [start, end) of an mm while a break of
    /// another entry of that mm (another level or another base address) overlapping the range is
    /// not invalidated yet, in this step or left by an earlier one. The same entry's break is
    /// judged above.</summary>
    private Violation? OverlappingBreakNotInvalidated(IKernelView k, IReadOnlyList<KernelEvent> events)
    {
        List<KernelEvent>? open = null; // this step's breaks not yet covered by a flush
        HashSet<(string?, PtLevel, ulong)>? brokenThisStep = null;
        foreach (var e in events)
            if (e.Kind == KernelEventKind.EntryStore && e.New.IsNone && !e.Old.IsNone) (brokenThisStep ??= new(EntryKeyComparer.Instance)).Add((e.Mm, e.Level, e.Start));
        // Indexed by start, with a bound on the longest range, so that each make looks only at the
        // breaks that can overlap it (a lazily freed vmalloc area leaves thousands).
        var earlier = k.PendingBreaks;
        ulong longest = earlier.LongestRange;
        foreach (var e in events)
        {
            if (e.Kind == KernelEventKind.Flush)
            {
                open?.RemoveAll(b => e.Covers(b.Mm!, b.Start, b.End, tableEntry: b.Old.IsTable));
                continue;
            }
            if (e.Kind != KernelEventKind.EntryStore) continue;
            if (e.New.IsNone && !e.Old.IsNone)
            {
                (open ??= new()).Add(e);
                continue;
            }
            // A new leaf is a translation a CPU can cache beside the old one; a new table entry
            // translates nothing by itself (what walk caches keep of the old table is
            // ClearFlushFree's rule), and a leaf made under it later is judged here.
            if (!e.New.IsLeaf || !e.Old.IsNone) continue;
            if (open is not null)
                foreach (var b in open)
                    if (b.Mm == e.Mm && (b.Level != e.Level || b.Start != e.Start) && VaRange.Overlaps(b.Start, b.End, e.Start, e.End))
                        return new(Name, $"{e.Mm} {e.Level} entry at {e.Start:x} made ({e.New}) over [{b.Start:x}, {b.End:x}), whose {b.Level} entry was broken ({b.Old} -> none, this step, by {KernelEvent.CpuName(b.Cpu)}) and not invalidated yet");
            ulong from = e.Start > longest ? e.Start - longest : 0;
            foreach (var p in earlier.StartingIn(from, e.End))
            {
                if (p.Mm != e.Mm || (p.Level == e.Level && p.EntryVa == e.Start) || !VaRange.Overlaps(p.Start, p.End, e.Start, e.End)) continue;
                if (brokenThisStep is not null && brokenThisStep.Contains((p.Mm, p.Level, p.EntryVa))) continue; // this step's own, judged above
                return new(Name, $"{e.Mm} {e.Level} entry at {e.Start:x} made ({e.New}) over [{p.Start:x}, {p.End:x}), whose {p.Level} entry was broken ({p.Old} -> none) in an earlier step and is not invalidated yet");
            }
        }
        return null;
    }

    /// <summary>Why changing a live valid entry in place needs a break, or null when it does not.</summary>
    private static string? InPlaceChangeNeedsBreak(PtLevel level, Pte old, Pte @new, bool bbml2)
    {
        if (old.IsLeaf && @new.IsLeaf)
            return old.Pfn != @new.Pfn ? "output address changed" : old.Cont != @new.Cont ? "contiguous bit changed" : null;
        if (old.IsTable && @new.IsTable) return old.Pfn == @new.Pfn ? null : "table pointer changed";
        if (old.IsLeaf && @new.IsTable && bbml2 && level > PtLevel.Pte) return null; // BBML2_NOABORT split
        return "block size changed";
    }

    /// <summary>The break (valid → none) of the entry that event <paramref name="make"/> makes,
    /// if no flush that covers it came between the two: the entry's previous store in this step
    /// (<paramref name="prev"/>), else among the changes still pending a flush from earlier
    /// steps unless the entry is stored again later in this step (a break of a table entry is
    /// covered only by a flush that reaches the walk caches).</summary>
    private static string? UninvalidatedBreak(IKernelView k, IReadOnlyList<KernelEvent> events, List<int> flushes, int make, int prev,
        bool storedLater)
    {
        var m = events[make];
        if (prev >= 0)
        {
            var e = events[prev];
            if (!e.New.IsNone || e.Old.IsNone) return null; // the entry's last store was not a break
            bool invalidated = false;
            int f = flushes.BinarySearch(prev);
            for (int x = f < 0 ? ~f : f; x < flushes.Count && flushes[x] < make && !invalidated; x++)
                invalidated = events[flushes[x]].Covers(m.Mm!, m.Start, m.End, tableEntry: e.Old.IsTable);
            return invalidated ? null : $"at {e.Start:x} ({e.Old} -> none, this step, by {KernelEvent.CpuName(e.Cpu)})";
        }
        // A pending break recorded later in this step (after the make) is not one the make followed.
        if (storedLater) return null;
        if (k.PendingBreaks.Of(m.Mm!, m.Level, m.Start) is not { } pb) return null;
        return $"at {pb.EntryVa:x} ({pb.Old} -> none, an earlier step)";
    }
}

/// <summary>An entry's key in one step's events: (mm name, level, entry VA). Every store of one mm
/// carries that mm's own Name instance, so names mostly compare by reference, and the hash reads
/// only the name's length and last character instead of every character, for each of a large
/// step's thousands of stores.</summary>
internal sealed class EntryKeyComparer : IEqualityComparer<(string?, PtLevel, ulong)>
{
    public static readonly EntryKeyComparer Instance = new();

    public bool Equals((string?, PtLevel, ulong) a, (string?, PtLevel, ulong) b) =>
        a.Item3 == b.Item3 && a.Item2 == b.Item2 && (ReferenceEquals(a.Item1, b.Item1) || string.Equals(a.Item1, b.Item1, StringComparison.Ordinal));

    public int GetHashCode((string?, PtLevel, ulong) k) =>
        HashCode.Combine(k.Item3, (int)k.Item2, k.Item1 is { Length: > 0 } n ? n.Length * 65599 + n[^1] : 0);
}
