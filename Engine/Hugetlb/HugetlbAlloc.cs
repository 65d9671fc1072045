// mm/hugetlb.c, allocating HugeTLB folios (v6.10-v6.12): alloc_buddy_hugetlb_folio /
// alloc_gigantic_folio, prep_compound_page, init_new_hugetlb_folio, only_alloc_fresh_hugetlb_folio,
// alloc_fresh_hugetlb_folio, __prep_account_new_huge_page, prep_and_add_allocated_folios (the
// batch that HVO optimizes with one grace period and one flush), alloc_hugetlb_folio and
// alloc_surplus_hugetlb_folio; arm64's __sync_icache_dcache for a folio being mapped. The order
// of the folio-state changes and the departures from the kernel are in Hugetlb.cs's header.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

public sealed partial class Hugetlb
{
    /// <summary>alloc_buddy_hugetlb_folio / alloc_gigantic_folio: the frames of one folio, naturally
    /// aligned (HugetlbFolioMisaligned: deliberately not), or null on ENOMEM.</summary>
    private HugetlbFolio? AllocHugetlbFrames(Hstate h)
    {
        long n = h.PagesPerHugePage;
        if (!Hvo.HugetlbFolioMisaligned)
        {
            // The buddy never hands out pageblocks an offline has isolated (MIGRATE_ISOLATE): the
            // model's buddy has no isolation, so frames from such a range are held aside, the
            // allocation is retried, and what was held aside is given back.
            var aside = new List<long>();
            bool got;
            long pfn;
            while ((got = h.IsGigantic ? Mem.TryAllocContigPages(n, FrameOwner.HugetlbFolio, out pfn) : Mem.TryAllocPages(h.Order, FrameOwner.HugetlbFolio, out pfn))
                && K.Hotplug is { } hp && hp.IsMigrateIsolatePage(pfn))
                aside.Add(pfn);
            foreach (long p in aside) Mem.FreeContigPages(p, n, FrameOwner.HugetlbFolio, "alloc_buddy_hugetlb_folio: isolated pageblock");
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
}
