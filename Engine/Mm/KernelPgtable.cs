// Changes to the kernel page table (init_mm, swapper_pg_dir), named after the kernel code each
// stands for:
//   CreatePgdMapping      arch/arm64/mm/mmu.c __create_pgd_mapping (x86: kernel_physical_mapping_init):
//                         the linear map at boot, largest leaves first, arm64 contiguous runs;
//   VmapRangeNoflush      mm/vmalloc.c vmap_range_noflush at one leaf size;
//   VunmapRangeNoflush    mm/vmalloc.c vunmap_range_noflush;
//   SetMemoryRo/Rw        arch/arm64/mm/pageattr.c set_memory_ro/rw (__change_memory_common);
//   SplitPmd/SplitPud     arch/arm64/mm/mmu.c split_pmd/split_pud (x86: split_large_page):
//                         a block replaced by a table of the same frames;
//   FreeEmptyTables       arch/arm64/mm/mmu.c free_empty_tables with its floor/ceiling check;
//   PmdFreePtePage        pmd_free_pte_page / pud_free_pmd_page (arch/x86/mm/pgtable.c,
//   PudFreePmdPage        arch/arm64/mm/mmu.c): a leftover table under a PMD (PUD) entry that
//                         vmap_try_huge_pmd (_pud) wants for a huge leaf is unlinked, the walk
//                         caches are invalidated, and only then is the table page freed. x86
//                         invalidates with flush_tlb_kernel_range over one page (INVLPG drops
//                         the paging-structure caches); arm64 with __flush_tlb_kernel_pgtable
//                         (TLBI VAAE1IS, all levels). x86's pud_free_pmd_page unlinks the PMD
//                         table, flushes once and then frees the PTE tables below it; arm64's
//                         frees each PTE table through pmd_free_pte_page first (one flush each),
//                         then unlinks and flushes the PMD table.
//
// None of these flush the TLB except FreeEmptyTables (which must before it frees a table page):
// callers do, as in the kernel (the *_noflush convention).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Mm;

public sealed class KernelPgtable
{
    private static readonly PtLevel[] BlockLevelsLargestFirst = [PtLevel.Pud, PtLevel.Pmd];

    private readonly ArchConfig _arch;
    private readonly PageTable _pgd;
    private readonly PhysMem _mem;
    private readonly TlbFlush _tlb;
    private readonly KernelLog _log;
    private readonly Func<ExecContext?> _current;

    internal KernelPgtable(ArchConfig arch, MmStruct initMm, PhysMem mem, TlbFlush tlb, KernelLog log, Func<ExecContext?> current)
    {
        _arch = arch;
        _pgd = initMm.Pgd;
        _mem = mem;
        _tlb = tlb;
        _log = log;
        _current = current;
    }

    /// <summary>init_mm's page table (swapper_pg_dir), for walkers.</summary>
    internal PageTable InitMmPgd => _pgd;

    /// <summary>The breakage of free_empty_tables a meta-test uses (see Breakage).</summary>
    internal bool BrokenFreeTableKeepsParentEntry { get; init; }
    internal bool BrokenFreeTableLeafOnlyFlush { get; init; }

    /// <summary>Allocates a zeroed page-table page (__get_free_page(GFP_PGTABLE_KERNEL)) into
    /// <paramref name="pfn"/>; false on ENOMEM. A <see cref="PtAllocator"/>.</summary>
    public bool TryAllocPageTablePage(out long pfn) => _mem.TryAllocPages(0, FrameOwner.PageTable, out pfn);

    /// <summary>Maps [pfn, pfn+count) at va with the largest leaves that alignment allows. On
    /// arm64 a leaf whose whole contiguous run (CONT_PTE_SIZE / CONT_PMD_SIZE, aligned) lies in
    /// the range gets the contiguous bit, as alloc_init_cont_pte / alloc_init_cont_pmd do when
    /// NO_CONT_MAPPINGS is not requested.</summary>
    [Kernel("arch/arm64/mm/mmu.c", "__create_pgd_mapping")]
    public void CreatePgdMapping(ulong va, long pfn, long count, bool writable, PtAllocator allocTable)
    {
        long end = pfn + count;
        ulong vaStart = va, vaEnd = va + ((ulong)count << _arch.PageShift);
        while (pfn < end)
        {
            PtLevel level = PtLevel.Pte;
            foreach (var l in BlockLevelsLargestFirst)
            {
                if ((int)l >= _arch.Levels || !_arch.LeafAllowed(l)) continue;
                long pages = _arch.LevelSize(l) >> _arch.PageShift;
                if ((pfn & (pages - 1)) == 0 && pfn + pages <= end) { level = l; break; }
            }
            var t = _pgd.WalkAlloc(va, level, allocTable, out var err)
                ?? throw new ModelBugException($"map of {va:x} failed: {err}");
            ulong contSize = (ulong)_arch.ContSize(level);
            ulong group = contSize == 0 ? 0 : va & ~(contSize - 1);
            bool cont = contSize != 0 && group >= vaStart && group + contSize <= vaEnd
                && ((ulong)pfn << _arch.PageShift) % contSize == va % contSize;
            _pgd.Set(t, _pgd.Index(va, level), Pte.MkLeaf(pfn, writable, cont));
            pfn += _arch.LevelSize(level) >> _arch.PageShift;
            va += (ulong)_arch.LevelSize(level);
        }
    }

