// mm/hugetlb_vmemmap.c, pinned to v6.10-v6.12 (the walk_page_range_novma walker, the fresh head
// copy of 2022, VMEMMAP_SYNCHRONIZE_RCU of bd225530a4c7 / c2a967f6ab0e, NR_RESET_STRUCT_PAGE = 3),
// with the v5.14 two-page layout (f41f2ed43ca5) as the TwoPagesKept scheme.
//
// One walker serves optimize and restore, as in the kernel: a VmemmapRemapWalk record carries
// the walk state (NrWalked, ReusePfn, ReuseAddr, VmemmapPages, Flags) and its RemapPte mode
// selects the leaf action (vmemmap_remap_pte or vmemmap_restore_pte). The walk visits the PMD
// covering each part of [reuse, end) — splitting a PMD block into a PTE table when it finds one
// (vmemmap_split_pmd) — and then every PTE. Each kernel-visible action is one task step: a lock
// taken, the PMD read, the PTE table filled, installed, flushed, each PTE rewritten, the final
// flush, the free of the collected pages.
//
// Layout after optimize (V vmemmap pages per folio, R kept: 1 since v5.18, 2 in v5.14):
//   PTE 0 .. R-1  : own pages, RW (R = 1: PTE 0 maps a fresh copy H of the head page, or the old
//                   page if that allocation failed)
//   PTE R .. V-1  : the reuse page (PTE R-1's frame), PAGE_KERNEL_RO ("to catch illegal write
//                   operation to the tail pages"); RW under the TailVmemmapWritable variant.
// The old frames are collected on the walk's page list and freed only after the TLB flush.
// Frames on a page list (collected for freeing, or allocated and not yet installed) are counted
// in Kernel's in-flight set (VmemmapInFlightAdd/Remove) while they are there.
//
// Every change of a live vmemmap entry goes through Kernel.VmemmapUpdateEntry
// (Engine/Arm64/VmemmapBbm.cs): in place (set_pte_at / pmd_populate_kernel), which is what x86
// does and what arm64 did in v6.1-v6.2, or one of the arm64 break-before-make strategies of S001,
// each with its own steps and window.
//
// Departures from the kernel:
// - mmap_read_lock(&init_mm) is not modelled; init_mm.page_table_lock is.
// - split_page() of a buddy-allocated vmemmap block is not needed: the model's frames are freed
//   individually either way. Boot (PageReserved) vmemmap pages are freed to the buddy like any
//   other (free_bootmem_page's accounting is not modelled).
// - A folio that is not naturally aligned (the HugetlbFolioMisaligned variant) would trip
//   VM_BUG_ON(!PAGE_ALIGNED(start | end)) with CONFIG_DEBUG_VM; without it the PTE walk covers
//   the page-aligned range below, which is what the model does.
// - HvoRemapsPmdWithoutSplit: when the walk meets a PMD block it applies the leaf action to the
//   block itself. A block maps contiguous frames, so the remap onto the reuse page cannot be
//   expressed; what is expressed is the tail protection: the whole block — the struct pages of
//   its whole section — becomes read-only because of one folio, and nothing is freed.
// - Of the batch forms, hugetlb_vmemmap_optimize_folios (with vmemmap_remap_split and the
//   NO_TLB_FLUSH flags) is modelled; hugetlb_vmemmap_restore_folios is not (restore is per folio).
// - Pre-HVO of boot-time gigantic folios (hugetlb_vmemmap_init_early) is not modelled.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine
{
    /// <summary>Which leaf action a walk performs (vmemmap_remap_walk.remap_pte).</summary>
    public enum RemapPteMode
    {
        /// <summary>remap_pte == NULL (vmemmap_remap_split): only split PMD blocks.</summary>
        None,
        /// <summary>vmemmap_remap_pte: map the entry onto the reuse page, collect the old page.</summary>
        Remap,
        /// <summary>vmemmap_restore_pte: map the entry onto a page from the list, a copy of the reuse page.</summary>
        Restore,
    }

    /// <summary>VMEMMAP_* walk flags.</summary>
    [Flags]
    public enum VmemmapRemapFlags
    {
        None = 0,
        /// <summary>VMEMMAP_SPLIT_NO_TLB_FLUSH.</summary>
        SplitNoTlbFlush = 1,
        /// <summary>VMEMMAP_REMAP_NO_TLB_FLUSH.</summary>
        RemapNoTlbFlush = 2,
        /// <summary>VMEMMAP_SYNCHRONIZE_RCU.</summary>
        SynchronizeRcu = 4,
    }

    /// <summary>struct vmemmap_remap_walk.</summary>
    public sealed class VmemmapRemapWalk
    {
        public RemapPteMode RemapPte { get; init; }
        /// <summary>Entries walked so far (the reuse entry included).</summary>
        public long NrWalked { get; set; }
        /// <summary>reuse_page: the PFN every remapped entry points at, or null until found.</summary>
        public long? ReusePfn { get; set; }
        /// <summary><see cref="ReusePfn"/> where the walk has found it already (a leaf action after
        /// the first entry).</summary>
        public long FoundReusePfn => ReusePfn ?? throw new ModelBugException("vmemmap remap walk: a leaf action ran before the reuse page was found");
        /// <summary>The vmemmap address whose page is reused.</summary>
        public ulong ReuseAddr { get; init; }
        /// <summary>The page list: collected old pages (optimize) or fresh pages (restore). The list
        /// head (list_first_entry, list_add) is the END of this list.</summary>
        public List<long> VmemmapPages { get; init; } = new();
        public VmemmapRemapFlags Flags { get; init; }
        /// <summary>walk->action = ACTION_CONTINUE: do not descend below the current PMD.</summary>
        internal bool ActionContinue { get; set; }
    }

    /// <summary>mm/hugetlb_vmemmap.c: HVO's optimize and restore of a folio's vmemmap.</summary>
    public sealed class HugetlbVmemmap : KernelCode
    {
        private readonly SortedDictionary<long, int> _inFlight = new();

        internal HugetlbVmemmap(Kernel k) : base(k) { }

        private Hugetlb Hugetlb => K.Hugetlb;
        private IEnumerable<StepStatus> VmemmapUpdateEntry(ExecContext ctx, PtTable t, int index, Pte newPte, string action) => K.Arm64.VmemmapUpdateEntry(ctx, t, index, newPte, action);
        private PtTable? SplitPmd(PtTable t, int index) => K.Pgtable.SplitPmd(t, index);
        private bool TryAllocPageTablePage(out long pfn) => K.Pgtable.TryAllocPageTablePage(out pfn);
        private void CopyFrameContent(long to, long from) => K.StructPages.CopyFrameContent(to, from);
        private void DropFrameContent(long frame) => K.StructPages.DropFrameContent(frame);
        private long HugetlbOptimizeVmemmapKey { get => K.PageFlags.HugetlbOptimizeVmemmapKey; set => K.PageFlags.HugetlbOptimizeVmemmapKey = value; }

        /// <summary>Vmemmap frames a running walk holds off the page table (collected for
        /// freeing, or allocated and not yet installed), as (pfn, 1) runs.</summary>
        public IEnumerable<(long Pfn, long Count)> FramesInFlight => _inFlight.Keys.Select(p => (p, 1L));

        /// <summary>How many frames <see cref="FramesInFlight"/> holds.</summary>
        public long VmemmapFramesInFlight => _inFlight.Values.Sum();

        private void VmemmapInFlightAdd(long pfn) => _inFlight[pfn] = _inFlight.GetValueOrDefault(pfn) + 1;

        private void VmemmapInFlightRemove(long pfn)
        {
            int n = _inFlight.GetValueOrDefault(pfn);
            if (n == 0) throw new ModelBugException($"vmemmap frame {pfn:x} leaves a page list it is not on");
            if (n == 1) _inFlight.Remove(pfn); else _inFlight[pfn] = n - 1;
        }

        /// <summary>NR_RESET_STRUCT_PAGE in v6.10-v6.12 (raised to 4 in 2025).</summary>
        public const int NrResetStructPage = 3;

        // ---- the page list (list_add / list_first_entry / list_del), with the in-flight count ----

        private void VmemmapListAdd(VmemmapRemapWalk walk, long pfn)
        {
            walk.VmemmapPages.Add(pfn);
            VmemmapInFlightAdd(pfn);
        }

        private long VmemmapListTakeFirst(VmemmapRemapWalk walk)
        {
            var l = walk.VmemmapPages;
            if (l.Count == 0) throw new ModelBugException("vmemmap page list empty: more entries to restore than pages");
            long pfn = l[^1];
            l.RemoveAt(l.Count - 1);
            VmemmapInFlightRemove(pfn);
            return pfn;
        }

        private void VmemmapListDel(VmemmapRemapWalk walk, long pfn)
        {
            int i = walk.VmemmapPages.LastIndexOf(pfn);
            if (i < 0) throw new ModelBugException($"list_del of page {pfn:x} that is not on the vmemmap page list");
            walk.VmemmapPages.RemoveAt(i);
            VmemmapInFlightRemove(pfn);
        }

        /// <summary>free_vmemmap_page_list: every page on the list back to the buddy, each through
        /// free_vmemmap_page.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "free_vmemmap_page_list")]
        public void FreeVmemmapPageList(ExecContext ctx, List<long> pages)
        {
            for (int i = pages.Count - 1; i >= 0; i--)
            {
                long pfn = pages[i];
                DropFrameContent(pfn);
                VmemmapInFlightRemove(pfn);
                FreeVmemmapPage(ctx, pfn);
            }
            pages.Clear();
        }

        /// <summary>free_vmemmap_page: a page memblock allocated at boot (PG_reserved) goes back
        /// through free_bootmem_page, which clears PG_reserved and drops the boot reference; any
        /// other page through __free_page.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "free_vmemmap_page")]
        private void FreeVmemmapPage(ExecContext ctx, long pfn)
        {
            ulong page = PfnToPage(pfn);
            if (ReadStructPage(ctx, page, out var sp) && (sp.Flags & PageFlags.Reserved) != 0)
                WriteStructPage(ctx, page, sp with { Flags = sp.Flags & ~PageFlags.Reserved, Refcount = 0 }, "free_bootmem_page");
            Mem.FreePages(pfn, 0, FrameOwner.Vmemmap, "free_vmemmap_page_list");
        }

        /// <summary>The table at <paramref name="level"/> covering <paramref name="va"/> and the index in
        /// it, or false if a leaf or a hole lies above that level.</summary>
        private bool TryGetTableAt(ulong va, PtLevel level, out PtTable table, out int index)
        {
            var t = InitMm.Root;
            while (t.Level > level)
            {
                Pte e = t.Entries[InitMm.Index(va, t.Level)];
                if (!e.IsTable || !InitMm.TryGetTable(e.Pfn, out var next)) { table = null!; index = -1; return false; }
                t = next;
            }
            table = t;
            index = InitMm.Index(va, level);
            return true;
        }

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
            FlushTlbAll();
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

        /// <summary>vmemmap_remap_range: walk [start, end) with the walk's leaf action, then flush the
        /// TLB for the range (unless VMEMMAP_REMAP_NO_TLB_FLUSH).</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "vmemmap_remap_range")]
        public IEnumerable<StepStatus> VmemmapRemapRange(ExecContext ctx, ulong start, ulong end, VmemmapRemapWalk walk, Ret<Errno> ret)
        {
            ret.Value = Errno.Ok;
            ulong pmdSize = (ulong)Arch.PmdSize;
            ulong addr = start;
            while (addr < end)
            {
                ulong next = Math.Min((addr + pmdSize) & ~(pmdSize - 1), end);
                if (!TryGetTableAt(addr, PtLevel.Pmd, out var pmdTable, out int pmdIdx)) { addr = next; continue; }
                walk.ActionContinue = false;
                foreach (var s in VmemmapPmdEntry(ctx, pmdTable, pmdIdx, addr, next, walk, ret)) yield return s;
                if (ret.Value != Errno.Ok) yield break;
                Pte pmd = pmdTable.Entries[pmdIdx];
                if (walk.ActionContinue || !pmd.IsTable || !InitMm.TryGetTable(pmd.Pfn, out var pteTable)) { addr = next; continue; }
                for (ulong a = addr; a < next; a += (ulong)Arch.PageSize)
                    foreach (var s in VmemmapPteEntry(ctx, pteTable, InitMm.Index(a, PtLevel.Pte), a, walk)) yield return s;
                addr = next;
            }
            if (walk.RemapPte != RemapPteMode.None && (walk.Flags & VmemmapRemapFlags.RemapNoTlbFlush) == 0)
            {
                if (Broken.HvoFreesBeforeFlush && walk.RemapPte == RemapPteMode.Remap) FreeVmemmapPageList(ctx, walk.VmemmapPages);
                FlushTlbKernelRange(start, end);
                yield return StepStatus.After("flush_tlb_kernel_range");
            }
        }

        /// <summary>vmemmap_pmd_entry: under init_mm.page_table_lock, note whether the PMD is a block
        /// and, for the first entry, refuse self-hosted vmemmap (memmap_on_memory: -ENOTSUPP); split a
        /// block into a PTE table.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "vmemmap_pmd_entry")]
        private IEnumerable<StepStatus> VmemmapPmdEntry(ExecContext ctx, PtTable pmdTable, int pmdIdx, ulong addr, ulong next,
            VmemmapRemapWalk walk, Ret<Errno> ret)
        {
            // Only splitting, not remapping the vmemmap pages.
            if (walk.RemapPte == RemapPteMode.None) walk.ActionContinue = true;
            foreach (var s in SpinLock(ctx, PageTableLock)) yield return s;
            Pte pmd = pmdTable.Entries[pmdIdx];
            long? head = pmd.IsLeaf ? pmd.Pfn : null;
            if (walk.NrWalked == 0)
            {
                int pteIndex = InitMm.Index(addr, PtLevel.Pte);
                long? page = head + pteIndex;
                if (head is null && pmd.IsTable && InitMm.TryGetTable(pmd.Pfn, out var pt) && pt.Entries[pteIndex].IsLeaf)
                    page = pt.Entries[pteIndex].Pfn;
                if (page is { } firstPage && ReadStructPage(ctx, PfnToPage(firstPage), out var sp) && (sp.Flags & PageFlags.VmemmapSelfHosted) != 0
                    && !K.Variant.HotplugBreakage.HvoOptimizesSelfHosted) // a hot-plug meta-test breakage
                {
                    ret.Value = Errno.ENOTSUPP;
                    Note("hvo.self_hosted");
                }
            }
            SpinUnlock(ctx, PageTableLock);
            yield return StepStatus.After("vmemmap_pmd_entry");
            if (head is not { } blockHead || ret.Value != Errno.Ok) yield break;
            if (Hvo.HvoRemapsPmdWithoutSplit)
            {
                if (walk.RemapPte == RemapPteMode.None) yield break;
                foreach (var s in VmemmapRemapPmdBlock(ctx, pmdTable, pmdIdx, addr, next, walk)) yield return s;
                yield break;
            }
            ulong pmdMask = ~(ulong)(Arch.PmdSize - 1);
            foreach (var s in VmemmapSplitPmd(ctx, pmdTable, pmdIdx, blockHead, addr & pmdMask, walk, ret)) yield return s;
        }

        /// <summary>The HvoRemapsPmdWithoutSplit variant's leaf action on a PMD block (see the header).</summary>
        private IEnumerable<StepStatus> VmemmapRemapPmdBlock(ExecContext ctx, PtTable pmdTable, int pmdIdx, ulong addr, ulong next, VmemmapRemapWalk walk)
        {
            Pte block = pmdTable.Entries[pmdIdx];
            walk.ReusePfn ??= block.Pfn + InitMm.Index(walk.ReuseAddr, PtLevel.Pte);
            bool writable = walk.RemapPte == RemapPteMode.Restore || Hvo.TailVmemmapWritable;
            walk.NrWalked += (long)((next - addr) >> Arch.PageShift);
            walk.ActionContinue = true;
            Note("hvo.pmd_block_remapped_unsplit");
            foreach (var s in VmemmapUpdateEntry(ctx, pmdTable, pmdIdx, Pte.MkLeaf(block.Pfn, writable, block.Cont), "set_pmd")) yield return s;
        }

        /// <summary>vmemmap_split_pmd: a PTE table mapping the block's frames PAGE_KERNEL, installed
        /// under init_mm.page_table_lock if the PMD is still a block (else freed), then the 2 MiB
        /// flush unless VMEMMAP_SPLIT_NO_TLB_FLUSH.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "vmemmap_split_pmd")]
        public IEnumerable<StepStatus> VmemmapSplitPmd(ExecContext ctx, PtTable pmdTable, int pmdIdx, long head, ulong start,
            VmemmapRemapWalk walk, Ret<Errno> ret)
        {
            if (!TryAllocPageTablePage(out long pgtable)) // pte_alloc_one_kernel
            {
                ret.Value = Errno.ENOMEM;
                Note("hvo.split_enomem");
                yield return StepStatus.After("pte_alloc_one_kernel");
                yield break;
            }
            var table = InitMm.NewTable(pgtable, PtLevel.Pte, start);
            for (int i = 0; i < table.Entries.Length; i++)
                InitMm.Set(table, i, Pte.MkLeaf(head + i, writable: true)); // a table nobody walks yet
            yield return StepStatus.After("pte_alloc_one_kernel");
            foreach (var s in SpinLock(ctx, PageTableLock)) yield return s;
            if (pmdTable.Entries[pmdIdx].IsLeaf)
            {
                Note("hvo.split_pmd");
                foreach (var s in VmemmapUpdateEntry(ctx, pmdTable, pmdIdx, Pte.MkTable(pgtable), "pmd_populate_kernel")) yield return s;
                if ((walk.Flags & VmemmapRemapFlags.SplitNoTlbFlush) == 0)
                    FlushTlbKernelRange(start, start + (ulong)Arch.PmdSize);
            }
            else
            {
                // Someone else split it meanwhile: pte_free_kernel.
                InitMm.ForgetTable(table);
                Mem.FreePages(pgtable, 0, FrameOwner.PageTable, "pte_free_kernel");
                Note("hvo.split_raced");
            }
            SpinUnlock(ctx, PageTableLock);
            yield return StepStatus.After("vmemmap_split_pmd");
        }

        /// <summary>vmemmap_pte_entry: the first entry walked yields the reuse page (unless a fresh
        /// head copy already is); every other gets the walk's leaf action.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "vmemmap_pte_entry")]
        private IEnumerable<StepStatus> VmemmapPteEntry(ExecContext ctx, PtTable pteTable, int idx, ulong addr, VmemmapRemapWalk walk)
        {
            walk.NrWalked++;
            if (walk.ReusePfn is null)
            {
                walk.ReusePfn = pteTable.Entries[idx].Pfn;
                yield return StepStatus.After("vmemmap_pte_entry");
            }
            else if (walk.RemapPte == RemapPteMode.Remap)
                foreach (var s in VmemmapRemapPte(ctx, pteTable, idx, addr, walk)) yield return s;
            else
                foreach (var s in VmemmapRestorePte(ctx, pteTable, idx, addr, walk)) yield return s;
        }

        /// <summary>vmemmap_remap_pte: the reuse address maps the reuse page RW, every other entry
        /// maps it PAGE_KERNEL_RO; the old page goes on the list.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "vmemmap_remap_pte")]
        public IEnumerable<StepStatus> VmemmapRemapPte(ExecContext ctx, PtTable pteTable, int idx, ulong addr, VmemmapRemapWalk walk)
        {
            bool writable = Hvo.TailVmemmapWritable;
            long old = pteTable.Entries[idx].Pfn;
            if (addr == walk.ReuseAddr)
            {
                writable = true;
                VmemmapListDel(walk, walk.FoundReusePfn);
            }
            VmemmapListAdd(walk, old);
            foreach (var s in VmemmapUpdateEntry(ctx, pteTable, idx, Pte.MkLeaf(walk.FoundReusePfn, writable), "vmemmap_remap_pte")) yield return s;
        }

        /// <summary>vmemmap_restore_pte: a page from the list becomes a copy of the reuse page with
        /// its first NR_RESET_STRUCT_PAGE struct pages reset to plain tails, mapped RW.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "vmemmap_restore_pte")]
        public IEnumerable<StepStatus> VmemmapRestorePte(ExecContext ctx, PtTable pteTable, int idx, ulong addr, VmemmapRemapWalk walk)
        {
            if (pteTable.Entries[idx].Pfn != walk.FoundReusePfn)
            {
                RecordFault(FaultKind.KernelBug, ctx, addr,
                    $"vmemmap_restore_pte: BUG_ON(pte_page != reuse_page): entry {pteTable.Entries[idx]}, reuse page {walk.FoundReusePfn:x}");
                yield return StepStatus.After("vmemmap_restore_pte");
                yield break;
            }
            long page = VmemmapListTakeFirst(walk);
            // copy_page(to, (void *)walk->reuse_addr): reads the reuse page through the vmemmap.
            if (Translate(ctx, walk.ReuseAddr, write: false, out long reuseFrame, out _))
                CopyFrameContent(page, reuseFrame);
            if (!Broken.RestoreSkipsReset) ResetStructPages(page);
            foreach (var s in VmemmapUpdateEntry(ctx, pteTable, idx, Pte.MkLeaf(page, writable: true), "vmemmap_restore_pte")) yield return s;
        }

        /// <summary>reset_struct_pages: memcpy(start, start + N, N struct pages), N = NR_RESET_STRUCT_PAGE,
        /// so the copied head metadata does not reach the restored tails.</summary>
        [Kernel("mm/hugetlb_vmemmap.c", "reset_struct_pages")]
        private void ResetStructPages(long frame)
        {
            var c = FrameContent(frame);
            for (int i = 0; i < NrResetStructPage; i++) c.Write(i, c.Read(NrResetStructPage + i));
        }
    }
}
