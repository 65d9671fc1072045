// struct page as the model stores it (include/linux/mm_types.h, include/linux/page-flags.h).
//
// Only the fields the modelled mechanisms read or write are kept. Where the kernel keeps
// folio-wide state in the first tail page (folio->_folio_order, _flags_1) the model does too,
// so that HVO aliasing affects it exactly as in the kernel. HugeTLB's own flags (HPG_*) live in
// the head page's flags here rather than in head->private; they are read through the head page
// in both cases.
namespace PropertySuite.Engine.Mm;

[Flags]
public enum PageFlags : uint
{
    None = 0,
    /// <summary>PG_head: first page of a compound page.</summary>
    Head = 1 << 0,
    /// <summary>PG_reserved: memblock / boot memory, never freed through the buddy.</summary>
    Reserved = 1 << 1,
    /// <summary>PG_dcache_clean (arm64 PG_arch_1): I/D caches are coherent for this page.</summary>
    DcacheClean = 1 << 2,
    /// <summary>PG_hwpoison.</summary>
    HwPoison = 1 << 3,
    /// <summary>PG_locked.</summary>
    Locked = 1 << 4,
    /// <summary>PG_lru: on an LRU list (page-cache pages).</summary>
    Lru = 1 << 5,
    /// <summary>PageHuge / folio_test_hugetlb: the hugetlb page type (v6.9+: page_type).</summary>
    Hugetlb = 1 << 8,
    /// <summary>HPG_vmemmap_optimized (folio_test_hugetlb_vmemmap_optimized).</summary>
    VmemmapOptimized = 1 << 9,
    /// <summary>HPG_freed: on the hstate free list.</summary>
    HugetlbFreed = 1 << 10,
    /// <summary>HPG_temporary: a surplus page (model's name for the pool's surplus state).</summary>
    HugetlbSurplus = 1 << 11,
    /// <summary>HPG_raw_hwp_unreliable / memory-failure marker on the head.</summary>
    HugetlbRawHwpUnreliable = 1 << 12,
    /// <summary>PageVmemmapSelfHosted (memmap_on_memory).</summary>
    VmemmapSelfHosted = 1 << 13,
    /// <summary>HPG_migratable: an in-use HugeTLB folio that migration may isolate (set once a
    /// fault has mapped a new page-cache folio; cleared by isolation and on free).</summary>
    HugetlbMigratable = 1 << 14,
}

/// <summary>One struct page record (64 bytes in the kernel).</summary>
public record struct StructPage
{
    public PageFlags Flags;
    /// <summary>_refcount.</summary>
    public int Refcount;
    /// <summary>_mapcount as a plain count (the kernel stores it biased by -1).</summary>
    public int Mapcount;
    /// <summary>compound_head: for a tail, the vmemmap address of its head with bit 0 set; else 0.</summary>
    public ulong CompoundHead;
    /// <summary>folio->_entire_mapcount as a plain count (whole-folio mappings), meaningful in the first tail page.</summary>
    public int EntireMapcount;
    /// <summary>folio->_folio_order, meaningful in the first tail page.</summary>
    public byte Order;
    /// <summary>page->private.</summary>
    public long Private;
    /// <summary>page->mapping: the model's file id + 1 for page-cache pages, else 0.</summary>
    public long Mapping;
    /// <summary>page->index.</summary>
    public long Index;

    public readonly bool IsTail => (CompoundHead & 1) != 0;

    /// <summary>A boot-reserved page as memmap_init leaves it: PG_reserved, refcount 1.</summary>
    public static StructPage BootReserved => new() { Flags = PageFlags.Reserved, Refcount = 1 };

    public override readonly string ToString()
    {
        var parts = new List<string> { $"flags={Flags}", $"ref={Refcount}" };
        if (Mapcount != 0) parts.Add($"map={Mapcount}");
        if (EntireMapcount != 0) parts.Add($"entire_map={EntireMapcount}");
        if (CompoundHead != 0) parts.Add($"compound_head={CompoundHead:x}");
        if (Order != 0) parts.Add($"order={Order}");
        if (Private != 0) parts.Add($"private={Private}");
        if (Mapping != 0) parts.Add($"mapping={Mapping} index={Index}");
        return "{" + string.Join(" ", parts) + "}";
    }
}

/// <summary>
/// The contents of one vmemmap frame: PAGE_SIZE / 64 struct page slots, stored as a fill value
/// plus the slots that differ from it, so that a frame of identical tails costs one record.
/// </summary>
public sealed class VmemmapFrameContent
{
    private StructPage _fill;
    private Dictionary<int, StructPage>? _overrides;

    public VmemmapFrameContent(StructPage fill) => _fill = fill;

    /// <summary>Whether every slot holds the same record (the fill value).</summary>
    public bool IsUniform => _overrides is null || _overrides.Count == 0;

    public StructPage Read(int slot) =>
        _overrides is not null && _overrides.TryGetValue(slot, out var p) ? p : _fill;

    public void Write(int slot, in StructPage value)
    {
        if (value == _fill) { _overrides?.Remove(slot); return; }
        (_overrides ??= new())[slot] = value;
    }

    /// <summary>Writes the same record into every slot.</summary>
    public void Fill(in StructPage value)
    {
        _fill = value;
        _overrides = null;
    }

    /// <summary>copy_page(): an independent copy of this frame's contents.</summary>
    public VmemmapFrameContent Clone()
    {
        var c = new VmemmapFrameContent(_fill);
        if (_overrides is not null) c._overrides = new Dictionary<int, StructPage>(_overrides);
        return c;
    }

    public bool ContentEquals(VmemmapFrameContent other, int slots)
    {
        for (int i = 0; i < slots; i++) if (Read(i) != other.Read(i)) return false;
        return true;
    }
}
