using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// Every frame has exactly one owner, and each owner's count agrees with the independent record
/// of the mechanism that holds those frames: free frames with the buddy free lists, page-table
/// frames with the registered tables, vmemmap frames with the frames vmemmap leaves map (aliases
/// once) plus those a task holds, vmalloc frames with the live areas, HugeTLB frames with the
/// folios. No free of an unallocated or foreign frame (double free) ever happened, and every
/// frame whose owner changed this step is in the buddy exactly when it is owned Free. A leak is
/// an owner count above its record; a double free is a bad free; free lists that disagree with
/// the owners (a frame listed twice) are a violation with the counts, not a model exception
/// (BuddyWellFormed judges the lists' shape). Source: mm/page_alloc.c (bad_page, __free_one_page).
/// </summary>
public sealed class FrameConservation : IInvariant
{
    public string Name => nameof(FrameConservation);
    public string Claim => "every frame has one owner, each owner's frame count matches its mechanism's own record, and nothing is freed twice";
    public string Source => "mm/page_alloc.c";

    public Violation? Check(IKernelView k)
    {
        if (k.Mem.BadFrees.Count > 0) return new(Name, k.Mem.BadFrees[0]);
        long total = 0;
        foreach (var o in Enum.GetValues<FrameOwner>()) total += k.Mem.Count(o);
        if (total != k.Mem.MaxPfn) return new(Name, $"owner counts add up to {total} frames; the machine has {k.Mem.MaxPfn}");
        var expected = new Dictionary<FrameOwner, (long Count, List<string> Who)>();
        foreach (var (owner, who, count) in k.FrameAccountants)
        {
            expected.TryGetValue(owner, out var e);
            e.Who ??= new();
            long n = count();
            e.Who.Add($"{who} {n}");
            expected[owner] = (e.Count + n, e.Who);
        }
        foreach (var (owner, (count, who)) in expected.OrderBy(kv => kv.Key))
            if (k.Mem.Count(owner) != count)
                return new(Name, $"{k.Mem.Count(owner)} frames are owned {owner} but the records account for {count} ({string.Join(", ", who)}): {(k.Mem.Count(owner) > count ? "leaked" : "lost")} {Math.Abs(k.Mem.Count(owner) - count)}");
        // Every frame whose owner changed this step is on the buddy free lists exactly when it is
        // owned Free. Per changed range: the free blocks inside it must be wholly owned Free, and
        // they must account for every frame owned Free there. Only on a mismatch is the range
        // walked frame by frame, to name the first offending frame (as CheckChangedFramesOneByOne).
        foreach (var changed in k.Mem.Changed)
        {
            long pfn = changed.Start, n = changed.Count;
            long inBuddy = 0;
            bool foreignInBuddy = false;
            foreach (var (start, count) in k.Mem.Buddy.FreeBlocksIn(changed.Start, changed.End))
            {
                inBuddy += count;
                if (!k.Mem.AllOwnedBy(start, count, FrameOwner.Free)) { foreignInBuddy = true; break; }
            }
            if (foreignInBuddy || inBuddy != k.Mem.CountOwned(pfn, n, FrameOwner.Free))
                return CheckChangedFramesOneByOne(k, pfn, n)
                    ?? new(Name, $"frames {pfn:x}+{n}: the free lists hold {inBuddy} frames there{(foreignInBuddy ? ", some of them owned" : "")}, {k.Mem.CountOwned(pfn, n, FrameOwner.Free)} are owned Free, yet every frame agrees one by one: a frame is on the free lists twice");
        }
        return null;
    }

    /// <summary>The frame-by-frame oracle of the buddy cross-check over one changed range.</summary>
    public Violation? CheckChangedFramesOneByOne(IKernelView k, long pfn, long n)
    {
        for (long p = pfn; p < pfn + n; p++)
        {
            bool owned = k.Mem.OwnerOf(p) == FrameOwner.Free, inBuddy = k.Mem.Buddy.IsFree(p);
            if (owned != inBuddy)
                return new(Name, $"frame {p:x} is owned {k.Mem.OwnerOf(p)} but is {(inBuddy ? "" : "not ")}on the buddy free lists");
        }
        return null;
    }
}
