// A CPU's TLB: cached leaf translations and cached table entries (the walk cache), each tagged
// by address space (global for kernel mappings, an ASID for a user mm's).
//
// Entries are filled by accesses and removed only by the flushes the engine performs or by
// capacity eviction, oldest first, which hardware is always free to do. A cached entry is used
// by later accesses even when the page table has changed since: that is how a missing flush
// becomes visible.
//
// - Leaf entries: one per leaf the CPU walked; on arm64 a leaf with the contiguous bit may be
//   cached as one entry for its whole aligned run (CONT_PTE_SIZE / CONT_PMD_SIZE), which the
//   model always does, so an invalidation by address removes the run's entry only if it covers
//   that address.
// - Entries of different sizes for one address are separate entries: filling a 2 MiB entry does
//   not remove a 4 KiB entry cached for an address inside it (nor the other way round), because
//   hardware does not either. Only an invalidation that covers an entry removes it. So a change
//   of block size made without the invalidation the architecture asks for (break-before-make on
//   arm64, Arm ARM D8.16; Intel SDM 4.10.2.3 on x86) leaves the CPU with both translations,
//   which is what NoConflictingTlbEntries looks for.
// - Walk-cache entries: the table entries (above PTE level) a walk went through, so a later walk
//   of an address below them starts at the cached lower table without reading the upper ones.
//   Only flushes that invalidate intermediate levels remove them (arm64: TLBI VAE1IS/VAAE1IS as
//   __flush_tlb_kernel_pgtable and flush_tlb_range issue, not the last-level VAALE1IS of
//   flush_tlb_kernel_range; x86: every INVLPG drops the paging-structure caches).
namespace PropertySuite.Engine.Smp;

/// <summary>One cached translation: [Va, Va+Size) → frames starting at Pfn, in address space
/// <see cref="Asid"/> (<see cref="Global"/> for kernel mappings). <see cref="FrameFreed"/>: a
/// frame it maps was freed while it was cached (set by the free, not by the TLB: hardware does
/// not know), so a later access through it reaches freed or reused memory.</summary>
public readonly record struct TlbEntry(ulong Va, ulong Size, long Pfn, bool Writable, int Asid = TlbEntry.Global, bool FrameFreed = false)
{
    /// <summary>The tag of global (kernel) translations, matched in every address space: init_mm's
    /// ASID, 0, which the kernel keeps for itself (arm64's ASID allocator never hands out ASID 0;
    /// kernel entries are global, nG clear, and match any ASID). User mms get 1 and up.</summary>
    public const int Global = Mm.MmStruct.InitMmAsid;

    public long PfnFor(ulong va, int pageShift) => Pfn + (long)((va - Va) >> pageShift);
    public override string ToString() => $"[{Va:x}+{Size:x}) -> pfn {Pfn:x} {(Writable ? "RW" : "RO")}{(Asid == Global ? "" : $" asid {Asid}")}{(FrameFreed ? " (its frame was freed since)" : "")}";

    /// <summary>Whether this entry maps any frame of [pfn, pfn + count).</summary>
    public bool MapsAny(long pfn, long count, int pageShift) => Pfn < pfn + count && pfn < Pfn + (long)(Size >> pageShift);
}

/// <summary>One cached table entry: the table entry of level <see cref="Level"/> that
/// translates [Va, Va+Size) points at the lower table in frame <see cref="TablePfn"/>.</summary>
public readonly record struct WalkCacheEntry(Config.PtLevel Level, ulong Va, ulong Size, long TablePfn, int Asid = TlbEntry.Global)
{
    public override string ToString() => $"{Level} [{Va:x}+{Size:x}) -> table {TablePfn:x}{(Asid == TlbEntry.Global ? "" : $" asid {Asid}")}";
}

public sealed class Tlb(int capacity, IReadOnlyList<ulong> leafSizes) : ITlbView
{
    /// <summary>Walk-cache entries per CPU before the oldest is evicted.</summary>
    public const int WalkCacheCapacity = 16;

