// mm/hugetlb.c, pinned to v6.10-v6.12: the HugeTLB pool (set_max_huge_pages, adjust_pool_surplus),
// folio allocation (only_alloc_fresh_hugetlb_folio, alloc_fresh_hugetlb_folio,
// alloc_surplus_hugetlb_folio, alloc_hugetlb_folio, dequeue_hugetlb_folio_node_exact), freeing
// (free_huge_folio, remove_hugetlb_folio, add_hugetlb_folio, __update_and_free_hugetlb_folio),
// and dissolve_free_hugetlb_folio. Each is a task: `yield return Progress` ends one
// kernel-visible step (a lock taken, a struct page written, a folio moved between lists).
//
// Order of the folio-state changes, as the kernel has them since d8f5f7e445f0 / bd225530a4c7:
//   allocate frames → prep_compound_page (head, tails, _folio_order in page[1], refcount 0 =
//   frozen) → __folio_set_hugetlb → hugetlb_vmemmap_optimize_folio → account and enqueue;
//   free: remove_hugetlb_folio (clears the hugetlb flag at once only if NOT optimized) →
//   hugetlb_vmemmap_restore_folio (only if optimized) → clear the hugetlb flag → move hwpoison
//   to the raw pages → unfreeze → free to the buddy.
// Variants put back the historical orders: HvoBeforeHugetlbFlag (before d8f5f7e445f0)
// and RestoreAfterHugetlbFlagCleared (before 30a89adf872d).
//
// One later fix is in the default model although the pinned releases lack it: dissolving a free
// folio that is accounted as surplus (one a failed restore put back) also decrements
// surplus_huge_pages ("mm/hugetlb: fix surplus pages in dissolve_free_huge_page()", 2025; read in
// the newer mm/hugetlb.c, whose dissolve_free_hugetlb_folio passes adjust_surplus). Without it
// (DissolveIgnoresSurplus, 6.10-6.12 as released) HugePages_Surp can exceed HugePages_Total;
// random generation found this in the model before the fix was looked up.
//
// Struct pages are written through vmemmap with the running CPU's view, one translation per
// vmemmap page (Mmu.WriteStructPageRange), so a write to a tail that HVO mapped read-only faults.
//
// Departures from the kernel:
// - Growing the pool is batched as in the kernel (alloc_pool_huge_folio for every folio, then
//   prep_and_add_allocated_folios → hugetlb_vmemmap_optimize_folios); shrinking is not: the
//   folios to free are collected under one hold of hugetlb_lock, as the kernel does, but each is
//   then restored and freed on its own (hugetlb_vmemmap_restore_folio instead of
//   update_and_free_pages_bulk → hugetlb_vmemmap_restore_folios). A folio whose restore fails is
//   re-added as surplus, which is the per-folio outcome of bulk_vmemmap_restore_error.
// - Freeing an optimized folio from atomic context is not deferred to the free_hpage_work
//   workqueue: every free path here runs in process context.
// - Memory failure: the raw hwpoisoned page is not taken off the buddy after a dissolve
//   (take_page_off_buddy).
// - One node; no reservations, subpools, cgroups, migration or demotion.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>A value an iterator hands back to its caller (kernel functions return values;
/// C# iterators cannot).</summary>
public sealed class Ret<T>
{
    public T Value = default!;
    public Ret() { }
    public Ret(T initial) => Value = initial;
}

/// <summary>mm/hugetlb.c: hstates[], the pool and the life of a HugeTLB folio.</summary>
public sealed partial class Hugetlb : KernelCode, IHugetlbView
{
    /// <summary>hugetlb_lock.</summary>
    public KernelLock HugetlbLock { get; } = new("hugetlb_lock");

    private HugetlbVmemmap HugetlbVmemmap => K.HugetlbVmemmap;

    private readonly Hstate[] _hstates;

