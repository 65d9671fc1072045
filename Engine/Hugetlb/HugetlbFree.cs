// mm/hugetlb.c, freeing and dissolving HugeTLB folios (v6.10-v6.12): free_huge_folio,
// __update_and_free_hugetlb_folio (restore the vmemmap first when HVO optimized the folio; a failed
// restore re-adds the folio as surplus), folio_clear_hugetlb_hwpoison, the free of the frames to
// the buddy, and dissolve_free_hugetlb_folio. The order of the folio-state changes and the
// departures from the kernel are in Hugetlb.cs's header.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

public sealed partial class Hugetlb
{
    /// <summary>folio_put of an in-use folio's last reference → free_huge_folio.</summary>
    [Kernel("mm/hugetlb.c", "free_huge_folio")]
    public IEnumerable<StepStatus> FreeHugeFolio(ExecContext ctx, HugetlbFolio f)
    {
        var h = f.Hstate;
        FolioSetRefcount(ctx, f, 0, "folio_put");
        yield return StepStatus.After("folio_put");
        if (ReadStructPage(ctx, FolioPage(f), out var head) && (head.Flags & PageFlags.HugetlbMigratable) != 0)
            FolioModifyFlags(ctx, f, PageFlags.None, PageFlags.HugetlbMigratable, "folio_clear_hugetlb_migratable");
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
        if (clearFlag && !Broken.FreeSkipsVmemmapRestore)
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