    // Live entries by (ASID, VA), each with the fill sequence number that placed it; the FIFO
    // holds (key, sequence) in fill order. A FIFO item whose sequence no longer matches the live
    // entry (flushed, or flushed and filled again) is stale and skipped, so eviction always
    // removes the oldest live entry, and the FIFO is compacted when stale items outnumber live ones.
    //
    // Keys are one ulong: an entry's VA is page aligned, so its low 12 bits carry the tag
    // (the ASID, 0 for global, bits 0-8) and, for leaves, the entry's size as its index in
    // leafSizes (bits 9-11), so that entries of two sizes at one VA are both kept; for the walk
    // cache, the level (bits 0-2, tag in bits 3-11).
    private readonly Fifo<ulong, TlbEntry> _leaves = new(capacity);
    private readonly Fifo<ulong, WalkCacheEntry> _walk = new(WalkCacheCapacity);

    /// <summary>Largest ASID a TLB tag can hold.</summary>
    public const int MaxAsid = 511;

    private readonly int _sizeCount = leafSizes.Count <= 8 ? leafSizes.Count
        : throw new Mm.ModelBugException($"{leafSizes.Count} TLB entry sizes do not fit the 3 bits of a leaf key");

    private ulong LeafKey(int asid, ulong va, ulong size) => va | Tag(asid) | SizeIndex(size) << 9;

    private ulong SizeIndex(ulong size)
    {
        for (int i = 0; i < _sizeCount; i++)
            if (leafSizes[i] == size) return (ulong)i;
        throw new Mm.ModelBugException($"TLB entry size {size:x} is none of the leaf sizes {string.Join(", ", leafSizes.Select(x => x.ToString("x")))}");
    }
    private static ulong WalkKey(int asid, ulong va, Config.PtLevel level) => va | (Tag(asid) << 3) | (ulong)level;

    private static ulong Tag(int asid) => asid is >= TlbEntry.Global and <= MaxAsid
        ? (ulong)asid
        : throw new Mm.ModelBugException($"ASID {asid} does not fit a TLB tag (at most {MaxAsid})");

    public int Capacity { get; } = capacity;
    public int Count => _leaves.Count;
    public IEnumerable<TlbEntry> Entries => _leaves.Values.OrderBy(e => e.Va).ThenBy(e => e.Asid);
    public IEnumerable<WalkCacheEntry> WalkEntries => _walk.Values.OrderBy(e => e.Va).ThenBy(e => e.Level).ThenBy(e => e.Asid);

    /// <summary>A cached translation of <paramref name="va"/> usable in address space
    /// <paramref name="asid"/> (a global entry, or one tagged with that ASID).</summary>
    public bool TryLookup(ulong va, out TlbEntry entry, int asid = TlbEntry.Global)
    {
        for (int i = 0; i < leafSizes.Count; i++)
        {
            ulong size = leafSizes[i], b = (va & ~(size - 1)) | (ulong)i << 9;
            if (_leaves.TryGet(b, out var e)) { entry = e; return true; }
            if (asid != TlbEntry.Global && _leaves.TryGet(b | Tag(asid), out e)) { entry = e; return true; }
        }
        entry = default;
        return false;
    }

    public void Fill(TlbEntry e) => _leaves.Put(LeafKey(e.Asid, e.Va, e.Size), e);

    /// <summary>The lowest cached table entry covering <paramref name="va"/> in
    /// <paramref name="asid"/>'s view, if any.</summary>
    public bool TryLookupWalk(ulong va, int asid, out WalkCacheEntry entry)
    {
        bool found = false;
        entry = default;
        foreach (var e in _walk.Values)
        {
            if ((e.Asid != TlbEntry.Global && e.Asid != asid) || va < e.Va || va - e.Va >= e.Size) continue;
            if (!found || e.Level < entry.Level) { entry = e; found = true; }
        }
        return found;
    }

    /// <summary>The walk-cache entries that point at a table in frames [pfn, pfn + count), in
    /// <see cref="WalkEntries"/>' order, or null when none does (the common case of a free,
    /// answered without sorting).</summary>
    public List<WalkCacheEntry>? WalkEntriesOnFrames(long pfn, long count)
    {
        bool any = false;
        foreach (var (e, _) in _walk.Items)
            if (e.TablePfn >= pfn && e.TablePfn < pfn + count) { any = true; break; }
        return any ? WalkEntries.Where(e => e.TablePfn >= pfn && e.TablePfn < pfn + count).ToList() : null;
    }

