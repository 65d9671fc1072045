using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// Clear, flush, free: a frame (data, vmemmap or page table) goes back to the page allocator only
/// after every page-table entry that mapped it has been cleared (the linear map, which maps all
/// memory, aside) and every TLB and walk-cache entry a CPU could still use for it has been
/// invalidated; and no CPU ever accesses memory through a translation it cached before the frame
/// was freed. Judged at the instant of each free (the step's frees carry what still reached their
/// frames then), so a path that frees before it flushes is caught even when the flush follows in
/// the same step. The kernel's one tolerated exception is lazy vmap freeing: vfree frees the pages
/// at once and flushes the unmapped range later (purge_vmap_area_lazy), relying on nothing
/// touching the address before then; a stale kernel TLB entry in the vmalloc range is therefore
/// allowed at the free, and any use of it is the access violation above. Sources: the order of
/// vmemmap_remap_free → flush_tlb_kernel_range → free_vmemmap_page_list (mm/hugetlb_vmemmap.c),
/// pmd_free_pte_page (arch/x86/mm/pgtable.c, arch/arm64/mm/mmu.c), free_empty_tables
/// (arch/arm64/mm/mmu.c), tlb_finish_mmu / tlb_remove_table (mm/mmu_gather.c),
/// _vm_unmap_aliases (mm/vmalloc.c); Documentation/core-api/cachetlb.rst.
/// </summary>
public sealed class ClearFlushFree : IInvariant
{
    public string Name => nameof(ClearFlushFree);
    public string Claim => "a frame is freed only when no page-table entry maps it and no usable TLB or walk-cache entry reaches it (lazily purged vmalloc ranges aside), and no CPU uses a translation cached before its frame was freed";
    public string Source => "mm/hugetlb_vmemmap.c, mm/mmu_gather.c, pmd_free_pte_page, free_empty_tables, mm/vmalloc.c lazy purge; cachetlb.rst";

    public Violation? Check(IKernelView k)
    {
        foreach (var f in k.StepFrees)
            foreach (var r in f.Refs)
            {
                if (r.Kind == FreeRefKind.Tlb && r.Global && InVmalloc(k, r.Va)) continue;
                return new(Name, $"{f} after {f.EventIndex} entry stores and flushes of the step, but {r}");
            }
        foreach (var fault in k.Faults)
            if (fault.Kind == FaultKind.UseAfterFree) return new(Name, fault.ToString());
        return null;
    }

    private static bool InVmalloc(IKernelView k, ulong va) => va >= k.Arch.VmallocStart && va < k.Arch.VmallocEnd;
}
