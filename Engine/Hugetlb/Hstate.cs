// struct hstate and the model's record of a HugeTLB folio (include/linux/hugetlb.h, mm/hugetlb.c),
// pinned to the 6.10-6.12 era.
//
// The kernel keeps a folio's state in its struct pages (PG_head, the hugetlb page type, the HPG_*
// flags in head->private, the refcount) and in the hstate's lists and counters. The model does the
// same: everything the kernel reads comes from struct pages read through vmemmap. The
// HugetlbFolio record is only the model's handle on a folio (head PFN, hstate, where it is in
// its life) — the equivalent of the list_head that links it into hugepage_freelists /
// hugepage_activelist — plus the raw hwpoison list the kernel keeps in the folio
// (folio->_hugetlb_hwpoison, a tail field).
//
// Departures from the kernel: one node (the per-node counters equal the global ones);
// reservations (resv_huge_pages), subpools, cgroups and migration are not modelled;
// nr_overcommit_hugepages defaults to unlimited so that a fault on an empty pool takes a surplus
// folio (set it with the Hstate property to model the sysctl).
using PropertySuite.Engine.Config;

namespace PropertySuite.Engine;

/// <summary>Where a folio is in its life; the lists of mm/hugetlb.c plus the transients.</summary>
public enum FolioState
{
    /// <summary>Allocated from the buddy / contig allocator; prep and optimize are running; not yet
    /// accounted in nr_huge_pages (between only_alloc_fresh_hugetlb_folio and
    /// __prep_account_new_huge_page).</summary>
    Allocating,
    /// <summary>On h->hugepage_freelists: frozen (refcount 0), HPG_freed.</summary>
    Free,
    /// <summary>On h->hugepage_activelist: handed out (refcount ≥ 1).</summary>
    Active,
    /// <summary>Taken out of the pool by remove_hugetlb_folio; restore and the free to the buddy
    /// are running (__update_and_free_hugetlb_folio). Not counted in nr_huge_pages.</summary>
    Freeing,
    /// <summary>Returned to the buddy allocator; the record is dead.</summary>
    Freed,
}

/// <summary>struct hstate: one HugeTLB page size.</summary>
public sealed class Hstate
{
    private readonly Dictionary<long, HugetlbFolio> _folios = new();
    // The same folios' head PFNs in order, for range queries (FoliosOverlapping).
    private readonly SortedSet<long> _heads = new();
    // hugepage_freelists[nid]: enqueue adds at the head, dequeue takes the first (LIFO); a folio
    // knows its node, so list_del is O(1) as in the kernel.
    private readonly LinkedList<HugetlbFolio> _freelist = new();

    internal Hstate(ArchConfig arch, long size, int reservePages)
    {
        Size = size;
        Order = arch.HugePageOrder(size);
        PagesPerHugePage = arch.PagesPerHugePage(size);
        VmemmapSizeBytes = arch.HugetlbVmemmapSize(size);
        long optimizable = VmemmapSizeBytes - ((long)reservePages << arch.PageShift);
        OptimizableSizeBytes = optimizable > 0 ? optimizable : 0;
        ReservePages = reservePages;
        VmemmapPages = VmemmapSizeBytes >> arch.PageShift;
        IsGigantic = Order > arch.MaxPageOrder;
        Name = ArchConfig.FormatSize(size);
    }

    /// <summary>huge_page_size(h).</summary>
    public long Size { get; }
    /// <summary>huge_page_order(h).</summary>
    public int Order { get; }
    /// <summary>pages_per_huge_page(h).</summary>
    public long PagesPerHugePage { get; }
    /// <summary>hstate_is_gigantic(h): order above MAX_PAGE_ORDER, allocated with alloc_contig_pages.</summary>
    public bool IsGigantic { get; }
    /// <summary>h->name without the "hugepages-" prefix, e.g. 2M.</summary>
    public string Name { get; }

    /// <summary>hugetlb_vmemmap_size(h): bytes of struct pages of one folio.</summary>
    public long VmemmapSizeBytes { get; }
    /// <summary>V: vmemmap pages of one folio (0 when its struct pages fill less than a page).</summary>
    public long VmemmapPages { get; }
    /// <summary>Vmemmap pages HVO keeps per folio under the configured scheme (1 since v5.18, 2 in v5.14).</summary>
    public int ReservePages { get; }
    /// <summary>hugetlb_vmemmap_optimizable_size(h): bytes HVO frees per folio (0: not optimizable).</summary>
    public long OptimizableSizeBytes { get; }
    /// <summary>hugetlb_vmemmap_optimizable(h).</summary>
    public bool Optimizable => OptimizableSizeBytes > 0;

    /// <summary>h->max_huge_pages: the persistent pool size last asked for.</summary>
    public long MaxHugePages { get; internal set; }
    /// <summary>h->nr_huge_pages: folios in the pool, free or in use (surplus included).</summary>
    public long NrHugePages { get; internal set; }
    /// <summary>h->free_huge_pages.</summary>
    public long FreeHugePages { get; internal set; }
    /// <summary>h->surplus_huge_pages.</summary>
    public long SurplusHugePages { get; internal set; }
    /// <summary>h->nr_overcommit_huge_pages (unlimited by default in the model).</summary>
    public long NrOvercommitHugePages { get; set; } = long.MaxValue;

