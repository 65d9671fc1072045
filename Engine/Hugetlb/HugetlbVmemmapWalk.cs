// mm/hugetlb_vmemmap.c, the page-table walk of HVO (v6.10-v6.12): vmemmap_remap_range with its
// PMD step (vmemmap_pmd_entry: split a PMD block, or ACTION_CONTINUE), the PTE step
// (vmemmap_pte_entry, which finds the reuse page first), and the two leaf actions
// vmemmap_remap_pte and vmemmap_restore_pte with reset_struct_pages. One walker serves optimize
// and restore; the layout it produces and the departures are in HugetlbVmemmap.cs's header.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine
{
    public sealed partial class HugetlbVmemmap
    {
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
