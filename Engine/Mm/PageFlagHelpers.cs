// The struct-page helpers of include/linux/page-flags.h and include/linux/mm.h as of 6.10-6.12
// (the one-reserved-page HVO with fake heads, before the 2026 "no fake heads" rework):
// compound_head, page_fixed_fake_head, page_is_fake_head, PageHead, PageTail, PageCompound,
// page_folio, folio_test_hugetlb, PageHuge, folio_test_hugetlb_vmemmap_optimized.
//
// They read struct pages through a VmemmapView: either a CPU's view (its TLB, else a walk of
// init_mm; a hole is recorded as a translation fault) or the observer's view (init_mm only, no
// side effects) that invariants use. Nothing here knows about HVO: a fake head is simply a struct
// page whose vmemmap page aliases the page holding the real head, so it reads PG_head; the helpers
// see through it exactly as the kernel's do, by reading page[1].compound_head. The static key
// hugetlb_optimize_vmemmap_key is the count of optimized folios (incremented per optimize,
// decremented per restore); while it is zero page_fixed_fake_head() takes its fast exit.
//
// Departures from the kernel: the hugetlb page type (PG_hugetlb in page_type since v6.9) and the
// HPG_* flags (head->private) are bits of the head's flags in the model; both are read through
// the head struct page as in the kernel.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>How struct pages are read: by a CPU (TLB, faults recorded) or by an observer
/// (init_mm only, no side effects). Reading an unmapped struct page yields an all-zero page.</summary>
public readonly struct VmemmapView
{
    private readonly Mmu _mmu;
    private readonly ExecContext? _ctx;
    private readonly bool _peek;

    internal VmemmapView(Mmu mmu, ExecContext? ctx, bool peek)
    {
        _mmu = mmu;
        _ctx = ctx;
        _peek = peek;
    }

    public StructPage Read(ulong page)
    {
        StructPage sp;
        if (_peek) _mmu.PeekStructPage(page, out sp);
        else _mmu.ReadStructPage(_ctx, page, out sp);
        return sp;
    }
}

/// <summary>The struct-page predicates of include/linux/page-flags.h, read through a view.</summary>
public sealed class PageFlagHelpers(ArchConfig Arch, Mmu mmu) : IPageFlagsView
{
    /// <summary>The struct pages as CPU <paramref name="ctx"/> sees them.</summary>
    public VmemmapView View(ExecContext? ctx) => new(mmu, ctx, peek: false);

    /// <summary>The struct pages as init_mm maps them, for invariants (no TLB, no faults).</summary>
    public VmemmapView PeekView => new(mmu, null, peek: true);

    /// <summary>hugetlb_optimize_vmemmap_key: number of folios whose vmemmap is optimized.</summary>
    public long HugetlbOptimizeVmemmapKey { get; internal set; }

    /// <summary>hugetlb_optimize_vmemmap_enabled(): static_branch_maybe on the key.</summary>
    public bool HugetlbOptimizeVmemmapEnabled => HugetlbOptimizeVmemmapKey > 0;

    /// <summary>page_fixed_fake_head(): for a PAGE_SIZE-aligned struct page that shows PG_head,
    /// page[1].compound_head tells whether it is a fake head (bit 0 set: the real head is
    /// compound_head − 1). Returns the real head for a fake head, else <paramref name="page"/>.</summary>
    [Kernel("include/linux/page-flags.h", "page_fixed_fake_head")]
    public ulong PageFixedFakeHead(in VmemmapView v, ulong page)
    {
        if (!HugetlbOptimizeVmemmapEnabled) return page;
        if ((page & (ulong)(Arch.PageSize - 1)) == 0 && (v.Read(page).Flags & PageFlags.Head) != 0)
        {
            ulong head = v.Read(page + ArchConfig.StructPageSize).CompoundHead;
            if ((head & 1) != 0) return head - 1;
        }
        return page;
    }

    /// <summary>page_is_fake_head().</summary>
    [Kernel("include/linux/page-flags.h", "page_is_fake_head")]
    public bool PageIsFakeHead(in VmemmapView v, ulong page) => PageFixedFakeHead(v, page) != page;