    internal Hugetlb(Kernel k) : base(k)
    {
        var v = k.Variant.Hugetlb;
        Scheme = v.Hvo;
        // ARCH_WANT_OPTIMIZE_HUGETLB_VMEMMAP: x86-64 since v5.14; arm64 only v6.1-v6.2 (Arm64Hvo).
        ArchWantsHvo = k.Arch.Arch == Config.Arch.X86_64 || v.Arm64Hvo;
        // HUGETLB_VMEMMAP_RESERVE_PAGES: 2 in v5.14-v5.17, 1 since v5.18.
        ReservePages = (Scheme == HvoScheme.TwoPagesKept ? 2 : ArchConfig.HugetlbVmemmapReservePages) + (k.Variant.Broken.HvoReserveOffByOne ? 1 : 0);
        HvoConfigured = ArchWantsHvo && Scheme != HvoScheme.Off;
        VmemmapOptimizeEnabled = HvoConfigured; // hugetlb_free_vmemmap= default on
        _hstates = k.Arch.HugetlbSizes.Select(s => new Hstate(k.Arch, s, ReservePages)).ToArray();
    }

    /// <summary>Every hstate, smallest size first (hugetlb_add_hstate order is not modelled).</summary>
    public IReadOnlyList<Hstate> Hstates => _hstates;

    /// <summary>The HVO scheme of the variant.</summary>
    public HvoScheme Scheme { get; }
    /// <summary>The architecture selects ARCH_WANT_OPTIMIZE_HUGETLB_VMEMMAP.</summary>
    public bool ArchWantsHvo { get; }
    /// <summary>CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP is built and hugetlb_free_vmemmap is not off.</summary>
    public bool HvoConfigured { get; }
    /// <summary>Vmemmap pages kept per optimized folio (HUGETLB_VMEMMAP_RESERVE_PAGES).</summary>
    public int ReservePages { get; }

    /// <summary>vmemmap_optimize_enabled: the vm.hugetlb_optimize_vmemmap sysctl. It affects only
    /// folios optimized later; already optimized folios stay so.</summary>
    public bool VmemmapOptimizeEnabled { get; internal set; }

    /// <summary>size_to_hstate(), or null when the architecture has no such HugeTLB size.</summary>
    public Hstate? SizeToHstate(long size)
    {
        foreach (var h in _hstates) if (h.Size == size) return h;
        return null;
    }

    /// <summary>Frames held by HugeTLB folios according to the hstates' folio records.</summary>
    public long PagesInFolios
    {
        get
        {
            long n = 0;
            foreach (var h in _hstates) n += h.FolioCount * h.PagesPerHugePage;
            return n;
        }
    }

    /// <summary>Every folio of every hstate, sorted by head PFN.</summary>
    public List<HugetlbFolio> AllFoliosByPfn()
    {
        var l = new List<HugetlbFolio>();
        foreach (var h in _hstates) l.AddRange(h.Folios);
        l.Sort((a, b) => a.HeadPfn.CompareTo(b.HeadPfn));
        return l;
    }

    /// <summary>Every folio of every hstate that overlaps frames [start, end), sorted by head
    /// PFN, into <paramref name="into"/> (cleared first).</summary>
    public void FoliosOverlapping(long start, long end, List<HugetlbFolio> into)
    {
        into.Clear();
        foreach (var h in _hstates) h.FoliosOverlapping(start, end, into);
        if (into.Count > 1) into.Sort((a, b) => a.HeadPfn.CompareTo(b.HeadPfn));
    }

    /// <summary>The vmemmap address of a folio's head struct page (&amp;folio->page).</summary>
    public ulong FolioPage(HugetlbFolio f) => PfnToPage(f.HeadPfn);

    /// <summary>The folio whose head is at <paramref name="headPfn"/>, if one exists.</summary>
    public HugetlbFolio? FolioByHeadPfn(long headPfn)
    {
        foreach (var h in Hstates)
            if (h.TryGetFolio(headPfn, out var f)) return f;
        return null;
    }

    /// <summary>Sets and clears flags of a folio's head struct page (an RMW through vmemmap).</summary>
    private bool FolioModifyFlags(ExecContext ctx, HugetlbFolio f, PageFlags set, PageFlags clear, string what) =>
        ModifyPageFlags(ctx, FolioPage(f), set, clear, what);

