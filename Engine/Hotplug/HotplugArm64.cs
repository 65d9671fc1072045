// arch/arm64/mm/mmu.c (v6.12) hot-remove teardown, as bbd6ec605c0f (v5.7) merged it, in two
// passes, each a sequence of steps with one entry action per step:
//
//   vmemmap_free(start, end)          unmap_hotplug_range(start, end, free_mapped = true)
//                                     free_empty_tables(start, end, VMEMMAP_START, VMEMMAP_END)
//   __remove_pgd_mapping(start, end)  unmap_hotplug_range(start, end, free_mapped = false)
//                                     free_empty_tables(start, end, PAGE_OFFSET, PAGE_END)
//
// Pass 1 (unmap_hotplug_*_range): every leaf in the range is cleared (pud_clear / pmd_clear for a
// block, pte_clear for a page; contiguous-bit runs get no special treatment: each entry is
// cleared on its own), then invalidated with one flush_tlb_kernel_range of one page ("One TLBI
// should be sufficient here as the PMD_SIZE range is mapped with a single block entry"), and
// only then, for vmemmap, the backing is freed (free_hotplug_page_range).
// Pass 2 (free_empty_*_table), bottom-up: a table is freed only if pgtable_range_aligned says the
// span its parent entry maps lies wholly inside [floor, ceiling) and every one of its entries is
// none; then the parent entry is cleared, the walk caches invalidated
// (__flush_tlb_kernel_pgtable) and the table page freed. PMD tables are freed only with
// CONFIG_PGTABLE_LEVELS > 2 and PUD tables only with > 3 (with the model's levels that is every
// table but the root); the PGD is never freed.
//
// Departures from the kernel: entries are read from the model's tables, not READ_ONCE'd memory;
// the WARN_ONs on non-present entries cannot fire (the model has no non-present non-none entry).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Hotplug;

public sealed partial class MemoryHotplug
{
    /// <summary>vmemmap_free (arm64). S004 V6 (VmemmapTablesKept) stops after pass 1.</summary>
    [Kernel("arch/arm64/mm/mmu.c", "vmemmap_free")]
    private IEnumerable<StepStatus> VmemmapFree(ExecContext ctx, ulong start, ulong end)
    {
        foreach (var s in UnmapHotplugRange(ctx, start, end, freeMapped: true)) yield return s;
        if (_options.VmemmapTablesKept) yield break;
        foreach (var s in FreeEmptyTables(ctx, start, end, Arch.VmemmapStart, Arch.VmemmapEnd)) yield return s;
    }

    /// <summary>__remove_pgd_mapping: the linear map of [start, end).</summary>
    [Kernel("arch/arm64/mm/mmu.c", "__remove_pgd_mapping")]
    private IEnumerable<StepStatus> RemovePgdMapping(ExecContext ctx, ulong start, ulong end)
    {
        foreach (var s in UnmapHotplugRange(ctx, start, end, freeMapped: false)) yield return s;
        ulong pageEnd = Arch.PageOffset + (ulong)Arch.LinearMapSize;
        foreach (var s in FreeEmptyTables(ctx, start, end, Arch.PageOffset, pageEnd)) yield return s;
    }

    /// <summary>unmap_hotplug_range: pass 1. Leaves are visited in address order; each is cleared,
    /// flushed, and (free_mapped) its backing freed, one step each.</summary>
    [Kernel("arch/arm64/mm/mmu.c", "unmap_hotplug_range")]
    private IEnumerable<StepStatus> UnmapHotplugRange(ExecContext ctx, ulong start, ulong end, bool freeMapped)
    {
        ulong cursor = start;
        while (true)
        {
            // The next leaf at or after the cursor (re-read each time: the walk is live).
            PtWalk? next = null;
            foreach (var w in InitMm.Leaves(cursor, end)) { next = w; break; }
            if (next is not { } leaf) yield break;
            ulong va = InitMm.EntryVa(leaf.Table, leaf.Index), size = InitMm.EntrySize(leaf.Table);
            Pte old = leaf.Entry;
            // pud_clear / pmd_clear / pte_clear: a block straddling the range goes whole, as the
            // kernel's pmd_sect / pud_sect branch clears it.
            InitMm.Set(leaf.Table, leaf.Index, Pte.None);
            long pages = (long)(size >> Arch.PageShift);
            if (freeMapped) VmemmapInFlightAdd(old.Pfn, pages);
            yield return StepStatus.After(leaf.Level switch { PtLevel.Pud => "pud_clear", PtLevel.Pmd => "pmd_clear", _ => "pte_clear" });
            FlushTlbKernelRange(va, va + (ulong)Arch.PageSize);
            yield return StepStatus.After("flush_tlb_kernel_range");
            if (freeMapped)
            {
                FreeHotplugPageRange(old.Pfn, pages);
                yield return StepStatus.After("free_hotplug_page_range");
            }
            cursor = va + size;
            if (cursor == 0 || cursor >= end) yield break;
        }
    }

