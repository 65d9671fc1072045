// `ops`: every verb of the repro language with its arguments, what it binds and what it does.
// The parser's table (Engine/Scenario/OpCatalog.cs) says which verbs exist; this table says how
// to write them. A test (CliTests.OpsListsEveryVerbOfTheParser) fails when a verb is missing
// here, so a new operation is documented when it is added. docs/repro-language.md is the prose.
namespace PropertySuite.Cli;

/// <summary>One verb: its arguments as a repro line writes them, the handle kind it binds, and a
/// one-line description.</summary>
public sealed record VerbHelp(string Verb, string Arguments, string Binds, string Description);

public static class OpsCatalogue
{
    public static IReadOnlyList<VerbHelp> All { get; } =
    [
        new("module_alloc", "SIZE", "vN", "module_alloc(SIZE): a PAGE_KERNEL vmap area with VM_FLUSH_RESET_PERMS, huge only where the era's policy lets modules be"),
        new("set_vm_flush_reset_perms", "vN", "", "set_vm_flush_reset_perms: vfree of the area resets its direct-map aliases before freeing the pages"),
        new("set_memory_ro", "vN OFFSET PAGES", "", "set_memory_ro on PAGES pages of the area from OFFSET (x86: mirrored to the direct-map alias, splitting blocks)"),
        new("set_memory_rw", "vN OFFSET PAGES", "", "set_memory_rw on PAGES pages of the area from OFFSET"),
        new("set_memory_x", "vN OFFSET PAGES", "", "set_memory_x on PAGES pages of the area from OFFSET (never mirrored to the direct map)"),
        new("set_memory_nx", "vN OFFSET PAGES", "", "set_memory_nx on PAGES pages of the area from OFFSET"),
        new("vmap", "PAGES", "vN", "a vmap user: alloc_page PAGES times, vmap(pages, PAGES, VM_MAP, PAGE_KERNEL) with small PTEs; 0 pages is the kernel's NULL"),
        new("vunmap", "vN", "", "vunmap of a vmap'd area (lazy purge), then the caller frees its pages"),
        new("vunmap_range", "vN OFFSET PAGES", "", "the owner unmaps PAGES pages from OFFSET and flushes them; a huge leaf it cuts is cleared whole with the kernel's WARN"),
        new("vunmap_range_noflush", "vN OFFSET PAGES", "", "as vunmap_range, the TLB flush left to the caller"),
        new("ioremap", "PHYSOFF SIZE", "vN", "ioremap_prot of SIZE bytes of device memory at PHYSOFF above RAM: PMD/PUD leaves where VA and PA align; 0 bytes is the kernel's NULL"),
        new("iounmap", "vN", "", "iounmap of an ioremap area (its range purged lazily)"),
        new("vmalloc_to_page", "vN OFFSET", "", "the lockless vmalloc_to_page walk of init_mm for the area's page at OFFSET, one table per step (start it to interleave)"),
        new("read_direct_map", "vN OFFSET", "", "a kernel load through the direct-map alias of the area's page at OFFSET"),
        new("hgm_mmap", "SIZE PAGES [anon]", "aN", "mmap of a hugetlbfs file of PAGES HugeTLB pages of SIZE (MAP_SHARED) in a new mm"),
        new("hgm_touch", "aN OFFSET [write]", "", "a user access at OFFSET: hugetlb_fault maps the natural size if nothing maps it"),
        new("madvise_split", "aN OFFSET LENGTH", "", "MADV_SPLIT: sets VM_HUGETLB_HGM on the range (maps nothing by itself)"),
        new("uffd_register", "aN OFFSET LENGTH minor|wp", "", "userfaultfd registration of the range in minor or write-protect mode"),
        new("uffdio_continue", "aN OFFSET LENGTH", "", "UFFDIO_CONTINUE: map PAGE_SIZE-aligned pieces of a page already in the page cache"),
        new("madvise_collapse", "aN OFFSET LENGTH", "", "MADV_COLLAPSE: collapse high-granularity mappings back to the natural size"),
        new("hgm_munmap", "aN OFFSET LENGTH", "", "munmap of part of the VMA (EINVAL when the split falls inside a huge page)"),
        new("hgm_mprotect", "aN OFFSET LENGTH ro|rw", "", "mprotect of part of the VMA, with the hugetlb split alignment rules"),
        new("hgm_fork", "aN", "aN", "fork: copy_hugetlb_page_range into a child mm, at the same granularity"),
        new("hgm_alias", "aN", "aN", "a second mapping of the same hugetlbfs file in another mm"),
        new("hgm_exit", "aN", "", "exit of the mm: unmap everything, free its page tables, drop it"),
        new("hgm_walk", "aN OFFSET", "", "an HGM page-table walk (hugetlb_hgm_walk) as a task, one level per step"),
        new("hgm_punch_hole", "aN INDEX", "", "fallocate(PUNCH_HOLE) of file page INDEX: unmap it everywhere, drop it from the page cache"),
        new("hgm_truncate", "aN PAGES", "", "truncate the file to PAGES huge pages"),
        new("hgm_memory_failure", "aN INDEX SUBPAGE", "", "memory failure on one base page SUBPAGE of file page INDEX"),
        new("add_memory", "PHYS SIZE [memmap_on_memory]", "", "add_memory: arch_add_memory of [PHYS, PHYS+SIZE) in the hot-plug range (vmemmap and linear map); memmap_on_memory: MHP_MEMMAP_ON_MEMORY, each block's memmap in its first pages where supported"),
        new("online_pages", "PHYS SIZE", "", "online_pages: the block's pages to the buddy"),
        new("offline_pages", "PHYS SIZE", "", "offline_pages: isolate, dissolve free HugeTLB folios, EBUSY for what cannot move"),
        new("remove_memory", "PHYS SIZE", "", "remove_memory: arch_remove_memory, the two-pass teardown of vmemmap and linear map"),
        new("memremap_pages", "PHYS SIZE", "", "memremap_pages: device memory at sub-section (2M) granularity, vmemmap only"),
        new("memunmap_pages", "PHYS SIZE", "", "memunmap_pages: tear the device memory's vmemmap down again"),
        new("ptdump", "[linear|vmemmap PHYS SIZE]", "", "ptdump_walk_pgd as a walker task, holding the tables it walks: all of init_mm, or only the linear map / vmemmap of [PHYS, PHYS+SIZE)"),
        new("online_pfn_walk", "PFN", "", "a PFN walker: pfn_to_online_page, then PageLRU / get_page_unless_zero / put_page on the struct page (no lock holds the answer)"),
        new("vmalloc", "SIZE", "vN", "vmalloc(SIZE): a vmap area with guard page, backed by order-0 pages, mapped in init_mm"),
        new("vmalloc_huge", "SIZE", "vN", "vmalloc_huge(SIZE): as vmalloc with VM_ALLOW_HUGE_VMAP, PMD/PUD leaves where the policy allows"),
        new("vfree", "vN", "", "vfree: unmap the area, free its pages, lazily purge the vmap area"),
        new("read", "vN OFFSET", "", "a kernel load from the area at OFFSET through this CPU's TLB (fills it)"),
        new("vm_unmap_aliases", "", "", "vm_unmap_aliases: purge every lazily freed vmap area now, with one TLB flush"),
        new("free_empty_tables", "", "", "arm64 free_empty_tables over [VMALLOC_START, VMALLOC_END): not a kernel path (hot-remove calls it on the linear map and vmemmap only); engine scenarios only, never generated"),
        new("fail_alloc", "AFTER COUNT", "", "after AFTER more successful page allocations, the next COUNT fail with ENOMEM (fail_page_alloc)"),
        new("rcu_reader", "STEPS", "", "rcu_read_lock, STEPS steps inside the read-side section, rcu_read_unlock"),
        new("synchronize_rcu", "", "", "synchronize_rcu: wait for every read-side section begun before it"),
        new("filemap_add", "PAGES", "pN", "a file of PAGES order-0 page-cache folios (filemap_add_folio)"),
        new("truncate", "pN", "", "truncate the file: remove its folios from the page cache and free them"),
        new("spec_lookup", "pN INDEX", "", "filemap_get_entry + folio_try_get_rcu for INDEX, re-validated with xa_load, step by step"),
        new("pfn_walk", "pN INDEX", "", "a compaction-style PFN walker on the PFN page INDEX of the file has when it starts"),
        new("compact_pfn", "PFN", "", "the same walker at an absolute PFN (isolate_migratepages_block)"),
        new("read_page", "PFN", "", "a kernel read of the struct page of PFN through this CPU's TLB"),
        new("prefetch_page", "PFN", "", "a speculative table walk of the struct page of PFN: caches the current translation even beside an entry the TLB holds"),
        new("hugetlb_pool", "SIZE NR", "", "set_max_huge_pages: grow or shrink the pool of SIZE folios to NR"),
        new("hugetlb_alloc", "SIZE", "fN", "allocate a HugeTLB folio of SIZE from the pool (a fault on a hugetlbfs mapping)"),
        new("hugetlb_free", "fN", "", "folio_put of the folio: free_huge_folio back to the pool"),
        new("dissolve", "fN", "", "dissolve_free_hugetlb_folio: restore the vmemmap and give the folio back to the buddy"),
        new("memory_failure", "fN SUBPAGE", "", "memory_failure on subpage SUBPAGE of the folio (hwpoison)"),
        new("flush_dcache_page", "fN SUBPAGE", "", "arm64 flush_dcache_page on subpage SUBPAGE of the folio"),
        new("read_folio_page", "fN SUBPAGE", "", "a kernel read of the struct page of subpage SUBPAGE (page_count / PageHuge) through the TLB"),
        new("hvo_knob", "on|off", "", "vm.hugetlb_optimize_vmemmap: affects later optimizations only"),
    ];

    /// <summary>The line forms that are not verbs, as `ops` prints them after the verbs.</summary>
    public static IReadOnlyList<(string Form, string Description)> Forms { get; } =
    [
        ("[cpuN:] [start] [H =] VERB ARGS", "run VERB on cpuN (default cpu0); `start` leaves it as a task that `step` advances; `H =` binds the result"),
        ("step cpuN [COUNT]", "advance the task on top of cpuN by COUNT steps (default 1, at most 10000)"),
        ("step cpuN to ACTION", "step until that task has taken the step named ACTION (e.g. folio_try_get_rcu), then stop"),
        ("step cpuN until done", "step until that task has finished"),
        ("irq cpuN VERB ARGS", "raise an interrupt on cpuN whose handler performs VERB"),
        ("expect INVARIANT at STEP | expect none", "the outcome a replay checks (last line)"),
    ];
}