    /// <summary>Sets the head's refcount (folio_ref_freeze / folio_ref_unfreeze / folio_put).</summary>
    internal void FolioSetRefcount(ExecContext ctx, HugetlbFolio f, int value, string what)
    {
        ulong head = FolioPage(f);
        if (!ReadStructPage(ctx, head, out var sp)) return;
        sp.Refcount = value;
        WriteStructPage(ctx, head, sp, what);
    }

    /// <summary>enqueue_hugetlb_folio (under hugetlb_lock): frozen folio to the free list.</summary>
    [Kernel("mm/hugetlb.c", "enqueue_hugetlb_folio")]
    public void EnqueueHugetlbFolio(ExecContext ctx, Hstate h, HugetlbFolio f)
    {
        if (FolioRefCount(View(ctx), FolioPage(f)) != 0)
            RecordFault(FaultKind.KernelBug, ctx, FolioPage(f), $"enqueue_hugetlb_folio: VM_BUG_ON_FOLIO(folio_ref_count) on {f}");
        h.FreelistPush(f);
        h.FreeHugePages++;
        f.State = FolioState.Free;
        FolioModifyFlags(ctx, f, PageFlags.HugetlbFreed, PageFlags.None, "folio_set_hugetlb_freed");
    }

    /// <summary>dequeue_hugetlb_folio_node_exact (under hugetlb_lock): the first free folio that is
    /// not hwpoisoned and not in a pageblock an offline has isolated, unfrozen to refcount 1;
    /// null if none.</summary>
    [Kernel("mm/hugetlb.c", "dequeue_hugetlb_folio_node_exact")]
    public HugetlbFolio? DequeueHugetlbFolioNodeExact(ExecContext ctx, Hstate h)
    {
        foreach (var f in h.Freelist)
        {
            if (K.Hotplug is { } hp && hp.IsMigrateIsolatePage(f.HeadPfn)) continue;
            if (ReadStructPage(ctx, FolioPage(f), out var sp) && (sp.Flags & PageFlags.HwPoison) != 0) continue;
            // (returning right after the removal keeps the enumeration valid)
            h.FreelistRemove(f);
            f.State = FolioState.Active;
            FolioSetRefcount(ctx, f, 1, "folio_ref_unfreeze");
            FolioModifyFlags(ctx, f, PageFlags.None, PageFlags.HugetlbFreed, "folio_clear_hugetlb_freed");
            h.FreeHugePages--;
            return f;
        }
        return null;
    }

    /// <summary>remove_hugetlb_folio (under hugetlb_lock): out of the pool. The hugetlb flag is
    /// cleared here only if the vmemmap is not optimized ("We can only clear the hugetlb flag
    /// after allocating vmemmap pages. Otherwise, someone (memory error handling) may try to
    /// write to tail struct pages.").</summary>
    [Kernel("mm/hugetlb.c", "remove_hugetlb_folio")]
    public void RemoveHugetlbFolio(ExecContext ctx, Hstate h, HugetlbFolio f, bool adjustSurplus)
    {
        var v = View(ctx);
        ulong head = FolioPage(f);
        if (h.FreelistRemove(f)) h.FreeHugePages--;
        if (adjustSurplus) h.SurplusHugePages--;
        PageFlags clear = PageFlags.HugetlbFreed;
        if (!FolioTestHugetlbVmemmapOptimized(v, head)) clear |= PageFlags.Hugetlb;
        FolioModifyFlags(ctx, f, PageFlags.None, clear, "remove_hugetlb_folio");
        h.NrHugePages--;
        f.State = FolioState.Freeing;
    }

