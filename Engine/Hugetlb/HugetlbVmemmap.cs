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
// in this class's in-flight set (VmemmapInFlightAdd/Remove) while they are there.
//
// Every change of a live vmemmap entry goes through Arm64Mmu.VmemmapUpdateEntry
// (Engine/Arm64/Arm64Mmu.cs): in place (set_pte_at / pmd_populate_kernel), which is what x86
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
    public sealed partial class HugetlbVmemmap : KernelCode
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
    }
}
