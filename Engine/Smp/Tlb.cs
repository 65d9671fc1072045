// A CPU's TLB: cached leaf translations of kernel virtual addresses.
//
// Entries are filled by accesses (a walk that ends on a valid leaf) and are removed only by the
// flushes the engine performs (flush_tlb_kernel_range, flush_tlb_all, __flush_tlb_kernel_pgtable)
// or by capacity eviction, oldest first, which hardware is always free to do. A cached entry is
// used by later accesses even when the page table has changed since: that is how a missing
// flush becomes visible. Walk caches (cached table entries) are not modelled separately: a
// flush of a range drops every leaf entry translating it.
namespace PropertySuite.Engine.Smp;

/// <summary>One cached translation: [Va, Va+Size) → frames starting at Pfn.</summary>
public readonly record struct TlbEntry(ulong Va, ulong Size, long Pfn, bool Writable)
{
    public long PfnFor(ulong va, int pageShift) => Pfn + (long)((va - Va) >> pageShift);
    public override string ToString() => $"[{Va:x}+{Size:x}) -> pfn {Pfn:x} {(Writable ? "RW" : "RO")}";
}

public sealed class Tlb(int capacity, IReadOnlyList<ulong> leafSizes)
{
    // Live entries by VA, each with the fill sequence number that placed it; the FIFO holds
    // (VA, sequence) in fill order. A FIFO item whose sequence no longer matches the live entry
    // (flushed, or flushed and filled again) is stale and skipped, so eviction always removes
    // the oldest live entry, and the FIFO is compacted when stale items outnumber live ones.
    private readonly Dictionary<ulong, (TlbEntry Entry, long Seq)> _entries = new();
    private readonly Queue<(ulong Va, long Seq)> _fifo = new();
    private long _nextSeq;

    public int Capacity { get; } = capacity;
    public int Count => _entries.Count;
    public IEnumerable<TlbEntry> Entries => _entries.Values.Select(e => e.Entry).OrderBy(e => e.Va);

    public bool TryLookup(ulong va, out TlbEntry entry)
    {
        foreach (ulong size in leafSizes)
            if (_entries.TryGetValue(va & ~(size - 1), out var e) && e.Entry.Size == size) { entry = e.Entry; return true; }
        entry = default;
        return false;
    }

    public void Fill(TlbEntry e)
    {
        if (_entries.TryGetValue(e.Va, out var old)) { _entries[e.Va] = (e, old.Seq); return; }
        while (_entries.Count >= Capacity && _fifo.TryDequeue(out var victim))
            if (_entries.TryGetValue(victim.Va, out var live) && live.Seq == victim.Seq) _entries.Remove(victim.Va);
        long seq = _nextSeq++;
        _entries[e.Va] = (e, seq);
        _fifo.Enqueue((e.Va, seq));
        if (_fifo.Count > 2 * Capacity + 16) Compact();
    }

    private void Compact()
    {
        var live = _fifo.Where(f => _entries.TryGetValue(f.Va, out var e) && e.Seq == f.Seq).ToList();
        _fifo.Clear();
        foreach (var f in live) _fifo.Enqueue(f);
    }

    /// <summary>Drops every entry that overlaps [start, end) (an end of 0 is the top of the
    /// address space). Returns how many were dropped.</summary>
    public int FlushRange(ulong start, ulong end)
    {
        if (_entries.Count == 0) return 0;
        List<ulong>? drop = null;
        foreach (var (entry, _) in _entries.Values)
            if (Mm.VaRange.Overlaps(entry.Va, entry.Va + entry.Size, start, end)) (drop ??= new()).Add(entry.Va);
        if (drop is null) return 0;
        foreach (ulong va in drop) _entries.Remove(va);
        if (_entries.Count == 0) _fifo.Clear();
        return drop.Count;
    }

    public void FlushAll()
    {
        _entries.Clear();
        _fifo.Clear();
    }
}