    /// <summary>add_hugetlb_folio (under hugetlb_lock): back into the pool after a failed restore;
    /// with <paramref name="adjustSurplus"/> as a surplus page.</summary>
    [Kernel("mm/hugetlb.c", "add_hugetlb_folio")]
    public void AddHugetlbFolio(ExecContext ctx, Hstate h, HugetlbFolio f, bool adjustSurplus)
    {
        var v = View(ctx);
        ulong head = FolioPage(f);
        if (!FolioTestHugetlbVmemmapOptimized(v, head))
            RecordFault(FaultKind.KernelBug, ctx, head, $"add_hugetlb_folio: VM_BUG_ON_FOLIO(!folio_test_hugetlb_vmemmap_optimized) on {f}");
        h.NrHugePages++;
        if (adjustSurplus) h.SurplusHugePages++;
        // __folio_set_hugetlb; folio_change_private(folio, NULL) clears the HPG flags and the
        // optimized flag is set again; arch_clear_hugetlb_flags (arm64: PG_dcache_clean).
        FolioModifyFlags(ctx, f, PageFlags.Hugetlb | PageFlags.VmemmapOptimized,
            PageFlags.HugetlbFreed | PageFlags.HugetlbSurplus | (Arch.Arch == Config.Arch.Arm64 ? PageFlags.DcacheClean : PageFlags.None),
            "add_hugetlb_folio");
        EnqueueHugetlbFolio(ctx, h, f);
    }

    /// <summary>adjust_pool_surplus (under hugetlb_lock): move one folio between persistent and
    /// surplus accounting. Returns whether it could.</summary>
    [Kernel("mm/hugetlb.c", "adjust_pool_surplus")]
    public static bool AdjustPoolSurplus(Hstate h, int delta)
    {
        if (delta < 0 && h.SurplusHugePages == 0) return false;
        if (delta > 0 && h.SurplusHugePages >= h.NrHugePages) return false;
        h.SurplusHugePages += delta;
        return true;
    }

    /// <summary>set_max_huge_pages: grow or shrink the persistent pool to <paramref name="count"/>.</summary>
    [Kernel("mm/hugetlb.c", "set_max_huge_pages")]
    public IEnumerable<StepStatus> SetMaxHugePages(ExecContext ctx, Hstate h, long count)
    {
        h.ResizesRunning++; // mutex_lock(&h->resize_lock)
        foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
        // Increase the pool: first convert surplus pages to persistent ones.
        while (h.SurplusHugePages > 0 && count > h.PersistentHugePages)
            if (!AdjustPoolSurplus(h, -1)) break;
        var pageList = new List<HugetlbFolio>();
        while (count > h.PersistentHugePages + pageList.Count)
        {
            SpinUnlock(ctx, HugetlbLock);
            // alloc_pool_huge_folio → only_alloc_fresh_hugetlb_folio
            var got = new Ret<HugetlbFolio?>();
            foreach (var s in OnlyAllocFreshHugetlbFolio(ctx, h, got, null)) yield return s;
            foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
            if (got.Value is not { } f) break;
            pageList.Add(f);
        }
        if (pageList.Count > 0)
        {
            SpinUnlock(ctx, HugetlbLock);
            foreach (var s in PrepAndAddAllocatedFolios(ctx, h, pageList)) yield return s;
            foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
        }
        // Decrease the pool: free surplus-free pages first, then in-use pages become surplus.
        long minCount = Math.Max(count, h.NrHugePages - h.FreeHugePages);
        var toFree = new List<HugetlbFolio>();
        while (minCount < h.PersistentHugePages)
        {
            // remove_pool_hugetlb_folio(h, nodes_allowed, 0)
            if (h.FreelistFirst is not { } f) break;
            RemoveHugetlbFolio(ctx, h, f, adjustSurplus: false);
            toFree.Add(f);
        }
        SpinUnlock(ctx, HugetlbLock);
        yield return StepStatus.After("remove_pool_hugetlb_folio");
        foreach (var f in toFree)
            foreach (var s in UpdateAndFreeHugetlbFolio(ctx, h, f)) yield return s;
        foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
        while (count < h.PersistentHugePages)
            if (!AdjustPoolSurplus(h, 1)) break;
        h.MaxHugePages = h.PersistentHugePages;
        SpinUnlock(ctx, HugetlbLock);
        h.ResizesRunning--; // mutex_unlock(&h->resize_lock)
        yield return StepStatus.After("adjust_pool_surplus");
    }
}
