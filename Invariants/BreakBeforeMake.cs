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
/// of the same frames. Judged from the step's entry stores and flushes, in order.
/// Source: 060a2c92d1b6 (arm64 HVO disabled for lack of BBM); pgattr_change_is_safe in
/// arch/arm64/mm/mmu.c; the BBM thread of Nanyong Sun's vmemmap series.
/// </summary>
public sealed class BreakBeforeMake : IInvariant
{
    public string Name => nameof(BreakBeforeMake);
    public string Claim => "on arm64 no valid entry changes output address, contiguity or block size in place, and no entry is made again before its break was invalidated";
    public string Source => "Arm ARM D8.16; 060a2c92d1b6; arch/arm64/mm/mmu.c pgattr_change_is_safe";

    public Violation? Check(IKernelView k)
    {
        if (k.Arch.Arch != Arch.Arm64) return null;
        bool bbml2 = k.Variant.Arm64.VmemmapUpdate == VmemmapUpdate.Bbml2;
        var events = k.StepEvents;
        for (int i = 0; i < events.Count; i++)
        {
            var e = events[i];
            if (e.Kind != KernelEventKind.EntryStore || e.New.IsNone) continue;
            if (!e.Old.IsNone)
            {
                if (InPlaceChangeNeedsBreak(e.Level, e.Old, e.New, bbml2) is { } why)
                    return new(Name, $"{e.Mm} {e.Level} entry at {e.Start:x} changed in place: {e.Old} -> {e.New} ({why})");
                continue;
            }
            // A make: find the break of the same entry, and whether an invalidation followed it.
            if (UninvalidatedBreak(k, events, i) is { } brk)
                return new(Name, $"{e.Mm} {e.Level} entry at {e.Start:x} made ({e.New}) before the break {brk} was invalidated");
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
    /// if no flush that covers it came between the two: searched back through this step's
    /// events, else among the changes still pending a flush from earlier steps (a break of a
    /// table entry is covered only by a flush that reaches the walk caches).</summary>
    private static string? UninvalidatedBreak(IKernelView k, IReadOnlyList<KernelEvent> events, int make)
    {
        var m = events[make];
        bool leafFlushed = false, walkFlushed = false;
        for (int j = make - 1; j >= 0; j--)
        {
            var e = events[j];
            if (e.Kind == KernelEventKind.Flush)
            {
                if (e.Covers(m.Mm!, m.Start, m.End, tableEntry: false)) leafFlushed = true;
                if (e.Covers(m.Mm!, m.Start, m.End, tableEntry: true)) walkFlushed = true;
                continue;
            }
            if (e.Mm != m.Mm || e.Level != m.Level || e.Start != m.Start) continue;
            if (!e.New.IsNone || e.Old.IsNone) return null; // the entry's last store was not a break
            bool invalidated = e.Old.IsTable ? walkFlushed : leafFlushed;
            return invalidated ? null : $"at {e.Start:x} ({e.Old} -> none, this step, by cpu{e.Cpu})";
        }
        // A pending break recorded later in this step (after the make) is not one the make followed.
        for (int j = make + 1; j < events.Count; j++)
            if (events[j] is { Kind: KernelEventKind.EntryStore } e && e.Mm == m.Mm && e.Level == m.Level && e.Start == m.Start) return null;
        foreach (var p in k.PendingFlushes)
            if (p.Mm == m.Mm && p.Level == m.Level && p.EntryVa == m.Start && p.New.IsNone && !p.Old.IsNone)
                return $"at {p.EntryVa:x} ({p.Old} -> none, an earlier step)";
        return null;
    }
}
