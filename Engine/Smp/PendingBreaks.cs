// The pending flushes that are breaks (a valid entry cleared, no flush has covered it yet),
// indexed by the start of the range they translated: what arm64 break-before-make asks of every
// make ("was anything overlapping this range broken and not invalidated?"). A lazily freed
// vmalloc area leaves thousands of them between purges, so a linear look per make (or a sort per
// step) would make checking cost grow with them. Kept by TlbFlush beside its list, in step with
// it: an entry is added with its PendingFlush and removed with it.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine.Smp;

/// <summary>Read-only view of the pending breaks, for invariants.</summary>
public interface IPendingBreaksView
{
    /// <summary>How many pending changes are breaks (valid → none).</summary>
    int Count { get; }
    /// <summary>At least the longest range any pending break translates (a search bound: breaks
    /// that start more than this below an address cannot reach it).</summary>
    ulong LongestRange { get; }
    /// <summary>The pending breaks whose range starts in [from, to), oldest first among equal
    /// starts; a <paramref name="to"/> of 0 means the top of the address space.</summary>
    IEnumerable<PendingFlush> StartingIn(ulong from, ulong to);
    /// <summary>The oldest pending break of the entry of <paramref name="mm"/> at
    /// <paramref name="level"/> and <paramref name="entryVa"/>, or null.</summary>
    PendingFlush? Of(string mm, PtLevel level, ulong entryVa);
}

public sealed class PendingBreaks : IPendingBreaksView
{
    private readonly SortedSet<PendingFlush> _byStart = new(ByStartThenAge.Instance);
    private ulong _longest;

    public int Count => _byStart.Count;
    public ulong LongestRange => _longest;

    public static bool IsBreak(PendingFlush p) => p.New.IsNone && !p.Old.IsNone;

    internal void Added(PendingFlush p)
    {
        if (!IsBreak(p)) return;
        if (!_byStart.Add(p)) throw new ModelBugException($"pending break {p.What} (#{p.Seq}) indexed twice");
        _longest = Math.Max(_longest, p.End - p.Start); // an End of 0 (the top) wraps to the size
    }

    internal void Removed(PendingFlush p)
    {
        if (IsBreak(p) && !_byStart.Remove(p)) throw new ModelBugException($"pending break {p.What} (#{p.Seq}) was not indexed");
    }

    internal void Clear() => _byStart.Clear();

    public IEnumerable<PendingFlush> StartingIn(ulong from, ulong to)
    {
        if (_byStart.Count == 0 || (to != 0 && to <= from)) return [];
        return _byStart.GetViewBetween(Bound(from, long.MinValue), Bound(to == 0 ? ulong.MaxValue : to - 1, long.MaxValue));
    }

    public PendingFlush? Of(string mm, PtLevel level, ulong entryVa)
    {
        foreach (var p in StartingIn(entryVa, entryVa + 1))
            if (p.Mm == mm && p.Level == level && p.EntryVa == entryVa) return p;
        return null;
    }

    private static PendingFlush Bound(ulong start, long seq) =>
        new(start, start, 0, "", PtLevel.Pte, start, default, default) { Seq = seq };

    private sealed class ByStartThenAge : IComparer<PendingFlush>
    {
        public static readonly ByStartThenAge Instance = new();
        public int Compare(PendingFlush? a, PendingFlush? b)
        {
            int c = a!.Start.CompareTo(b!.Start);
            return c != 0 ? c : a.Seq.CompareTo(b.Seq);
        }
    }
}
