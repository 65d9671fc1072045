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
public sealed class Hugetlb : KernelCode, IHugetlbView
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
    private void FolioSetRefcount(ExecContext ctx, HugetlbFolio f, int value, string what)
    {
        ulong head = FolioPage(f);
        if (!ReadStructPage(ctx, head, out var sp)) return;
        sp.Refcount = value;
        WriteStructPage(ctx, head, sp, what);
    }

    // ---------------------------------------------------------------------------------------
    // Allocation
    // ---------------------------------------------------------------------------------------

    /// <summary>alloc_buddy_hugetlb_folio / alloc_gigantic_folio: the frames of one folio, naturally
    /// aligned (HugetlbFolioMisaligned: deliberately not), or null on ENOMEM.</summary>
    private HugetlbFolio? AllocHugetlbFrames(Hstate h)
    {
        long n = h.PagesPerHugePage;
        if (!Hvo.HugetlbFolioMisaligned)
        {
            bool got = h.IsGigantic ? Mem.TryAllocContigPages(n, FrameOwner.HugetlbFolio, out long pfn) : Mem.TryAllocPages(h.Order, FrameOwner.HugetlbFolio, out pfn);
            return got ? new HugetlbFolio(h, pfn, contig: h.IsGigantic) : null;
        }
        // Broken on purpose (Muchun Song's condition 1): the folio starts half a vmemmap page (in
        // struct pages) past a natural boundary, so its first and last vmemmap pages also hold
        // struct pages of its neighbours. Take a block twice the size and give back the rest.
        long offset = Math.Min(Arch.StructPagesPerVmemmapPage / 2, n / 2);
        bool gotBase = h.Order + 1 <= Arch.MaxPageOrder
            ? Mem.TryAllocPages(h.Order + 1, FrameOwner.HugetlbFolio, out long basePfn)
            : Mem.TryAllocContigPages(2 * n, FrameOwner.HugetlbFolio, out basePfn);
        if (!gotBase) return null;
        Mem.FreeContigPages(basePfn, offset, FrameOwner.HugetlbFolio, "misaligned hugetlb folio: leading pad");
        Mem.FreeContigPages(basePfn + offset + n, n - offset, FrameOwner.HugetlbFolio, "misaligned hugetlb folio: trailing pad");
        return new HugetlbFolio(h, basePfn + offset, contig: true);
    }

    /// <summary>prep_compound_page (and __prep_compound_gigantic_folio): PG_head on the head,
    /// compound_head = head | 1 on every tail, folio->_folio_order in page[1]; refcount 0 on every
    /// page (the folio is frozen, as hugetlb keeps pool folios).</summary>
    [Kernel("mm/page_alloc.c", "prep_compound_page")]
    public void PrepCompoundPage(ExecContext ctx, HugetlbFolio f)
    {
        ulong head = FolioPage(f);
        var tail = new StructPage { CompoundHead = head | 1 };
        var headPage = new StructPage { Flags = PageFlags.Head };
        var first = tail with { Order = (byte)f.Hstate.Order };
        K.Mmu.WriteStructPageRange(ctx, f.HeadPfn, f.NrPages, tail, [(f.HeadPfn, headPage), (f.HeadPfn + 1, first)], "prep_compound_page");
    }

    /// <summary>init_new_hugetlb_folio: __folio_set_hugetlb (the hugetlb page type on the head).</summary>
    [Kernel("mm/hugetlb.c", "init_new_hugetlb_folio")]
    public void InitNewHugetlbFolio(ExecContext ctx, HugetlbFolio f) =>
        FolioModifyFlags(ctx, f, PageFlags.Hugetlb, PageFlags.None, "__folio_set_hugetlb");

    /// <summary>only_alloc_fresh_hugetlb_folio: frames, compound metadata, hugetlb flag. Binds the
    /// folio through <paramref name="onAllocated"/> as soon as it exists.</summary>
    [Kernel("mm/hugetlb.c", "only_alloc_fresh_hugetlb_folio")]
    public IEnumerable<StepStatus> OnlyAllocFreshHugetlbFolio(ExecContext ctx, Hstate h, Ret<HugetlbFolio?> result, Action<HugetlbFolio>? onAllocated)
    {
        var f = AllocHugetlbFrames(h);
        result.Value = f;
        if (f is null)
        {
            Note("hugetlb.alloc_enomem");
            yield return StepStatus.After(h.IsGigantic ? "alloc_gigantic_folio" : "alloc_buddy_hugetlb_folio");
            yield break;
        }
        h.Track(f);
        onAllocated?.Invoke(f);
        yield return StepStatus.After(h.IsGigantic ? "alloc_gigantic_folio" : "alloc_buddy_hugetlb_folio");
        PrepCompoundPage(ctx, f);
        yield return StepStatus.After("prep_compound_page");
        if (!Hvo.HvoBeforeHugetlbFlag)
        {
            InitNewHugetlbFolio(ctx, f);
            yield return StepStatus.After("init_new_hugetlb_folio");
        }
    }

    /// <summary>alloc_fresh_hugetlb_folio: allocate, prep, optimize. Before d8f5f7e445f0
    /// (HvoBeforeHugetlbFlag) the hugetlb flag was set only after the vmemmap was optimized.</summary>
    [Kernel("mm/hugetlb.c", "alloc_fresh_hugetlb_folio")]
    public IEnumerable<StepStatus> AllocFreshHugetlbFolio(ExecContext ctx, Hstate h, Ret<HugetlbFolio?> result, Action<HugetlbFolio>? onAllocated)
    {
        foreach (var s in OnlyAllocFreshHugetlbFolio(ctx, h, result, onAllocated)) yield return s;
        var f = result.Value;
        if (f is null) yield break;
        foreach (var s in HugetlbVmemmap.HugetlbVmemmapOptimizeFolio(ctx, h, f)) yield return s;
        if (Hvo.HvoBeforeHugetlbFlag)
        {
            InitNewHugetlbFolio(ctx, f);
            yield return StepStatus.After("init_new_hugetlb_folio");
        }
    }

    /// <summary>__prep_account_new_huge_page (under hugetlb_lock).</summary>
    private void PrepAccountNewHugePage(Hstate h) => h.NrHugePages++;

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
    /// not hwpoisoned, unfrozen to refcount 1; null if none.</summary>
    [Kernel("mm/hugetlb.c", "dequeue_hugetlb_folio_node_exact")]
    public HugetlbFolio? DequeueHugetlbFolioNodeExact(ExecContext ctx, Hstate h)
    {
        foreach (var f in h.Freelist)
        {
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

    /// <summary>prep_and_add_allocated_folios: optimize the batch (one grace period, one flush for
    /// all), then account and enqueue every folio under one hold of hugetlb_lock.</summary>
    [Kernel("mm/hugetlb.c", "prep_and_add_allocated_folios")]
    public IEnumerable<StepStatus> PrepAndAddAllocatedFolios(ExecContext ctx, Hstate h, List<HugetlbFolio> folios)
    {
        foreach (var s in HugetlbVmemmap.HugetlbVmemmapOptimizeFolios(ctx, h, folios)) yield return s;
        if (Hvo.HvoBeforeHugetlbFlag)
        {
            foreach (var f in folios)
            {
                InitNewHugetlbFolio(ctx, f);
                yield return StepStatus.After("init_new_hugetlb_folio");
            }
        }
        foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
        foreach (var f in folios)
        {
            PrepAccountNewHugePage(h);
            EnqueueHugetlbFolio(ctx, h, f);
        }
        SpinUnlock(ctx, HugetlbLock);
        yield return StepStatus.After("enqueue_hugetlb_folio");
    }

    /// <summary>alloc_hugetlb_folio for a fault: dequeue a free folio, else a surplus folio
    /// (alloc_surplus_hugetlb_folio; gigantic sizes have none). The fault then maps it; on arm64
    /// set_huge_pte_at → __sync_icache_dcache sets PG_dcache_clean on the folio.</summary>
    [Kernel("mm/hugetlb.c", "alloc_hugetlb_folio")]
    public IEnumerable<StepStatus> AllocHugetlbFolio(ExecContext ctx, Hstate h, Ret<HugetlbFolio?> result, Action<HugetlbFolio>? onAllocated)
    {
        foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
        var f = DequeueHugetlbFolioNodeExact(ctx, h);
        SpinUnlock(ctx, HugetlbLock);
        if (f is not null) onAllocated?.Invoke(f);
        yield return StepStatus.After("dequeue_hugetlb_folio_node_exact");
        if (f is null)
        {
            foreach (var s in AllocSurplusHugetlbFolio(ctx, h, result, onAllocated)) yield return s;
            f = result.Value;
            if (f is null) yield break;
            foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
            f.State = FolioState.Active;
            FolioSetRefcount(ctx, f, 1, "folio_ref_unfreeze");
            SpinUnlock(ctx, HugetlbLock);
            yield return StepStatus.After("folio_ref_unfreeze");
        }
        result.Value = f;
        if (Arch.Arch == Config.Arch.Arm64)
        {
            SyncIcacheDcache(ctx, f);
            yield return StepStatus.After("__sync_icache_dcache");
        }
        f.UserReference = true; // the fault has returned: the user holds the folio
    }

    /// <summary>alloc_surplus_hugetlb_folio.</summary>
    [Kernel("mm/hugetlb.c", "alloc_surplus_hugetlb_folio")]
    public IEnumerable<StepStatus> AllocSurplusHugetlbFolio(ExecContext ctx, Hstate h, Ret<HugetlbFolio?> result, Action<HugetlbFolio>? onAllocated)
    {
        result.Value = null;
        if (h.IsGigantic) yield break;
        foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
        bool over = h.SurplusHugePages >= h.NrOvercommitHugePages;
        SpinUnlock(ctx, HugetlbLock);
        if (over) yield break;
        foreach (var s in AllocFreshHugetlbFolio(ctx, h, result, onAllocated)) yield return s;
        if (result.Value is null) yield break;
        foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
        PrepAccountNewHugePage(h);
        h.SurplusHugePages++;
        result.Value.State = FolioState.Active; // on its way to hugepage_activelist
        SpinUnlock(ctx, HugetlbLock);
        Note("hugetlb.surplus_alloc");
        yield return StepStatus.After("__prep_account_new_huge_page");
    }

    /// <summary>arch/arm64/mm/flush.c __sync_icache_dcache for a HugeTLB folio being mapped:
    /// PG_dcache_clean is set on the folio (its head).</summary>
    [Kernel("arch/arm64/mm/flush.c", "__sync_icache_dcache")]
    public void SyncIcacheDcache(ExecContext ctx, HugetlbFolio f)
    {
        if (ReadStructPage(ctx, FolioPage(f), out var sp) && (sp.Flags & PageFlags.DcacheClean) == 0)
            FolioModifyFlags(ctx, f, PageFlags.DcacheClean, PageFlags.None, "__sync_icache_dcache");
    }

    // ---------------------------------------------------------------------------------------
    // Freeing and dissolving
    // ---------------------------------------------------------------------------------------

    /// <summary>folio_put of an in-use folio's last reference → free_huge_folio.</summary>
    [Kernel("mm/hugetlb.c", "free_huge_folio")]
    public IEnumerable<StepStatus> FreeHugeFolio(ExecContext ctx, HugetlbFolio f)
    {
        var h = f.Hstate;
        FolioSetRefcount(ctx, f, 0, "folio_put");
        yield return StepStatus.After("folio_put");
        foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
        if (h.SurplusHugePages > 0)
        {
            RemoveHugetlbFolio(ctx, h, f, adjustSurplus: !Broken.FreeSurplusSkipsDecrement);
            SpinUnlock(ctx, HugetlbLock);
            yield return StepStatus.After("remove_hugetlb_folio");
            Note("hugetlb.free_surplus");
            foreach (var s in UpdateAndFreeHugetlbFolio(ctx, h, f)) yield return s;
            yield break;
        }
        if (Arch.Arch == Config.Arch.Arm64)
            FolioModifyFlags(ctx, f, PageFlags.None, PageFlags.DcacheClean, "arch_clear_hugetlb_flags");
        EnqueueHugetlbFolio(ctx, h, f);
        SpinUnlock(ctx, HugetlbLock);
        yield return StepStatus.After("enqueue_hugetlb_folio");
    }

    /// <summary>__update_and_free_hugetlb_folio: restore the vmemmap (an optimized folio only),
    /// clear the hugetlb flag, move hwpoison to the raw pages, unfreeze, free to the buddy. If the
    /// vmemmap cannot be restored the folio goes back to the pool as a surplus page.</summary>
    [Kernel("mm/hugetlb.c", "__update_and_free_hugetlb_folio")]
    public IEnumerable<StepStatus> UpdateAndFreeHugetlbFolio(ExecContext ctx, Hstate h, HugetlbFolio f)
    {
        var v = View(ctx);
        ulong head = FolioPage(f);
        // "If folio is not vmemmap optimized (!clear_flag), then the folio is no longer identified
        // as a hugetlb page. hugetlb_vmemmap_restore_folio can only be passed hugetlb pages."
        bool clearFlag = FolioTestHugetlbVmemmapOptimized(v, head);
        if (clearFlag)
        {
            var ret = new Ret<Errno>();
            foreach (var s in HugetlbVmemmap.HugetlbVmemmapRestoreFolio(ctx, h, f, ret)) yield return s;
            if (ret.Value != Errno.Ok)
            {
                foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
                AddHugetlbFolio(ctx, h, f, adjustSurplus: true);
                SpinUnlock(ctx, HugetlbLock);
                Note("hugetlb.restore_failed_surplus");
                yield return StepStatus.After("add_hugetlb_folio");
                yield break;
            }
        }
        if (FolioTestHugetlb(v, head))
        {
            foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
            FolioModifyFlags(ctx, f, PageFlags.None, PageFlags.Hugetlb, "__folio_clear_hugetlb");
            SpinUnlock(ctx, HugetlbLock);
            yield return StepStatus.After("__folio_clear_hugetlb");
        }
        if (ReadStructPage(ctx, head, out var sp) && (sp.Flags & PageFlags.HwPoison) != 0)
        {
            FolioClearHugetlbHwpoison(ctx, f);
            yield return StepStatus.After("folio_clear_hugetlb_hwpoison");
        }
        FolioSetRefcount(ctx, f, 1, "folio_ref_unfreeze");
        yield return StepStatus.After("folio_ref_unfreeze");
        HugetlbFreeFolio(ctx, f);
        yield return StepStatus.After("hugetlb_free_folio");
    }

    /// <summary>folio_clear_hugetlb_hwpoison: PG_hwpoison moves from the head to each raw error
    /// page — a write to tail struct pages, which is why it runs only after the restore.</summary>
    [Kernel("mm/memory-failure.c", "folio_clear_hugetlb_hwpoison")]
    public void FolioClearHugetlbHwpoison(ExecContext ctx, HugetlbFolio f)
    {
        foreach (long idx in f.RawHwpPages)
            ModifyPageFlags(ctx, PfnToPage(f.HeadPfn + idx), PageFlags.HwPoison, PageFlags.None, "folio_clear_hugetlb_hwpoison: SetPageHWPoison(raw page)");
        FolioModifyFlags(ctx, f, PageFlags.None, PageFlags.HwPoison, "folio_clear_hugetlb_hwpoison");
    }

    /// <summary>hugetlb_free_folio → __free_pages / free_contig_range: free_pages_prepare checks
    /// every tail (free_tail_page_prepare: PageTail, compound_head consistent → else bad_page) and
    /// clears the compound metadata; the frames go back to the buddy.</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_free_folio")]
    public void HugetlbFreeFolio(ExecContext ctx, HugetlbFolio f)
    {
        var v = View(ctx);
        ulong head = FolioPage(f);
        string? bad = null;
        K.Mmu.VisitStructPages(ctx, peek: false, f.HeadPfn + 1, f.NrPages - 1, (pfn, _) =>
        {
            ulong page = PfnToPage(pfn);
            if (!PageTail(v, page)) bad = $"bad_page: PageTail not set (pfn {pfn:x}, subpage {pfn - f.HeadPfn} of {f})";
            else if (CompoundHead(v, page) != head) bad = $"bad_page: compound_head not consistent (pfn {pfn:x}, subpage {pfn - f.HeadPfn} of {f})";
            return bad is null;
        });
        if (bad is not null) RecordFault(FaultKind.KernelBug, ctx, head, bad);
        // destroy the compound page: every struct page back to a plain free page, raw hwpoison kept.
        var raw = f.RawHwpPages.Select(i => (f.HeadPfn + i, new StructPage { Flags = PageFlags.HwPoison })).ToList();
        if (!Broken.FreeHugeFolioKeepsCompound)
            K.Mmu.WriteStructPageRange(ctx, f.HeadPfn, f.NrPages, default, raw, "free_pages_prepare");
        f.Hstate.Untrack(f);
        f.State = FolioState.Freed;
        if (f.Contig) Mem.FreeContigPages(f.HeadPfn, f.NrPages, FrameOwner.HugetlbFolio, "free_contig_range");
        else Mem.FreePages(f.HeadPfn, f.Hstate.Order, FrameOwner.HugetlbFolio, "__free_pages");
    }

    /// <summary>dissolve_free_hugetlb_folio: a free pool folio back to the buddy. Returns 0, EBUSY
    /// (in use), or the restore's ENOMEM (the folio stays in the pool).</summary>
    [Kernel("mm/hugetlb.c", "dissolve_free_hugetlb_folio")]
    public IEnumerable<StepStatus> DissolveFreeHugetlbFolio(ExecContext ctx, HugetlbFolio f, Ret<Errno> rc)
    {
        var v = View(ctx);
        ulong head = FolioPage(f);
        var h = f.Hstate;
        rc.Value = Errno.EBUSY;
        bool adjustSurplus = false;
        while (true)
        {
            if (!FolioTestHugetlb(v, head)) { rc.Value = Errno.Ok; yield return StepStatus.After("folio_test_hugetlb"); yield break; }
            foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
            if (!FolioTestHugetlb(v, head) || f.State == FolioState.Freed)
            {
                rc.Value = Errno.Ok;
                SpinUnlock(ctx, HugetlbLock);
                yield return StepStatus.After("folio_test_hugetlb");
                yield break;
            }
            if (FolioRefCount(v, head) != 0 || h.FreeHugePages == 0)
            {
                SpinUnlock(ctx, HugetlbLock);
                yield return StepStatus.After("folio_ref_count");
                yield break;
            }
            if (!ReadStructPage(ctx, head, out var sp) || (sp.Flags & PageFlags.HugetlbFreed) == 0)
            {
                // Not yet on the free list (being enqueued by another context): cond_resched()
                // and retry — the model waits (Blocked) until something else has run.
                SpinUnlock(ctx, HugetlbLock);
                Note("hugetlb.dissolve_retry");
                yield return StepStatus.Blocked;
                continue;
            }
            break;
        }
        // A free folio may be a surplus one (put back by a failed restore): since the 2025 fix
        // "mm/hugetlb: fix surplus pages in dissolve_free_huge_page()" dissolving it takes it off
        // surplus_huge_pages too; 6.10-6.12 as released did not (DissolveIgnoresSurplus).
        adjustSurplus = !Hvo.DissolveIgnoresSurplus && h.SurplusHugePages > 0;
        RemoveHugetlbFolio(ctx, h, f, adjustSurplus);
        h.MaxHugePages--;
        SpinUnlock(ctx, HugetlbLock);
        yield return StepStatus.After("remove_hugetlb_folio");
        // "The folio_test_hugetlb check here is because remove_hugetlb_folio will clear hugetlb
        // folio flag for non-vmemmap optimized hugetlb folios" (30a89adf872d).
        if (FolioTestHugetlb(v, head) || Hvo.RestoreAfterHugetlbFlagCleared)
        {
            var ret = new Ret<Errno>();
            foreach (var s in HugetlbVmemmap.HugetlbVmemmapRestoreFolio(ctx, h, f, ret)) yield return s;
            if (ret.Value != Errno.Ok)
            {
                foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
                AddHugetlbFolio(ctx, h, f, adjustSurplus);
                h.MaxHugePages++;
                SpinUnlock(ctx, HugetlbLock);
                rc.Value = ret.Value;
                Note("hugetlb.dissolve_restore_failed");
                yield return StepStatus.After("add_hugetlb_folio");
                yield break;
            }
        }
        rc.Value = Errno.Ok;
        foreach (var s in UpdateAndFreeHugetlbFolio(ctx, h, f)) yield return s;
        Note("hugetlb.dissolved");
    }
}