    /// <summary>vmap_range_noflush at one leaf size: maps [va, va + pages * PAGE_SIZE) to
    /// [pfn, ...) with leaves at <paramref name="level"/>. va and pfn must be aligned to the leaf
    /// size. Allocates missing tables; ENOMEM leaves what was already mapped in place (the caller
    /// unwinds, as __vmalloc_area_node does).</summary>
    [Kernel("mm/vmalloc.c", "vmap_range_noflush")]
    public Errno VmapRangeNoflush(ulong va, long pfn, long pages, PtLevel level, bool writable)
    {
        long leafPages = _arch.LevelSize(level) >> _arch.PageShift;
        if (!_arch.LeafAllowed(level) || (int)level >= _arch.Levels)
            throw new ModelBugException($"map at {va:x}: no leaf at {level} on {_arch.Name}");
        if ((va & (ulong)(_arch.LevelSize(level) - 1)) != 0 || (pfn & (leafPages - 1)) != 0 || pages % leafPages != 0)
            throw new ModelBugException($"map at {va:x} pfn {pfn:x} pages {pages}: not aligned to the {level} leaf size");
        for (long i = 0; i < pages; i += leafPages)
        {
            ulong a = va + (ulong)(i << _arch.PageShift);
            var t = _pgd.WalkAlloc(a, level, TryAllocPageTablePage, out var err);
            if (t is null) return err;
            int idx = _pgd.Index(a, level);
            if (!t.Entries[idx].IsNone)
                throw new ModelBugException($"map at {a:x}: {level} entry already {t.Entries[idx]}");
            _pgd.Set(t, idx, Pte.MkLeaf(pfn + i, writable));
        }
        return Errno.Ok;
    }

    /// <summary>vunmap_range_noflush: clears every leaf in [start, end). A PMD or PUD leaf the
    /// range covers only in part is cleared whole all the same (pmd_clear_huge / pud_clear_huge
    /// clear the entry, whatever part of it the range asked for), with the WARN that
    /// 61ef8ddaa35e ("mm/vmalloc: Warn on improper use of vunmap_range()") added to
    /// vunmap_pmd_range / vunmap_pud_range: WARN_ON(next - addr &lt; PMD_SIZE).</summary>
    [Kernel("mm/vmalloc.c", "vunmap_range_noflush")]
    public void VunmapRangeNoflush(ulong start, ulong end)
    {
        foreach (var w in _pgd.Leaves(start, end).ToList())
        {
            ulong va = _pgd.EntryVa(w.Table, w.Index), size = _pgd.EntrySize(w.Table);
            if (w.Table.Entries[w.Index].IsNone) continue; // cleared with its contiguous run
            if (w.Level == PtLevel.Pte && w.Entry.Cont && _arch.Arch == Arch.Arm64 && start >= _arch.VmallocStart && end <= _arch.VmallocEnd)
            {
                // vunmap_pte_range (2fba13371fe8): arch_vmap_pte_range_unmap_size says
                // CONT_PTE_SIZE for a valid contiguous entry, and the whole run is cleared
                // (huge_ptep_get_and_clear), with a WARN for a range that starts inside the run
                // or ends before its end.
                ulong cont = (ulong)_arch.ContSize(PtLevel.Pte), run = va & ~(cont - 1);
                if (!VaRange.Contains(start, end, run, run + cont))
                    _log.RecordFault(FaultKind.KernelBug, _current(), va,
                        $"vunmap [{start:x}, {end:x}) covers part of the contiguous PTE run [{run:x}, {run + cont:x}), which is cleared whole (WARN_ON in vunmap_pte_range)");
                int first = _pgd.Index(run, PtLevel.Pte);
                for (int j = 0; j < (int)(cont / size); j++) _pgd.Set(w.Table, first + j, Pte.None);
                continue;
            }
            if (!VaRange.Contains(start, end, va, va + size))
                _log.RecordFault(FaultKind.KernelBug, _current(), va,
                    $"vunmap [{start:x}, {end:x}) covers part of the {w.Level} leaf [{va:x}, {va + size:x}), which is cleared whole (WARN_ON(next - addr < {w.Level.ToString().ToUpperInvariant()}_SIZE) in vunmap_{w.Level.ToString().ToLowerInvariant()}_range)");
            _pgd.Set(w.Table, w.Index, Pte.None);
        }
    }