    /// <summary>How many set_max_huge_pages are running (the kernel's h->resize_lock holder; the
    /// model does not serialise them, so this is a count).</summary>
    public int ResizesRunning { get; internal set; }

    /// <summary>persistent_huge_pages(h) = nr_huge_pages − surplus_huge_pages.</summary>
    public long PersistentHugePages => NrHugePages - SurplusHugePages;

    /// <summary>Every folio of this size that exists (any state but Freed), by head PFN. The
    /// order is not meaningful; sort when it matters.</summary>
    public IReadOnlyCollection<HugetlbFolio> Folios => _folios.Values;
    public int FolioCount => _folios.Count;
    /// <summary>The free list, first = next to be dequeued.</summary>
    public IReadOnlyCollection<HugetlbFolio> Freelist => _freelist;
    /// <summary>The first folio of the free list, or null.</summary>
    public HugetlbFolio? FreelistFirst => _freelist.First?.Value;

    /// <summary>The folios sorted by head PFN (for invariants and rendering).</summary>
    public List<HugetlbFolio> FoliosByPfn()
    {
        var l = new List<HugetlbFolio>(_folios.Values);
        l.Sort((a, b) => a.HeadPfn.CompareTo(b.HeadPfn));
        return l;
    }

    /// <summary>Adds to <paramref name="into"/> this hstate's folios that overlap frames
    /// [start, end), in head order; the cost grows with the folios found, not the pool.</summary>
    public void FoliosOverlapping(long start, long end, List<HugetlbFolio> into)
    {
        long lo = Math.Max(0, start - PagesPerHugePage + 1), hi = end - 1;
        if (lo > hi || _heads.Count == 0 || _heads.Min > hi || _heads.Max < lo) return;
        foreach (long head in _heads.GetViewBetween(lo, hi)) into.Add(_folios[head]);
    }

    /// <summary>The folio whose head is at <paramref name="headPfn"/>.</summary>
    public bool TryGetFolio(long headPfn, out HugetlbFolio folio) => _folios.TryGetValue(headPfn, out folio!);

    private readonly List<HugetlbFolio> _touched = new();

    /// <summary>Folios whose state or vmemmap-busy mark changed in the current step (repeats
    /// possible), for invariants that check only what a step changed.</summary>
    public IReadOnlyList<HugetlbFolio> TouchedThisStep => _touched;

    internal void Touch(HugetlbFolio f) => _touched.Add(f);

    /// <summary>A step begins: nothing touched yet.</summary>
    public void ClearTouched() => _touched.Clear();

    internal void Track(HugetlbFolio f)
    {
        if (!_folios.TryAdd(f.HeadPfn, f)) throw new Mm.ModelBugException($"hstate {Name}: folio at pfn {f.HeadPfn:x} tracked twice");
        _heads.Add(f.HeadPfn);
    }

    internal void Untrack(HugetlbFolio f)
    {
        if (!_folios.Remove(f.HeadPfn)) throw new Mm.ModelBugException($"hstate {Name}: folio at pfn {f.HeadPfn:x} not tracked");
        _heads.Remove(f.HeadPfn);
    }

    internal void FreelistPush(HugetlbFolio f)
    {
        if (f.FreelistNode is not null) throw new Mm.ModelBugException($"{f} enqueued twice");
        f.FreelistNode = _freelist.AddFirst(f);
    }

    internal bool FreelistRemove(HugetlbFolio f)
    {
        if (f.FreelistNode is not { } node) return false;
        _freelist.Remove(node);
        f.FreelistNode = null;
        return true;
    }

    public override string ToString() =>
        $"hstate {Name}: nr {NrHugePages} free {FreeHugePages} surplus {SurplusHugePages} max {MaxHugePages}";
}

/// <summary>The model's handle on one HugeTLB folio: its head PFN and hstate, and the list it is on.</summary>
public sealed class HugetlbFolio
{
    internal HugetlbFolio(Hstate h, long headPfn, bool contig)
    {
        Hstate = h;
        HeadPfn = headPfn;
        Contig = contig;
    }

    public Hstate Hstate { get; }
    /// <summary>folio_pfn(folio).</summary>
    public long HeadPfn { get; }
    /// <summary>Allocated by alloc_contig_pages (freed with free_contig_range), not the buddy.</summary>
    public bool Contig { get; }
    public FolioState State
    {
        get => _state;
        internal set { _state = value; Hstate.Touch(this); }
    }
    private FolioState _state = FolioState.Allocating;
    /// <summary>Raw error pages (folio->_hugetlb_hwpoison's raw_hwp_page list), as subpage indices.</summary>
    public List<long> RawHwpPages { get; } = new();
    /// <summary>An optimize or restore of this folio's vmemmap is running (a task is between its
    /// first and last step); invariants about the finished shape skip the folio meanwhile.</summary>
    public bool VmemmapBusy
    {
        get => _vmemmapBusy;
        internal set { _vmemmapBusy = value; Hstate.Touch(this); }
    }
    private bool _vmemmapBusy;

    /// <summary>The reference alloc_hugetlb_folio handed to the faulting user is still held (the
    /// model's side of the handle: `hugetlb_free` drops it, once).</summary>
    public bool UserReference { get; set; }

    public long NrPages => Hstate.PagesPerHugePage;

    internal LinkedListNode<HugetlbFolio>? FreelistNode { get; set; }

    public override string ToString() => $"folio {Hstate.Name} at pfn {HeadPfn:x} ({State})";
}
