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
    private readonly Dictionary<ulong, TlbEntry> _entries = new();
    private readonly Queue<ulong> _fifo = new();

    public int Capacity { get; } = capacity;
    public int Count => _entries.Count;
    public IEnumerable<TlbEntry> Entries => _entries.Values.OrderBy(e => e.Va);

    public bool TryLookup(ulong va, out TlbEntry entry)
    {
        foreach (ulong size in leafSizes)
            if (_entries.TryGetValue(va & ~(size - 1), out entry) && entry.Size == size) return true;
        entry = default;
        return false;
    }

    public void Fill(TlbEntry e)
    {
        if (_entries.ContainsKey(e.Va)) { _entries[e.Va] = e; return; }
        while (_entries.Count >= Capacity && _fifo.Count > 0)
            _entries.Remove(_fifo.Dequeue());
        _entries[e.Va] = e;
        _fifo.Enqueue(e.Va);
    }

    /// <summary>Drops every entry that overlaps [start, end). Returns how many were dropped.</summary>
    public int FlushRange(ulong start, ulong end)
    {
        if (_entries.Count == 0) return 0;
        List<ulong>? drop = null;
        foreach (var e in _entries.Values)
            if (e.Va < end && start < e.Va + e.Size) (drop ??= new()).Add(e.Va);
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