    /// <summary>set_memory_ro: every leaf in [start, end) becomes read-only (no flush here:
    /// the arm64 caller flushes after __change_memory_common's walk).</summary>
    [Kernel("arch/arm64/mm/pageattr.c", "set_memory_ro")]
    public void SetMemoryRo(ulong start, ulong end) => ChangeMemoryCommon(start, end, writable: false);

    /// <summary>set_memory_rw: every leaf in [start, end) becomes writable (no flush here).</summary>
    [Kernel("arch/arm64/mm/pageattr.c", "set_memory_rw")]
    public void SetMemoryRw(ulong start, ulong end) => ChangeMemoryCommon(start, end, writable: true);

    [Kernel("arch/arm64/mm/pageattr.c", "__change_memory_common")]
    private void ChangeMemoryCommon(ulong start, ulong end, bool writable)
    {
        foreach (var w in _pgd.Leaves(start, end).ToList())
            _pgd.Set(w.Table, w.Index, w.Entry.WithWritable(writable));
    }

    /// <summary>split_pmd: replaces the PMD block at (<paramref name="t"/>, <paramref name="index"/>)
    /// by a PTE table mapping the same frames with the same permission, installed over the live
    /// block (the caller decides whether that is allowed). Null on ENOMEM.</summary>
    [Kernel("arch/arm64/mm/mmu.c", "split_pmd")]
    public PtTable? SplitPmd(PtTable t, int index) => SplitBlock(t, index, PtLevel.Pmd);

    /// <summary>split_pud: as <see cref="SplitPmd"/> for a PUD block (a table of PMD blocks).</summary>
    [Kernel("arch/arm64/mm/mmu.c", "split_pud")]
    public PtTable? SplitPud(PtTable t, int index) => SplitBlock(t, index, PtLevel.Pud);

    private PtTable? SplitBlock(PtTable t, int index, PtLevel level)
    {
        Pte block = t.Entries[index];
        if (!block.IsLeaf || t.Level != level)
            throw new ModelBugException($"split of {t.Level} entry {index} of table {t.Pfn:x}: not a {level} block ({block})");
        if (!TryAllocPageTablePage(out long pfn)) return null;
        var child = _pgd.NewTable(pfn, t.Level - 1, _pgd.EntryVa(t, index));
        long step = _arch.LevelSize(child.Level) >> _arch.PageShift;
        for (int i = 0; i < child.Entries.Length; i++)
            _pgd.Set(child, i, Pte.MkLeaf(block.Pfn + i * step, block.Writable, exec: block.Exec));
        _pgd.Set(t, index, Pte.MkTable(pfn));
        return child;
    }

    /// <summary>The breakage of pmd_free_pte_page a meta-test uses (VmallocBreakage).</summary>
    internal bool BrokenPmdFreePtePageSkipsFlush { get; init; }

    /// <summary>pmd_free_pte_page: the PMD entry (<paramref name="t"/>, <paramref name="index"/>)
    /// points at a PTE table that is empty; unlink it, invalidate what walk caches hold of it,
    /// free it. Returns 1 as both architectures do (a PMD that is not a table only warns).</summary>
    [Kernel("arch/arm64/mm/mmu.c", "pmd_free_pte_page")]
    public int PmdFreePtePage(PtTable t, int index)
    {
        Pte pmd = t.Entries[index];
        ulong addr = _pgd.EntryVa(t, index);
        if (!_pgd.TryGetChild(t, pmd, out var table))
        {
            _log.RecordFault(FaultKind.KernelBug, _current(), addr, $"pmd_free_pte_page at {addr:x}: PMD entry {pmd} is not a table (VM_WARN_ON)");
            return 1;
        }
        _pgd.Set(t, index, Pte.None);
        if (!BrokenPmdFreePtePageSkipsFlush) FlushOneTable(addr);
        FreeTablePage(table, "pmd_free_pte_page");
        return 1;
    }