    /// <summary>free_empty_tables: pass 2 over the tables below the root that cover [start, end).</summary>
    [Kernel("arch/arm64/mm/mmu.c", "free_empty_tables")]
    private IEnumerable<StepStatus> FreeEmptyTables(ExecContext ctx, ulong start, ulong end, ulong floor, ulong ceiling)
    {
        foreach (var s in FreeEmptyTablesBelow(ctx, InitMm.Root, start, end, floor, ceiling)) yield return s;
    }

    /// <summary>free_empty_p4d/pud/pmd/pte_table for the children of <paramref name="parent"/>
    /// inside [start, end): each child's own children first, then the child itself when its
    /// span is inside [floor, ceiling) and it is empty.</summary>
    private IEnumerable<StepStatus> FreeEmptyTablesBelow(ExecContext ctx, PtTable parent, ulong start, ulong end, ulong floor, ulong ceiling)
    {
        ulong entrySize = InitMm.EntrySize(parent);
        int first = InitMm.Index(start, parent.Level), last = InitMm.Index(end - 1, parent.Level);
        for (int i = first; i <= last; i++)
        {
            Pte e = parent.Entries[i];
            if (!InitMm.TryGetChild(parent, e, out var child)) continue;
            ulong va = InitMm.EntryVa(parent, i);
            ulong lo = Math.Max(va, start), hi = Math.Min(va + entrySize - 1, end - 1) + 1;
            if (child.Level > PtLevel.Pte)
                foreach (var s in FreeEmptyTablesBelow(ctx, child, lo, hi, floor, ceiling)) yield return s;
            // The sanity checks of pass 1's work: no leaf is left in the range (free_empty_pte_table:
            // every PTE none; free_empty_pmd/pud_table: WARN_ON(pmd_sect) on what is not none).
            for (int j = InitMm.Index(lo, child.Level); j <= InitMm.Index(hi - 1, child.Level); j++)
                if (child.Entries[j].IsLeaf)
                    RecordFault(FaultKind.KernelBug, ctx, InitMm.EntryVa(child, j), $"free_empty_tables: {child.Level} entry at {InitMm.EntryVa(child, j):x} still {child.Entries[j]} after unmap_hotplug_range (WARN_ON)");
            if (!KernelPgtable.PgtableRangeAligned(lo, hi, floor, ceiling, ~(entrySize - 1))) continue;
            if (child.Used != 0) continue;
            foreach (var s in FreeTable(ctx, parent, i, child, va)) yield return s;
        }
    }

    /// <summary>Clear the parent entry, invalidate the walk caches for the span, free the page:
    /// one step each (pmd_clear / pud_clear / p4d_clear, __flush_tlb_kernel_pgtable,
    /// free_hotplug_pgtable_page).</summary>
    private IEnumerable<StepStatus> FreeTable(ExecContext ctx, PtTable parent, int index, PtTable child, ulong va)
    {
        if (!Broken.FreeTableKeepsParentEntry) InitMm.Set(parent, index, Pte.None); // a meta-test breakage
        yield return StepStatus.After(parent.Level switch { PtLevel.Pmd => "pmd_clear", PtLevel.Pud => "pud_clear", _ => "p4d_clear" });
        if (Broken.FreeTableLeafOnlyFlush) FlushTlbKernelRange(va, va + InitMm.EntrySize(parent)); // a meta-test breakage: last level only on arm64
        else K.Tlb.FlushTlbKernelPgtable(va);
        yield return StepStatus.After("__flush_tlb_kernel_pgtable");
        FreeHotplugPgtablePage(child);
        yield return StepStatus.After("free_hotplug_pgtable_page");
    }
}
