// The switches of the huge-vmalloc mechanism (Engine/Vmalloc): which policy decides on PMD-sized
// vmalloc mappings, how high-order backing pages are kept, and the deliberately broken paths its
// meta-tests use. Defaults are today's kernel (v6.6 and later, mm/vmalloc.c).
//
// History the switches stand for (commit ids as in the kernel log):
// - v5.13 "mm/vmalloc: Hugepage vmalloc mappings" (Nicholas Piggin's series, posted as v8 in
//   Nov/Dec 2020): any allocation of at least PMD_SIZE with PAGE_KERNEL protections tries PMD
//   mappings and falls back to small pages; callers opt out with VM_NO_HUGE_VMAP.
// - 559089e0a93d "vmalloc: replace VM_NO_HUGE_VMAP with VM_ALLOW_HUGE_VMAP" (5.18-rc3): opt-in.
// - 3b8000ae185c "mm/vmalloc: huge vmalloc backing pages should be split rather than compound"
//   (5.18-rc4): before it, a high-order backing page stayed one compound page.
// - nohugevmalloc (boot parameter): vmap_allow_huge = false, no huge vmalloc at all.
namespace PropertySuite.Engine.Config;

/// <summary>Which allocations __vmalloc_node_range tries to map with PMD leaves.</summary>
public enum VmallocHugePolicy
{
    /// <summary>Since 559089e0a93d: only callers passing VM_ALLOW_HUGE_VMAP (vmalloc_huge,
    /// alloc_large_system_hash, ...), for any protection arch_vmap_pmd_supported accepts.</summary>
    OptIn,
    /// <summary>v5.13-v5.17 (the v8 series): every allocation of at least PMD_SIZE with
    /// PAGE_KERNEL protections, unless it passes VM_NO_HUGE_VMAP. Module allocations that start
    /// out PAGE_KERNEL (x86, arm64) are not excluded, as Rick Edgecombe pointed out.</summary>
    PageKernelAtLeastPmd,
    /// <summary>nohugevmalloc: vmap_allow_huge is false.</summary>
    Off,
}

/// <summary>The huge-vmalloc variant switches; every default is today's kernel.</summary>
public sealed record VmallocOptions
{
    public VmallocHugePolicy Huge { get; init; } = VmallocHugePolicy.OptIn;

    /// <summary>Before 3b8000ae185c: vm_area_alloc_pages keeps each high-order allocation as one
    /// compound page (__GFP_COMP) instead of split_page'ing it into independent order-0 pages,
    /// so a per-page user (vmalloc_to_page, then -&gt;lru/-&gt;mapping, or a refcount) of any
    /// page but the first handles a compound tail.</summary>
    public bool CompoundBacking { get; init; }

    /// <summary>The v8 series before its fix (seed 003): vm_reset_perms (then
    /// vm_remove_mappings) steps through the pages by huge page but extends the direct-map flush
    /// range by PAGE_SIZE per step, so the range under-covers every huge backing page.</summary>
    public bool DirectMapFlushPageSizeOnly { get; init; }

    /// <summary>The v5.13 policy on x86 as Rick Edgecombe describes it (seed 003): module_alloc
    /// allocates PAGE_KERNEL and does not pass VM_NO_HUGE_VMAP, so a module of PMD_SIZE gets huge
    /// pages, set_memory_ro mirrors a large read-only block onto the direct map, and the reset on
    /// vfree then needs a split that can fail.</summary>
    public bool HugeModuleAlloc { get; init; }

    /// <summary>nohugeiomap (boot parameter): ioremap_max_page_shift is PAGE_SHIFT, ioremap maps
    /// small pages only.</summary>
    public bool NoHugeIomap { get; init; }

    /// <summary>arm64 before 06fc959fcff7 (v6.15 and earlier): no contiguous PTEs in vmap
    /// (arch_vmap_pte_range_map_size and arch_vmap_pte_supported_shift the generic PAGE_SIZE).</summary>
    public bool NoContPteVmap { get; init; }

    /// <summary>Checks that the switches describe a kernel that existed.</summary>
    /// <exception cref="ConfigException">An impossible combination, naming both switches.</exception>
    public void Validate()
    {
        if (CompoundBacking && Huge == VmallocHugePolicy.Off)
            throw new ConfigException("vmalloc CompoundBacking with Huge = Off: compound backing pages exist only where huge vmalloc allocates high-order pages");
        if (HugeModuleAlloc && Huge != VmallocHugePolicy.PageKernelAtLeastPmd)
            throw new ConfigException($"vmalloc HugeModuleAlloc with Huge = {Huge}: only the v5.13 policy (PageKernelAtLeastPmd) gave module allocations huge pages");
        if (DirectMapFlushPageSizeOnly && Huge == VmallocHugePolicy.Off)
            throw new ConfigException("vmalloc DirectMapFlushPageSizeOnly with Huge = Off: the under-sized range exists only for huge backing pages");
    }
}

/// <summary>Deliberately broken huge-vmalloc paths, for the meta-tests of the vmalloc invariants
/// (not history: each exists only to show an invariant can fail).</summary>
public sealed record VmallocBreakage
{
    /// <summary>alloc_vmap_area reserves no guard page: the next area starts right at the end
    /// of the previous one.</summary>
    public bool NoGuardPage { get; init; }

    /// <summary>The huge policy forgets the VM_ALLOW_HUGE_VMAP test: every allocation of at
    /// least PMD_SIZE gets PMD leaves.</summary>
    public bool HugeIgnoresOptIn { get; init; }

    /// <summary>pmd_free_pte_page clears the PMD entry and frees the old PTE table without the
    /// walk-cache invalidation in between.</summary>
    public bool PmdFreePtePageSkipsFlush { get; init; }

    /// <summary>alloc_vmap_area hands out address ranges of lazily freed areas before
    /// purge_vmap_area_lazy has flushed them.</summary>
    public bool ReuseBeforePurge { get; init; }

    /// <summary>x86 set_memory_* changes the vmalloc mapping but not the direct-map alias of its
    /// frames (no cpa_process_alias).</summary>
    public bool SetMemoryNoAlias { get; init; }

    /// <summary>vm_reset_perms flushes only the lazily freed vmalloc ranges, not the direct-map
    /// range of the backing pages, before they are freed.</summary>
    public bool ResetPermsSkipsDirectMapFlush { get; init; }

    /// <summary>vunmap_range_noflush clears one page past the end of the range it is given, so
    /// a vmap user that unmaps part of its area loses the mapping of the next page too.</summary>
    public bool VunmapRangeOvershoots { get; init; }

    /// <summary>vmap_try_huge_pmd / vmap_try_huge_pud forget the physical-alignment test, so an
    /// ioremap of a range that is virtually but not physically aligned gets a huge leaf whose
    /// output address is not aligned to its size.</summary>
    public bool HugeVmapIgnoresPhysAlignment { get; init; }

    /// <summary>arm64 arch_vmap_pte_range_map_size forgets the physical-alignment test, so an
    /// ioremap of a range that is virtually but not physically CONT_PTE_SIZE-aligned gets a
    /// contiguous run whose frames are not aligned to it.</summary>
    public bool ContPteIgnoresPhysAlignment { get; init; }

    /// <summary>__pte_alloc_kernel / __pmd_alloc / __pud_alloc / __p4d_alloc populate the entry
    /// under init_mm.page_table_lock without re-checking that it is still none, so the second
    /// of two CPUs that both saw it none overwrites the table the first installed (and mapped
    /// into) with its own.</summary>
    public bool PopulateSkipsLockRecheck { get; init; }
}