    /// <summary>_compound_head(): a tail's encoded head, else the fake-head fix-up.</summary>
    [Kernel("include/linux/page-flags.h", "_compound_head")]
    public ulong CompoundHead(in VmemmapView v, ulong page)
    {
        ulong head = v.Read(page).CompoundHead;
        if ((head & 1) != 0) return head - 1;
        return PageFixedFakeHead(v, page);
    }

    /// <summary>PageHead(): PG_head and not a fake head.</summary>
    [Kernel("include/linux/page-flags.h", "PageHead")]
    public bool PageHead(in VmemmapView v, ulong page) =>
        (v.Read(page).Flags & PageFlags.Head) != 0 && !PageIsFakeHead(v, page);

    /// <summary>PageTail(): compound_head bit 0, or a fake head.</summary>
    [Kernel("include/linux/page-flags.h", "PageTail")]
    public bool PageTail(in VmemmapView v, ulong page) =>
        (v.Read(page).CompoundHead & 1) != 0 || PageIsFakeHead(v, page);

    /// <summary>PageCompound(): PG_head or a tail.</summary>
    [Kernel("include/linux/page-flags.h", "PageCompound")]
    public bool PageCompound(in VmemmapView v, ulong page)
    {
        var sp = v.Read(page);
        return (sp.Flags & PageFlags.Head) != 0 || (sp.CompoundHead & 1) != 0;
    }

    /// <summary>page_folio(): the folio (head struct page) a page belongs to.</summary>
    [Kernel("include/linux/page-flags.h", "page_folio")]
    public ulong PageFolio(in VmemmapView v, ulong page) => CompoundHead(v, page);

    /// <summary>folio_test_hugetlb(): the hugetlb page type of the folio's head.</summary>
    [Kernel("include/linux/page-flags.h", "folio_test_hugetlb")]
    public bool FolioTestHugetlb(in VmemmapView v, ulong folio) => (v.Read(folio).Flags & PageFlags.Hugetlb) != 0;

    /// <summary>PageHuge(): folio_test_hugetlb(page_folio(page)).</summary>
    [Kernel("include/linux/page-flags.h", "PageHuge")]
    public bool PageHuge(in VmemmapView v, ulong page) => FolioTestHugetlb(v, PageFolio(v, page));

    /// <summary>folio_test_hugetlb_vmemmap_optimized() (HPG_vmemmap_optimized of the head).</summary>
    [Kernel("include/linux/hugetlb.h", "folio_test_hugetlb_vmemmap_optimized")]
    public bool FolioTestHugetlbVmemmapOptimized(in VmemmapView v, ulong folio) =>
        (v.Read(folio).Flags & PageFlags.VmemmapOptimized) != 0;

    /// <summary>folio_ref_count() of the folio's head.</summary>
    [Kernel("include/linux/page_ref.h", "folio_ref_count")]
    public int FolioRefCount(in VmemmapView v, ulong folio) => v.Read(folio).Refcount;

    /// <summary>Read-modify-write of a struct page's flags (set_bit / clear_bit) through
    /// <paramref name="ctx"/>'s view; a read-only mapping makes the store fault (recorded).</summary>
    public bool ModifyPageFlags(ExecContext? ctx, ulong page, PageFlags set, PageFlags clear, string what)
    {
        if (!mmu.ReadStructPage(ctx, page, out var sp)) return false;
        sp.Flags = (sp.Flags | set) & ~clear;
        return mmu.WriteStructPage(ctx, page, sp, what);
    }
}

/// <summary>Names the kernel function a model method stands for, so the vocabulary can be
/// checked against the source in both directions.</summary>
[AttributeUsage(AttributeTargets.Method | AttributeTargets.Class | AttributeTargets.Property, AllowMultiple = true)]
public sealed class KernelAttribute(string file, string function) : Attribute
{
    public string File { get; } = file;
    public string Function { get; } = function;
}