    /// <summary>pud_free_pmd_page: as <see cref="PmdFreePtePage"/> for a PMD table under a PUD
    /// entry, freeing the PTE tables below it as well (the order is the architecture's, see the
    /// file header).</summary>
    [Kernel("arch/arm64/mm/mmu.c", "pud_free_pmd_page")]
    public int PudFreePmdPage(PtTable t, int index)
    {
        Pte pud = t.Entries[index];
        ulong addr = _pgd.EntryVa(t, index);
        if (!_pgd.TryGetChild(t, pud, out var pmdTable))
        {
            _log.RecordFault(FaultKind.KernelBug, _current(), addr, $"pud_free_pmd_page at {addr:x}: PUD entry {pud} is not a table (VM_WARN_ON)");
            return 1;
        }
        if (_arch.Arch == Arch.Arm64)
        {
            for (int i = 0; i < pmdTable.Entries.Length; i++)
                if (!pmdTable.Entries[i].IsNone) PmdFreePtePage(pmdTable, i);
            _pgd.Set(t, index, Pte.None);
            FlushOneTable(addr);
        }
        else
        {
            var below = new List<PtTable>();
            for (int i = 0; i < pmdTable.Entries.Length; i++)
                if (_pgd.TryGetChild(pmdTable, pmdTable.Entries[i], out var pte)) below.Add(pte);
            _pgd.Set(t, index, Pte.None);
            // INVLPG of one page drops every paging-structure cache entry, whatever address it
            // translates (Intel SDM 4.10.4.1); the model's walk caches are dropped by range, so
            // the same effect is the whole PUD range.
            _tlb.FlushTlbKernelRange(addr, addr + (ulong)_arch.PudSize);
            foreach (var pte in below) FreeTablePage(pte, "pud_free_pmd_page");
        }
        FreeTablePage(pmdTable, "pud_free_pmd_page");
        return 1;
    }

    private void FlushOneTable(ulong addr)
    {
        if (_arch.Arch == Arch.Arm64) _tlb.FlushTlbKernelPgtable(addr);
        else _tlb.FlushTlbKernelRange(addr, addr + (ulong)_arch.PageSize);
    }

    /// <summary>Frees a table page nothing points at (a populate that lost its race:
    /// pte_free_kernel, pmd_free, pud_free, p4d_free).</summary>
    internal void FreeTable(PtTable table, string who)
    {
        if (_pgd.ParentsOf(table.Pfn).Count != 0)
            throw new ModelBugException($"{who} of table {table.Pfn:x}: an entry still points at it");
        FreeTablePage(table, who);
    }

    private void FreeTablePage(PtTable table, string who)
    {
        _pgd.ForgetTable(table);
        _mem.FreePages(table.Pfn, 0, FrameOwner.PageTable, who);
    }

    /// <summary>pgtable_range_aligned: whether the table covering [start, end) at the given mask
    /// lies wholly inside [floor, ceiling) (borrowed by arm64 from free_pgd_range).</summary>
    [Kernel("arch/arm64/mm/mmu.c", "pgtable_range_aligned")]
    public static bool PgtableRangeAligned(ulong start, ulong end, ulong floor, ulong ceiling, ulong mask)
    {
        start &= mask;
        if (start < floor) return false;
        if (ceiling != 0)
        {
            ceiling &= mask;
            if (ceiling == 0) return false;
        }
        return end - 1 <= ceiling - 1;
    }

    /// <summary>free_empty_tables (arch/arm64/mm/mmu.c): bottom-up, frees every table page under
    /// [start, end) whose entries are all none and whose span lies inside [floor, ceiling):
    /// clear the parent entry, flush the walk cache for the span, free the page. The root is
    /// never freed. Returns the number of table pages freed.</summary>
    [Kernel("arch/arm64/mm/mmu.c", "free_empty_tables")]
    public int FreeEmptyTables(ulong start, ulong end, ulong floor, ulong ceiling)
    {
        int freed = 0;
        FreeEmptyTablesBelow(_pgd.Root, start, end, floor, ceiling, ref freed);
        return freed;
    }

    private void FreeEmptyTablesBelow(PtTable t, ulong start, ulong end, ulong floor, ulong ceiling, ref int freed)
    {
        ulong size = _pgd.EntrySize(t);
        for (int i = 0; i < t.Entries.Length; i++)
        {
            ulong va = _pgd.EntryVa(t, i);
            if (!VaRange.Overlaps(va, va + size, start, end)) continue;
            Pte e = t.Entries[i];
            if (!_pgd.TryGetChild(t, e, out var child)) continue;
            FreeEmptyTablesBelow(child, start, end, floor, ceiling, ref freed);
            if (child.Used != 0) continue;
            if (!PgtableRangeAligned(va, va + size, floor, ceiling, ~(size - 1))) continue;
            if (!BrokenFreeTableKeepsParentEntry) _pgd.Set(t, i, Pte.None);
            if (BrokenFreeTableLeafOnlyFlush) _tlb.FlushTlbKernelRange(va, va + size);
            else _tlb.FlushTlbKernelPgtable(va);
            _pgd.ForgetTable(child);
            _mem.FreePages(child.Pfn, 0, FrameOwner.PageTable, "free_empty_tables");
            freed++;
        }
    }
}
