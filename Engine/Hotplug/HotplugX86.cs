// arch/x86/mm/init_64.c hot-remove teardown: remove_pagetable(start, end, direct), used by
// vmemmap_free (direct = false: the mapped vmemmap pages are freed) and by
// kernel_physical_mapping_remove (direct = true: the linear map; its frames are the memory being
// removed). Unlike arm64 it is one walk: remove_pte/pmd/pud/p4d_table clear the leaves of the
// range and, on the way back up, free_pte_table / free_pmd_table (and free_pud_table with 5-level
// paging only: "For 4-level page tables we do not want to free PUDs") free each table whose
// entries are all none, clearing its parent entry under init_mm.page_table_lock. One
// flush_tlb_all() ends the walk. x86 needs no floor/ceiling: vmalloc, vmemmap and the linear map
// never share a table below the PGD. A vmemmap PMD block only partly inside the range (a
// sub-section's memmap) is cleared and freed only when no other present memory's struct pages
// lie in it (vmemmap_pmd_is_unused, the PAGE_UNUSED marking of 2021).
//
// Order of frees: mainline frees each table page and each vmemmap page before the final
// flush_tlb_all() (remove_pte_table frees a vmemmap page just before clearing its PTE and
// flushes once after its loop; free_pte_table / free_pmd_table free the table page and then
// clear the parent entry; free_hugepage_table frees a PMD block of vmemmap before pmd_clear), so
// a CPU's paging-structure cache or TLB can still point at a freed page. Rick Edgecombe's
// "x86/mm: Flush before free in remove_pagetable()" (lore 20210818221026.10794-1-
// rick.p.edgecombe@intel.com, Aug 2021, Fixes ae9aae9eda2d "memory-hotplug: common APIs to
// support page tables hot-remove", acked by Dave Hansen and Dan Williams) gathers the tables on
// a list (gather_table) and frees them after the flush (gather_table_finish); it leaves the
// vmemmap pages as they were. The model's default follows that patch and extends it to the
// vmemmap pages (clear, then one flush, then free), which is what the clear → flush → free rule
// asks for; the order before the patch is the variant x86-remove-pagetable-frees-before-flush
// (HotplugOptions.X86RemovePagetableFreesBeforeFlush). Whether the patch is in mainline the
// model does not assert. Every free goes through the page allocator.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Hotplug;

public sealed partial class MemoryHotplug
{
    /// <summary>vmemmap_free (x86-64).</summary>
    private IEnumerable<StepStatus> VmemmapFreeX86(ExecContext ctx, ulong start, ulong end) => RemovePagetable(ctx, start, end, direct: false);

    /// <summary>kernel_physical_mapping_remove: the linear map of [start, end).</summary>
    [Kernel("arch/x86/mm/init_64.c", "kernel_physical_mapping_remove")]
    private IEnumerable<StepStatus> KernelPhysicalMappingRemove(ExecContext ctx, ulong start, ulong end) => RemovePagetable(ctx, start, end, direct: true);

    /// <summary>remove_pagetable: the walk, one entry store per step, then flush_tlb_all, then
    /// the gathered pages freed one per step.</summary>
    [Kernel("arch/x86/mm/init_64.c", "remove_pagetable")]
    private IEnumerable<StepStatus> RemovePagetable(ExecContext ctx, ulong start, ulong end, bool direct)
    {
        var tables = new List<PtTable>();
        var pages = new List<(long Pfn, long Count)>();
        foreach (var s in RemoveTable(ctx, InitMm.Root, start, end, direct, tables, pages)) yield return s;
        // Before the patch, RemoveTable has freed everything already; only the flush is left.
        FlushTlbAll();
        yield return StepStatus.After("flush_tlb_all");
        foreach (var (pfn, n) in pages)
        {
            FreePagetable(pfn, n);
            yield return StepStatus.After("free_pagetable");
        }
        foreach (var t in tables)
        {
            InitMm.ForgetTable(t);
            Mem.FreePages(t.Pfn, 0, FrameOwner.PageTable, "free_pagetable");
            yield return StepStatus.After("free_pagetable");
        }
    }

    /// <summary>free_pagetable of vmemmap pages (free_hugepage_table for a PMD block).</summary>
    [Kernel("arch/x86/mm/init_64.c", "free_pagetable")]
    private void FreePagetable(long pfn, long pages)
    {
        VmemmapInFlightRemove(pfn, pages);
        if (InAltmap(pfn, pages)) { VmemAltmapFree(pfn, pages); return; } // free_hugepage_table with an altmap
        Mem.FreePages(pfn, System.Numerics.BitOperations.Log2((ulong)pages), FrameOwner.Vmemmap, "free_pagetable");
    }

