// mm/hugetlb_vmemmap.c, the folio side of HVO (v6.10-v6.12): vmemmap_should_optimize_folio,
// hugetlb_vmemmap_optimize_folio(s), hugetlb_vmemmap_split_folio / vmemmap_remap_split,
// alloc_vmemmap_page_list and hugetlb_vmemmap_restore_folio. The walk they drive is in
// HugetlbVmemmapWalk.cs; the class's state, the page list and the departures from the kernel are
// in HugetlbVmemmap.cs's header.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine
{
    public sealed partial class HugetlbVmemmap
    {
        /// <summary>The page-aligned start of a folio's vmemmap (&amp;folio->page; rounded down only
        /// for the misaligned variant, see the header).</summary>
        private ulong FolioVmemmapStart(HugetlbFolio f) => Hugetlb.FolioPage(f) & ~(ulong)(Arch.PageSize - 1);

        /// <summary>vmemmap_should_optimize_folio.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "vmemmap_should_optimize_folio")]
        public bool VmemmapShouldOptimizeFolio(in VmemmapView v, Hstate h, HugetlbFolio f)
        {
            if (FolioTestHugetlbVmemmapOptimized(v, Hugetlb.FolioPage(f))) return false;
            if (!Hugetlb.VmemmapOptimizeEnabled) return false;
            if (!h.Optimizable) return false;
            return true;
        }

        /// <summary>hugetlb_vmemmap_optimize_folio: optimize one folio and free its old vmemmap pages.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "hugetlb_vmemmap_optimize_folio")]
        public IEnumerable<StepStatus> HugetlbVmemmapOptimizeFolio(ExecContext ctx, Hstate h, HugetlbFolio f)
        {
            var pages = new List<long>();
            var ret = new Ret<Errno>();
            foreach (var s in HugetlbVmemmapOptimizeFolio(ctx, h, f, pages, VmemmapRemapFlags.SynchronizeRcu, ret)) yield return s;
            if (pages.Count > 0)
            {
                FreeVmemmapPageList(ctx, pages);
                yield return StepStatus.After("free_vmemmap_page_list");
            }
        }

        /// <summary>__hugetlb_vmemmap_optimize_folio: the old pages end up on <paramref name="pages"/>
        /// for the caller to free after the flush.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "__hugetlb_vmemmap_optimize_folio")]
        public IEnumerable<StepStatus> HugetlbVmemmapOptimizeFolio(ExecContext ctx, Hstate h, HugetlbFolio f,
            List<long> pages, VmemmapRemapFlags flags, Ret<Errno> ret)
        {
            var v = View(ctx);
            ulong head = Hugetlb.FolioPage(f);
            ret.Value = Errno.Ok;
            // VM_WARN_ON_ONCE_FOLIO(!folio_test_hugetlb) / (folio_ref_count): added with d8f5f7e445f0.
            if (!Hvo.HvoBeforeHugetlbFlag)
            {
                if (!FolioTestHugetlb(v, head))
                    RecordFault(FaultKind.KernelBug, ctx, head, $"hugetlb_vmemmap_optimize_folio: VM_WARN_ON_ONCE(!folio_test_hugetlb) on {f}");
                if (FolioRefCount(v, head) != 0)
                    RecordFault(FaultKind.KernelBug, ctx, head, $"hugetlb_vmemmap_optimize_folio: VM_WARN_ON_ONCE(folio_ref_count) on {f}");
            }
            if (!VmemmapShouldOptimizeFolio(v, h, f)) yield break;

            f.VmemmapBusy = true;
            HugetlbOptimizeVmemmapKey++; // static_branch_inc
            if ((flags & VmemmapRemapFlags.SynchronizeRcu) != 0 && Hvo.HvoSynchronizeRcu)
                foreach (var s in SynchronizeRcu(ctx)) yield return s;
            // "Very Subtle": set the flag before remapping so the old and new head copies agree.
            ModifyPageFlags(ctx, head, PageFlags.VmemmapOptimized, PageFlags.None, "folio_set_hugetlb_vmemmap_optimized");
            yield return StepStatus.After("folio_set_hugetlb_vmemmap_optimized");

            int r = Hugetlb.ReservePages;
            ulong start = FolioVmemmapStart(f);
            ulong end = start + (ulong)h.VmemmapSizeBytes;
            if (Broken.HvoSkipsLastPte) end -= (ulong)Arch.PageSize;
            ulong reuse = start + (ulong)((r - 1) * Arch.PageSize);
            start = reuse + (ulong)Arch.PageSize;
            foreach (var s in VmemmapRemapFree(ctx, start, end, reuse, pages, flags, ret)) yield return s;
            if (ret.Value != Errno.Ok)
            {
                HugetlbOptimizeVmemmapKey--; // static_branch_dec
                ModifyPageFlags(ctx, head, PageFlags.None, PageFlags.VmemmapOptimized, "folio_clear_hugetlb_vmemmap_optimized");
                Note("hvo.optimize_failed");
                yield return StepStatus.After("folio_clear_hugetlb_vmemmap_optimized");
            }
            else Note("hvo.optimized");
            f.VmemmapBusy = false;
        }

        /// <summary>hugetlb_vmemmap_optimize_folios: split every folio's PMDs first (stopping at the first
        /// ENOMEM), flush_tlb_all, then optimize each folio without a per-folio flush and with one
        /// synchronize_rcu for the batch; on ENOMEM with pages pending, flush, free them and retry the
        /// folio once; finally flush_tlb_all and free every collected page.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "hugetlb_vmemmap_optimize_folios")]
        public IEnumerable<StepStatus> HugetlbVmemmapOptimizeFolios(ExecContext ctx, Hstate h, List<HugetlbFolio> folios)
        {
            var pages = new List<long>();
            var ret = new Ret<Errno>();
            foreach (var f in folios)
            {
                foreach (var s in HugetlbVmemmapSplitFolio(ctx, h, f, ret)) yield return s;
                if (ret.Value == Errno.ENOMEM) break;
            }
            if (!Broken.HvoBatchSplitSkipsFlush) FlushTlbAll();
            yield return StepStatus.After("flush_tlb_all");
            var flags = VmemmapRemapFlags.RemapNoTlbFlush | VmemmapRemapFlags.SynchronizeRcu;
            foreach (var f in folios)
            {
                foreach (var s in HugetlbVmemmapOptimizeFolio(ctx, h, f, pages, flags, ret)) yield return s;
                flags &= ~VmemmapRemapFlags.SynchronizeRcu; // one grace period per batch
                if (ret.Value == Errno.ENOMEM && pages.Count > 0)
                {
                    FlushTlbAll();
                    FreeVmemmapPageList(ctx, pages);
                    Note("hvo.batch_retry");
                    yield return StepStatus.After("free_vmemmap_page_list");
                    foreach (var s in HugetlbVmemmapOptimizeFolio(ctx, h, f, pages, flags, ret)) yield return s;
                }
            }
            FlushTlbAll();
            FreeVmemmapPageList(ctx, pages);
            yield return StepStatus.After("free_vmemmap_page_list");
        }

        /// <summary>hugetlb_vmemmap_split_folio: split the PMD blocks under an optimizable folio's vmemmap.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "hugetlb_vmemmap_split_folio")]
        public IEnumerable<StepStatus> HugetlbVmemmapSplitFolio(ExecContext ctx, Hstate h, HugetlbFolio f, Ret<Errno> ret)
        {
            ret.Value = Errno.Ok;
            if (!VmemmapShouldOptimizeFolio(View(ctx), h, f)) yield break;
            int r = Hugetlb.ReservePages;
            ulong start = FolioVmemmapStart(f);
            ulong end = start + (ulong)h.VmemmapSizeBytes;
            ulong reuse = start + (ulong)((r - 1) * Arch.PageSize);
            foreach (var s in VmemmapRemapSplit(ctx, reuse + (ulong)Arch.PageSize, end, reuse, ret)) yield return s;
        }

        /// <summary>vmemmap_remap_split: a walk that only splits (remap_pte == NULL), without flushing.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "vmemmap_remap_split")]
        public IEnumerable<StepStatus> VmemmapRemapSplit(ExecContext ctx, ulong start, ulong end, ulong reuse, Ret<Errno> ret)
        {
            var walk = new VmemmapRemapWalk { RemapPte = RemapPteMode.None, ReuseAddr = reuse, Flags = VmemmapRemapFlags.SplitNoTlbFlush };
            if (start - reuse != (ulong)Arch.PageSize)
                throw new ModelBugException($"vmemmap_remap_split: BUG_ON(start - reuse != PAGE_SIZE): start {start:x} reuse {reuse:x}");
            foreach (var s in VmemmapRemapRange(ctx, reuse, end, walk, ret)) yield return s;
        }

        /// <summary>vmemmap_remap_free: remap [start, end) onto the page at <paramref name="reuse"/>
        /// (or a fresh copy of it), collecting the old pages on <paramref name="pages"/>; on an error
        /// after some entries were remapped, walk them again with vmemmap_restore_pte.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "vmemmap_remap_free")]
        public IEnumerable<StepStatus> VmemmapRemapFree(ExecContext ctx, ulong start, ulong end, ulong reuse,
            List<long> pages, VmemmapRemapFlags flags, Ret<Errno> ret)
        {
            var walk = new VmemmapRemapWalk { RemapPte = RemapPteMode.Remap, ReuseAddr = reuse, VmemmapPages = pages, Flags = flags };
            if (Hvo.HvoAllocatesHeadCopy && Hugetlb.Scheme == HvoScheme.OnePageKept)
            {
                // GFP_KERNEL | __GFP_NORETRY | __GFP_NOWARN: failure falls back to the current head page.
                if (Mem.TryAllocPages(0, FrameOwner.Vmemmap, out long page))
                {
                    if (Translate(ctx, reuse, write: false, out long reuseFrame, out _))
                        CopyFrameContent(page, reuseFrame); // copy_page(page_to_virt(new), reuse)
                    walk.ReusePfn = page;
                    VmemmapListAdd(walk, page);
                }
                else Note("hvo.head_copy_enomem");
                yield return StepStatus.After("copy_page");
            }
            if (start - reuse != (ulong)Arch.PageSize)
                throw new ModelBugException($"vmemmap_remap_free: BUG_ON(start - reuse != PAGE_SIZE): start {start:x} reuse {reuse:x}");
            foreach (var s in VmemmapRemapRange(ctx, reuse, end, walk, ret)) yield return s;
            if (ret.Value != Errno.Ok && walk.NrWalked > 0)
            {
                Note("hvo.rollback");
                ulong rollbackEnd = reuse + (ulong)(walk.NrWalked * Arch.PageSize);
                // The pages on the list are those removed from the vmemmap by the failed walk; they
                // are put back by this one.
                var undo = new VmemmapRemapWalk { RemapPte = RemapPteMode.Restore, ReuseAddr = reuse, VmemmapPages = pages, Flags = VmemmapRemapFlags.None };
                var ignored = new Ret<Errno>();
                foreach (var s in VmemmapRemapRange(ctx, reuse, rollbackEnd, undo, ignored)) yield return s;
            }
        }

        /// <summary>vmemmap_remap_alloc: allocate the pages to restore [start, end) (all or nothing)
        /// and remap each entry onto a copy of the reuse page.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "vmemmap_remap_alloc")]
        public IEnumerable<StepStatus> VmemmapRemapAlloc(ExecContext ctx, ulong start, ulong end, ulong reuse,
            VmemmapRemapFlags flags, Ret<Errno> ret)
        {
            var walk = new VmemmapRemapWalk { RemapPte = RemapPteMode.Restore, ReuseAddr = reuse, Flags = flags };
            if (start - reuse != (ulong)Arch.PageSize)
                throw new ModelBugException($"vmemmap_remap_alloc: BUG_ON(start - reuse != PAGE_SIZE): start {start:x} reuse {reuse:x}");
            ret.Value = AllocVmemmapPageList(ctx, start, end, walk);
            yield return StepStatus.After("alloc_vmemmap_page_list");
            if (ret.Value != Errno.Ok) yield break;
            foreach (var s in VmemmapRemapRange(ctx, reuse, end, walk, ret)) yield return s;
            if (walk.VmemmapPages.Count > 0)
            {
                // Only reachable when the walk could not install every page (a PMD block under
                // HvoRemapsPmdWithoutSplit): the kernel would have hit BUG_ON; the model frees them.
                FreeVmemmapPageList(ctx, walk.VmemmapPages);
                yield return StepStatus.After("free_vmemmap_page_list");
            }
        }

        /// <summary>alloc_vmemmap_page_list: one page per entry of [start, end), all or nothing
        /// (GFP_KERNEL | __GFP_RETRY_MAYFAIL).</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "alloc_vmemmap_page_list")]
        private Errno AllocVmemmapPageList(ExecContext ctx, ulong start, ulong end, VmemmapRemapWalk walk)
        {
            long nr = (long)((end - start) >> Arch.PageShift);
            for (long i = 0; i < nr; i++)
            {
                if (!Mem.TryAllocPages(0, FrameOwner.Vmemmap, out long page))
                {
                    Note("hvo.restore_enomem");
                    if (!Broken.RestoreLeaksOnPartialAlloc)
                        FreeVmemmapPageList(ctx, walk.VmemmapPages);
                    return Errno.ENOMEM;
                }
                VmemmapListAdd(walk, page);
            }
            return Errno.Ok;
        }

        /// <summary>hugetlb_vmemmap_restore_folio: give an optimized folio its vmemmap back.
        /// Returns ENOMEM (and leaves the folio optimized) if the pages cannot be allocated.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "hugetlb_vmemmap_restore_folio")]
        public IEnumerable<StepStatus> HugetlbVmemmapRestoreFolio(ExecContext ctx, Hstate h, HugetlbFolio f, Ret<Errno> ret)
        {
            var v = View(ctx);
            ulong head = Hugetlb.FolioPage(f);
            ret.Value = Errno.Ok;
            if (!Hvo.HvoBeforeHugetlbFlag)
            {
                if (!FolioTestHugetlb(v, head))
                    RecordFault(FaultKind.KernelBug, ctx, head, $"hugetlb_vmemmap_restore_folio: VM_WARN_ON_ONCE(!folio_test_hugetlb) on {f}");
                if (FolioRefCount(v, head) != 0)
                    RecordFault(FaultKind.KernelBug, ctx, head, $"hugetlb_vmemmap_restore_folio: VM_WARN_ON_ONCE(folio_ref_count) on {f}");
            }
            bool optimized = FolioTestHugetlbVmemmapOptimized(v, head);
            yield return StepStatus.After("folio_test_hugetlb_vmemmap_optimized");
            if (!optimized) yield break;

            f.VmemmapBusy = true;
            if (Hvo.HvoSynchronizeRcu)
                foreach (var s in SynchronizeRcu(ctx)) yield return s;
            int r = Hugetlb.ReservePages;
            ulong start = FolioVmemmapStart(f);
            ulong end = start + (ulong)h.VmemmapSizeBytes;
            ulong reuse = start + (ulong)((r - 1) * Arch.PageSize);
            start = reuse + (ulong)Arch.PageSize;
            foreach (var s in VmemmapRemapAlloc(ctx, start, end, reuse, VmemmapRemapFlags.SynchronizeRcu, ret)) yield return s;
            if (ret.Value == Errno.Ok)
            {
                ModifyPageFlags(ctx, head, PageFlags.None, PageFlags.VmemmapOptimized, "folio_clear_hugetlb_vmemmap_optimized");
                HugetlbOptimizeVmemmapKey--; // static_branch_dec
                Note("hvo.restored");
                yield return StepStatus.After("folio_clear_hugetlb_vmemmap_optimized");
            }
            f.VmemmapBusy = false;
        }
    }
}