    public void FillWalk(WalkCacheEntry e) => _walk.Put(WalkKey(e.Asid, e.Va, e.Level), e);

    /// <summary>Marks the leaf entries accepted by <paramref name="stale"/> as mapping a freed
    /// frame (<see cref="TlbEntry.FrameFreed"/>), keeping their place in the eviction order, and
    /// returns them as they were before the mark.</summary>
    public List<TlbEntry>? MarkFrameFreed(Func<TlbEntry, bool> stale)
    {
        List<TlbEntry>? hit = null;
        foreach (var (e, _) in _leaves.Items)
            if (stale(e)) (hit ??= new()).Add(e);
        if (hit is null) return null;
        foreach (var e in hit) _leaves.Put(LeafKey(e.Asid, e.Va, e.Size), e with { FrameFreed = true });
        return hit;
    }

    /// <summary>Drops every leaf entry that overlaps [start, end) (an end of 0 is the top of the
    /// address space) in the given address space (null: all). Returns how many were dropped.</summary>
    public int FlushRange(ulong start, ulong end, int? asid = null) =>
        _leaves.RemoveWhere(e => (asid is null || e.Asid == asid) && Mm.VaRange.Overlaps(e.Va, e.Va + e.Size, start, end));

    /// <summary>Drops every walk-cache entry that overlaps [start, end) in the given address
    /// space (null: all).</summary>
    public int FlushWalkRange(ulong start, ulong end, int? asid = null) =>
        _walk.RemoveWhere(e => (asid is null || e.Asid == asid) && Mm.VaRange.Overlaps(e.Va, e.Va + e.Size, start, end));

    /// <summary>Drops every entry, leaf and walk, tagged with <paramref name="asid"/>.</summary>
    public void FlushAsid(int asid)
    {
        _leaves.RemoveWhere(e => e.Asid == asid);
        _walk.RemoveWhere(e => e.Asid == asid);
    }

    public void FlushAll()
    {
        _leaves.Clear();
        _walk.Clear();
    }

    /// <summary>A bounded map that evicts its oldest live item.</summary>
    private sealed class Fifo<TKey, TValue>(int capacity) where TKey : notnull
    {
        private readonly Dictionary<TKey, (TValue Value, long Seq)> _items = new();
        private readonly Queue<(TKey Key, long Seq)> _order = new();
        private long _nextSeq;

        public int Count => _items.Count;
        public IEnumerable<TValue> Values => _items.Values.Select(v => v.Value);
        /// <summary>The items with their ages, unsorted, without an allocating enumerator.</summary>
        public Dictionary<TKey, (TValue Value, long Seq)>.ValueCollection Items => _items.Values;

        public bool TryGet(TKey key, out TValue value)
        {
            if (_items.TryGetValue(key, out var v)) { value = v.Value; return true; }
            value = default!;
            return false;
        }

        public void Put(TKey key, TValue value)
        {
            if (_items.TryGetValue(key, out var old)) { _items[key] = (value, old.Seq); return; }
            while (_items.Count >= capacity && _order.TryDequeue(out var victim))
                if (_items.TryGetValue(victim.Key, out var live) && live.Seq == victim.Seq) _items.Remove(victim.Key);
            long seq = _nextSeq++;
            _items[key] = (value, seq);
            _order.Enqueue((key, seq));
            if (_order.Count > 2 * capacity + 16) Compact();
        }

        public int RemoveWhere(Func<TValue, bool> drop)
        {
            if (_items.Count == 0) return 0;
            List<TKey>? keys = null;
            foreach (var (key, v) in _items)
                if (drop(v.Value)) (keys ??= new()).Add(key);
            if (keys is null) return 0;
            foreach (var key in keys) _items.Remove(key);
            if (_items.Count == 0) _order.Clear();
            return keys.Count;
        }

        public void Clear()
        {
            _items.Clear();
            _order.Clear();
        }

        private void Compact()
        {
            var live = _order.Where(f => _items.TryGetValue(f.Key, out var e) && e.Seq == f.Seq).ToList();
            _order.Clear();
            foreach (var f in live) _order.Enqueue(f);
        }
    }
}