    /// <summary>remove_p4d/pud/pmd/pte_table for the entries of <paramref name="t"/> in [start, end).</summary>
    private IEnumerable<StepStatus> RemoveTable(ExecContext ctx, PtTable t, ulong start, ulong end, bool direct, List<PtTable> tables, List<(long, long)> pages)
    {
        ulong entrySize = InitMm.EntrySize(t);
        int first = InitMm.Index(start, t.Level), last = InitMm.Index(end - 1, t.Level);
        for (int i = first; i <= last; i++)
        {
            Pte e = t.Entries[i];
            if (e.IsNone) continue;
            ulong va = InitMm.EntryVa(t, i);
            ulong lo = Math.Max(va, start), hi = Math.Min(va + entrySize - 1, end - 1) + 1;
            if (e.IsLeaf)
            {
                bool whole = lo == va && hi == va + entrySize;
                if (!whole && (direct || !VmemmapBlockIsUnused(va, va + entrySize, start, end))) continue;
                if (!direct && _options.X86RemovePagetableFreesBeforeFlush)
                {
                    // free_pagetable / free_hugepage_table before the entry is cleared.
                    long n = (long)(entrySize >> Arch.PageShift);
                    VmemmapInFlightAdd(e.Pfn, n);
                    FreePagetable(e.Pfn, n);
                    yield return StepStatus.After(t.Level == PtLevel.Pte ? "free_pagetable" : "free_hugepage_table");
                }
                InitMm.Set(t, i, Pte.None);
                if (!direct && !_options.X86RemovePagetableFreesBeforeFlush)
                {
                    long n = (long)(entrySize >> Arch.PageShift);
                    VmemmapInFlightAdd(e.Pfn, n);
                    pages.Add((e.Pfn, n));
                }
                yield return StepStatus.After(t.Level switch { PtLevel.Pte => "pte_clear", PtLevel.Pmd => "pmd_clear", _ => "pud_clear" });
                continue;
            }
            if (!InitMm.TryGetChild(t, e, out var child)) continue;
            foreach (var s in RemoveTable(ctx, child, lo, hi, direct, tables, pages)) yield return s;
            // free_pte_table / free_pmd_table / free_pud_table (5-level only); P4D tables never.
            bool freeable = child.Level <= PtLevel.Pmd || (child.Level == PtLevel.Pud && Arch.Levels == 5);
            if (!freeable || child.Used != 0) continue;
            if (_options.X86RemovePagetableFreesBeforeFlush)
            {
                // free_pte_table / free_pmd_table: the table page is freed, then its parent entry cleared.
                InitMm.ForgetTable(child);
                Mem.FreePages(child.Pfn, 0, FrameOwner.PageTable, "free_pagetable");
                yield return StepStatus.After("free_pagetable");
            }
            else tables.Add(child);
            foreach (var s in SpinLock(ctx, PageTableLock)) yield return s;
            if (!Broken.FreeTableKeepsParentEntry) InitMm.Set(t, i, Pte.None); // a meta-test breakage
            SpinUnlock(ctx, PageTableLock);
            yield return StepStatus.After(t.Level switch { PtLevel.Pmd => "pmd_clear", PtLevel.Pud => "pud_clear", _ => "p4d_clear" });
        }
        if (t.Level == PtLevel.Pte && _options.X86RemovePagetableFreesBeforeFlush)
        {
            // remove_pte_table's own flush_tlb_all after its loop (before the patch).
            FlushTlbAll();
            yield return StepStatus.After("flush_tlb_all");
        }
    }

    /// <summary>vmemmap_pmd_is_unused: whether no present memory outside [start, end) has its
    /// struct pages in the vmemmap block [blockStart, blockEnd).</summary>
    private bool VmemmapBlockIsUnused(ulong blockStart, ulong blockEnd, ulong start, ulong end)
    {
        long first = PageToPfn(blockStart), last = PageToPfn(blockEnd);
        long removeFirst = PageToPfn(start), removeLast = PageToPfn(end);
        for (long p = first; p < last; p += SubsectionPages)
            if ((p < removeFirst || p >= removeLast) && p < Mem.MaxPfn && LifetimeOf(p) is not null) return false;
        return true;
    }
}
