// The named kernel variants a scenario can select (`variant NAME` in a repro file). The first
// entry is today's correct kernel. What the test harness expects of a buggy variant (the
// invariants it breaks, the families that exercise it, its search effort and repro bound) is
// kept by the harness (Generators/VariantTargets.cs), not here.
namespace PropertySuite.Engine.Config;

/// <summary>A named variant with what it is for.</summary>
/// <param name="Name">The name used in repro files and on the command line.</param>
/// <param name="Correct">Whether every invariant must hold under it.</param>
/// <param name="Description">One line: what differs and where it comes from.</param>
/// <param name="Variant">The switches.</param>
/// <param name="Arch">A configuration the variant needs (null: any), e.g. arm64 for BBM.</param>
public sealed record NamedVariant(string Name, bool Correct, string Description, KernelVariant Variant, string? Arch = null);

public static class KernelVariants
{
    private static NamedVariant Correct(string name, string description, KernelVariant v, string? arch = null) =>
        new(name, true, description, v with { Name = name }, arch);

    private static NamedVariant Buggy(string name, string description, KernelVariant v, string? arch = null) =>
        new(name, false, description, v with { Name = name }, arch);

    private static readonly KernelVariant D = new();

    /// <summary>Every variant, in a fixed order; names are unique.</summary>
    public static IReadOnlyList<NamedVariant> All { get; } =
    [
        Correct("default", "today's kernel: HVO keeping one page (fresh head copy), bd225530a4c7 speculative get, synchronize_rcu around HVO", D),
        Correct("hvo-off", "hugetlb_free_vmemmap=off: no vmemmap optimization", D with { Hugetlb = new() { Hvo = HvoScheme.Off } }),
        Correct("hvo-v5.14", "v5.14-v5.17 HVO: two vmemmap pages kept, 2..V-1 remapped onto page 1", D with { Hugetlb = new() { Hvo = HvoScheme.TwoPagesKept, HvoAllocatesHeadCopy = false } }),
        Correct("hvo-no-head-copy", "v5.18-v6.0 HVO: vmemmap page 0 itself is the reuse page (no fresh head copy)", D with { Hugetlb = new() { HvoAllocatesHeadCopy = false } }),
        Correct("arm64-hvo-stop-machine", "arm64 with HVO (as v6.1-v6.2) and vmemmap entries changed by break-before-make under stop_machine",
            D with { Hugetlb = new() { Arm64Hvo = true }, Arm64 = new() { VmemmapUpdate = VmemmapUpdate.StopMachine } }, "arm64-4k-l4"),
        Buggy("hugetlb-folio-misaligned",
            "Muchun Song's condition 1 broken (S000): a HugeTLB folio starts half a vmemmap page off its natural alignment, so its first vmemmap page also holds a neighbour's struct pages",
            D with { Hugetlb = new() { HugetlbFolioMisaligned = true } }),
        Buggy("hvo-remaps-pmd-without-split",
            "Muchun Song's condition 3 broken (S000): HVO applies its remap to the PMD block covering the folio's vmemmap instead of splitting it, making the whole section's struct pages read-only",
            D with { Hugetlb = new() { HvoRemapsPmdWithoutSplit = true } }),
        Buggy("flush-dcache-page-on-tail",
            "S000 v1: arm64 flush_dcache_page clears PG_dcache_clean on the page it is given; on a fake head of an optimized folio that is a store through the read-only tail vmemmap",
            D with { Hugetlb = new() { Arm64Hvo = true, FlushDcachePageOnTail = true }, Arm64 = new() { VmemmapUpdate = VmemmapUpdate.StopMachine } }, "arm64-4k-l4"),
        Buggy("hvo-before-hugetlb-flag",
            "before d8f5f7e445f0: the vmemmap is optimized before the hugetlb flag is set; memory failure in that window handles an ordinary compound page and writes a read-only tail",
            D with { Hugetlb = new() { HvoBeforeHugetlbFlag = true } }),
        Buggy("restore-after-hugetlb-flag-cleared",
            "before 30a89adf872d: dissolve_free_hugetlb_folio calls hugetlb_vmemmap_restore_folio on a folio that remove_hugetlb_folio already made non-hugetlb (not optimized), firing its VM_WARN_ON",
            D with { Hugetlb = new() { RestoreAfterHugetlbFlagCleared = true } }),
        Buggy("broken-hvo-skips-last-pte",
            "meta-test only: HVO's walk ends one vmemmap page early, so the last tail page keeps its own frame",
            D with { Broken = new() { HvoSkipsLastPte = true } }),
        Buggy("broken-restore-leaks-partial-alloc",
            "meta-test only: when restore cannot allocate all V-1 pages it keeps (leaks) those it got",
            D with { Broken = new() { RestoreLeaksOnPartialAlloc = true } }),
        Buggy("broken-restore-skips-reset",
            "meta-test only: vmemmap_restore_pte copies the head page without reset_struct_pages, so restored pages begin with a head struct page",
            D with { Broken = new() { RestoreSkipsReset = true } }),
        Buggy("broken-free-huge-keeps-compound",
            "meta-test only: hugetlb_free_folio gives the frames back without resetting their struct pages, which still read as a compound page",
            D with { Broken = new() { FreeHugeFolioKeepsCompound = true } }),
        Buggy("broken-hvo-frees-before-flush",
            "meta-test only: vmemmap_remap_range hands the vmemmap pages it unmapped to free_vmemmap_page_list before flush_tlb_kernel_range, in the same step",
            D with { Broken = new() { HvoFreesBeforeFlush = true } }),
        Correct("arm64-hvo-bbml2", "arm64 with HVO and FEAT_BBM level 2 (BBML2_NOABORT): PMD splits written in place, PTE remaps by break-before-make under stop_machine",
            D with { Hugetlb = new() { Arm64Hvo = true }, Arm64 = new() { VmemmapUpdate = VmemmapUpdate.Bbml2 } }, "arm64-4k-l4"),
        Buggy("spec-get-pre-fix",
            "before bd225530a4c7: page_ref_add_unless without the fake-head check and no synchronize_rcu around HVO; a speculative get through a stale pointer writes the head's refcount through a read-only fake-head alias (S001, Matthew Wilcox / Yu Zhao)",
            D with { Hugetlb = new() { HvoSynchronizeRcu = false }, PageRef = new() { SpeculativeGet = SpeculativeGet.PreFix } }, "x86_64-4k-l4"),
        Buggy("spec-get-writable-tails",
            "the pre-fix primitive with tail vmemmap mapped RW (S001 option 1): the add through a fake head succeeds on the real head's refcount and is dropped again, correct only by coincidence",
            D with { Hugetlb = new() { HvoSynchronizeRcu = false, TailVmemmapWritable = true }, PageRef = new() { SpeculativeGet = SpeculativeGet.PreFix } }, "x86_64-4k-l4"),
        Buggy("muchun-drop-on-mismatch",
            "Muchun Song's proposal (S001): synchronize_rcu, RW tails, and get_page_unless_zero dropping the reference when the genuine head differs: the transient gain through a fake head remains",
            D with { Hugetlb = new() { TailVmemmapWritable = true }, PageRef = new() { SpeculativeGet = SpeculativeGet.DropOnMismatch } }, "x86_64-4k-l4"),
        Buggy("bd225530-without-synchronize-rcu",
            "bd225530a4c7's primitive without its synchronize_rcu before remapping: HVO can remap between the check and the atomic add, which then writes through a read-only alias",
            D with { Hugetlb = new() { HvoSynchronizeRcu = false } }, "x86_64-4k-l4"),
        Buggy("arm64-hvo-in-place",
            "arm64 HVO as enabled by 1e63ac088f20 (v6.1) and disabled by 060a2c92d1b6: vmemmap PMD split and PTE remaps written over live entries",
            D with { Hugetlb = new() { Arm64Hvo = true }, Arm64 = new() { VmemmapUpdate = VmemmapUpdate.InPlace } }, "arm64-4k-l4"),
        Buggy("arm64-hvo-fault-handler",
            "Nanyong Sun v3 (S001): break-before-make under init_mm.page_table_lock and a vmemmap fault handler waiting on that lock; an interrupt on the updating CPU that touches a struct page in the window deadlocks",
            D with { Hugetlb = new() { Arm64Hvo = true }, Arm64 = new() { VmemmapUpdate = VmemmapUpdate.BbmFaultHandler } }, "arm64-4k-l4"),
        Buggy("dissolve-ignores-surplus",
            "6.10-6.12 as released: dissolving a free surplus folio (one a failed restore put back) leaves surplus_huge_pages counting it; fixed in 2025 (mm/hugetlb: fix surplus pages in dissolve_free_huge_page())",
            D with { Hugetlb = new() { DissolveIgnoresSurplus = true } }),
        Buggy("broken-free-table-keeps-parent",
            "meta-test only: free_empty_tables frees a table page but leaves the parent entry pointing at it",
            D with { Broken = new() { FreeTableKeepsParentEntry = true } }),
        Buggy("broken-vfree-leaks-page",
            "meta-test only: vfree does not free the last backing page of an area",
            D with { Broken = new() { VfreeLeaksLastPage = true } }),
        Buggy("broken-vunmap-skips-last-pte",
            "meta-test only: vunmap leaves the last PTE of an area mapped and the page is freed",
            D with { Broken = new() { VunmapSkipsLastPte = true } }),
        Buggy("broken-vunmap-skips-flush",
            "meta-test only: vfree clears the PTEs and frees the pages without flush_tlb_kernel_range",
            D with { Broken = new() { VunmapSkipsFlush = true } }),
        Buggy("broken-synchronize-rcu-no-wait",
            "meta-test only: synchronize_rcu returns without waiting for readers that began before it",
            D with { Broken = new() { SynchronizeRcuNoWait = true } }),
        Buggy("broken-synchronize-rcu-local-readers",
            "meta-test only: synchronize_rcu waits only for the readers on its own CPU; its own list of readers to wait for is empty, so only the recorded history shows the broken guarantee",
            D with { Broken = new() { SynchronizeRcuWaitsForLocalReadersOnly = true } }),
        Buggy("broken-free-table-leaf-flush",
            "meta-test only: free_empty_tables frees a table page after a last-level flush_tlb_kernel_range, leaving arm64 walk caches pointing at it",
            D with { Broken = new() { FreeTableLeafOnlyFlush = true } }, "arm64"),
        Buggy("broken-bbm-skips-invalidate",
            "meta-test only: arm64 HVO under stop_machine makes each new vmemmap entry right after its break, without the TLB invalidation between them",
            D with { Hugetlb = new() { Arm64Hvo = true }, Arm64 = new() { VmemmapUpdate = VmemmapUpdate.StopMachine }, Broken = new() { BbmSkipsInvalidate = true } }, "arm64-4k-l4"),
        Correct("vmalloc-v8-policy", "v5.13-v5.17 huge vmalloc (the v8 series): every PAGE_KERNEL allocation of at least PMD_SIZE tries PMD mappings, no opt-in",
            D with { Vmalloc = new() { Huge = VmallocHugePolicy.PageKernelAtLeastPmd } }),
        Correct("nohugevmalloc", "boot with nohugevmalloc: vmap_allow_huge is false, vmalloc_huge maps small pages",
            D with { Vmalloc = new() { Huge = VmallocHugePolicy.Off } }),
        Buggy("broken-vmalloc-no-guard-page",
            "meta-test only: alloc_vmap_area reserves no guard page, so the next area is mapped right over the previous one's guard page",
            D with { VmallocBreakage = new() { NoGuardPage = true } }),
        Buggy("broken-huge-vmalloc-ignores-opt-in",
            "meta-test only: __vmalloc_node_range forgets the VM_ALLOW_HUGE_VMAP test, so a plain vmalloc of PMD_SIZE gets PMD leaves",
            D with { VmallocBreakage = new() { HugeIgnoresOptIn = true } }),
        Buggy("broken-pmd-free-pte-page-skips-flush",
            "meta-test only: pmd_free_pte_page frees the leftover PTE table under a new huge vmalloc PMD without invalidating the walk caches (arm64: no __flush_tlb_kernel_pgtable)",
            D with { VmallocBreakage = new() { PmdFreePtePageSkipsFlush = true } }, "arm64"),
        Buggy("broken-vmap-reuse-before-purge",
            "meta-test only: alloc_vmap_area hands out a lazily freed range before purge_vmap_area_lazy has flushed it, so a CPU still translates the new area through the old one's TLB entry",
            D with { VmallocBreakage = new() { ReuseBeforePurge = true } }),
        // Correct, not buggy: the purge joins the (under-sized) direct-map range and the area's own
        // lazily freed vmalloc range into one flush from the lowest to the highest address, and on
        // x86-64 and arm64 the direct map lies below the vmalloc range, so the one flush covers
        // every backing page anyway (DirectMapExamples shows the range and the clean run).
        Correct("vmalloc-v8-undersized-flush",
            "the v8 series before its fix (seed 003): vm_reset_perms steps by huge page but extends the direct-map range by PAGE_SIZE only; masked on x86-64 and arm64, where the purge's single flush up to the area's own vmalloc range covers the rest",
            D with { Vmalloc = new() { Huge = VmallocHugePolicy.PageKernelAtLeastPmd, DirectMapFlushPageSizeOnly = true } }, "x86_64-4k-l4"),
        Buggy("vmalloc-compound-backing",
            "5.18-rc3, between 559089e0a93d and 3b8000ae185c: huge vmalloc keeps each high-order backing allocation one compound page (__GFP_COMP), so its pages past the first are compound tails with refcount 0",
            D with { Vmalloc = new() { CompoundBacking = true } }),
        Buggy("huge-module-alloc",
            "the v5.13 policy on x86 as Rick Edgecombe describes it (seed 003): module_alloc is PAGE_KERNEL without VM_NO_HUGE_VMAP, so a module of PMD_SIZE gets huge pages, set_memory_ro leaves a large read-only direct-map block, and resetting it on vfree needs a split that can fail",
            D with { Vmalloc = new() { Huge = VmallocHugePolicy.PageKernelAtLeastPmd, HugeModuleAlloc = true } }, "x86_64-4k-l4"),
        Buggy("broken-set-memory-no-alias",
            "meta-test only: x86 set_memory_ro changes the vmalloc mapping but not the direct-map alias of its pages",
            D with { VmallocBreakage = new() { SetMemoryNoAlias = true } }, "x86_64-4k-l4"),
        Buggy("broken-reset-perms-skips-direct-map-flush",
            "meta-test only: vm_reset_perms flushes the lazily freed vmalloc ranges but not the direct-map range of the pages it then frees",
            D with { VmallocBreakage = new() { ResetPermsSkipsDirectMapFlush = true } }, "x86_64-4k-l4"),
        Buggy("broken-vunmap-range-overshoots",
            "meta-test only: vunmap_range_noflush clears one page past the end of its range, so a vmap user unmapping part of its buffer loses the next page's mapping too",
            D with { VmallocBreakage = new() { VunmapRangeOvershoots = true } }),
        Correct("nohugeiomap", "boot with nohugeiomap: ioremap_max_page_shift is PAGE_SHIFT, ioremap maps small pages only",
            D with { Vmalloc = new() { NoHugeIomap = true } }),
        Buggy("broken-huge-vmap-ignores-phys-alignment",
            "meta-test only: vmap_try_huge_pmd / vmap_try_huge_pud forget the physical-alignment test, so an ioremap of a virtually aligned but physically misaligned range gets a huge leaf",
            D with { VmallocBreakage = new() { HugeVmapIgnoresPhysAlignment = true } }),
        Correct("arm64-vmap-without-cont-pte", "arm64 before 06fc959fcff7 (v6.15 and earlier): vmap and vmalloc_huge use no contiguous PTEs; an allocation too small for a PMD gets small pages",
            D with { Vmalloc = new() { NoContPteVmap = true } }, "arm64"),
        Buggy("broken-cont-pte-vmap-ignores-phys-alignment",
            "meta-test only: arm64 arch_vmap_pte_range_map_size forgets the physical-alignment test, so an ioremap of a virtually but not physically CONT_PTE_SIZE-aligned range gets a contiguous run",
            D with { VmallocBreakage = new() { ContPteIgnoresPhysAlignment = true } }, "arm64"),
        // HugeTLB high-granularity mapping (Engine/Hgm): the series' two mapcount semantics
        // against HVO, its memory-failure motivation as a design, and the meta-test breakages.
        Correct("hgm-v2-hvo-off", "HGM v2 (Feb 2023) THP-like mapcounts with HVO off, the build-time choice v2 made: subpage _mapcounts are written in writable struct pages",
            D with { Hugetlb = new() { Hvo = HvoScheme.Off }, Hgm = new() { Mapcount = HgmMapcount.V2 } }),
        Correct("hgm-memory-failure-piece-only", "the HGM series' stated motivation as a design: memory failure in an HGM VMA unmaps only the poisoned PAGE_SIZE piece, splitting the mapping around it",
            D with { Hgm = new() { MemoryFailureUnmapsPieceOnly = true } }),
        Buggy("hgm-v2-hvo",
            "HGM v2's THP-like mapcounts with HVO on (Mike Kravetz's concern, S002): a high-granularity mapping writes the _mapcount of tail struct pages that HVO maps read-only",
            D with { Hgm = new() { Mapcount = HgmMapcount.V2 } }, "x86_64-4k-l4"),
        Buggy("broken-hgm-continue-skips-mapcount",
            "meta-test only: UFFDIO_CONTINUE installs its entry without hugetlb_add_file_rmap",
            D with { HgmBreakage = new() { ContinueSkipsMapcount = true } }, "x86_64-4k-l4"),
        Buggy("broken-hgm-collapse-skips-folio-get",
            "meta-test only: MADV_COLLAPSE drops the references of the entries it removes and takes none for the natural-size entry it installs",
            D with { HgmBreakage = new() { CollapseSkipsFolioGet = true } }, "x86_64-4k-l4"),
        Buggy("broken-hgm-continue-maps-next-subpage",
            "meta-test only: UFFDIO_CONTINUE maps the subpage one PAGE_SIZE past the one its address implies",
            D with { HgmBreakage = new() { ContinueMapsNextSubpage = true } }, "x86_64-4k-l4"),
        Buggy("broken-hgm-split-ignores-huge-alignment",
            "meta-test only: hugetlb_vm_op_split accepts any page-aligned address, so munmap/mprotect split a hugetlb VMA inside a huge page",
            D with { HgmBreakage = new() { SplitIgnoresHugeAlignment = true } }, "x86_64-4k-l4"),
        Buggy("broken-hgm-punch-hole-skips-unmap",
            "meta-test only: hole punch drops the folio from the page cache (freeing it) without unmapping it",
            D with { HgmBreakage = new() { PunchHoleSkipsUnmap = true } }, "x86_64-4k-l4"),
        Buggy("broken-hgm-collapse-frees-tables-before-flush",
            "meta-test only: MADV_COLLAPSE frees the page tables it unlinked before flush_tlb_range, so a CPU's walk cache still points at them",
            D with { HgmBreakage = new() { CollapseFreesTablesBeforeFlush = true } }, "x86_64-4k-l4"),
        Buggy("broken-hgm-collapse-skips-vma-lock",
            "meta-test only: MADV_COLLAPSE takes neither the hugetlb VMA lock nor i_mmap_rwsem for write, so a concurrent HGM walk descends into a table it frees",
            D with { HgmBreakage = new() { CollapseSkipsVmaLock = true } }, "x86_64-4k-l4"),
        Correct("hotplug-vmemmap-tables-kept", "S004 V6 (option 3): vmemmap_free unmaps and frees the memmap but never frees page-table pages; emptied vmemmap tables stay until the range is added again",
            D with { Hotplug = new() { VmemmapTablesKept = true } }),
        Buggy("ptdump-without-get-online-mems",
            "before \"arm64/mm: Hold memory hotplug lock while walking for kernel page table dump\" (2020) and \"mm/ptdump: take the memory hotplug lock inside ptdump_walk_pgd()\" (2025): ptdump walks init_mm without get_online_mems, so hot-remove frees a table the walk holds",
            D with { Hotplug = new() { PtdumpWithoutGetOnlineMems = true } }, "arm64-4k-l4"),
        Buggy("arm64-vmemmap-pmd-for-subsections",
            "before \"arm64: mm: Populate vmemmap at the page level if not section aligned\" (2025): the memmap of a ZONE_DEVICE sub-section range is mapped with its section's PMD block, which other memremap_pages ranges of the section then share, and unmap_hotplug_pmd_range clears whole",
            D with { Hotplug = new() { Arm64VmemmapPmdForSubsections = true } }, "arm64-4k-l4"),
        Buggy("broken-remove-keeps-linear-map",
            "meta-test only: arch_remove_memory tears down the vmemmap but not the linear map of the removed block",
            D with { HotplugBreakage = new() { RemoveKeepsLinearMap = true } }),
        Buggy("broken-offline-keeps-section-online",
            "meta-test only: offline_pages takes the block's pages out of the buddy but leaves the section marked online",
            D with { HotplugBreakage = new() { OfflineKeepsSectionOnline = true } }),
        Buggy("broken-remove-skips-mem-hotplug-begin",
            "meta-test only: remove_memory tears down without mem_hotplug_begin, so ptdump's get_online_mems does not keep the tables it walks",
            D with { HotplugBreakage = new() { RemoveSkipsMemHotplugBegin = true } }, "x86_64-4k-l4"),
        Buggy("broken-subsection-vmemmap-pmd",
            "meta-test only: memremap_pages maps a sub-section's memmap with its section's PMD block on x86-64 (whose teardown keeps a partly used block), so two device ranges share a vmemmap leaf",
            D with { HotplugBreakage = new() { SubsectionVmemmapPmd = true } }, "x86_64-4k-l4"),
    ];

    /// <summary>The name of today's correct kernel, the variant a repro without a variant line runs.</summary>
    public const string DefaultName = "default";

    /// <summary>Looks a variant up by name.</summary>
    /// <exception cref="ConfigException">Unknown name; the message lists the known names.</exception>
    public static NamedVariant ByName(string name) =>
        All.FirstOrDefault(v => v.Name == name)
        ?? throw new ConfigException($"unknown variant '{name}': known are {string.Join(", ", All.Select(v => v.Name))}");
}
