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
        new("vmalloc", "SIZE", "vN", "vmalloc(SIZE): a vmap area with guard page, backed by order-0 pages, mapped in init_mm"),
        new("vmalloc_huge", "SIZE", "vN", "vmalloc_huge(SIZE): as vmalloc with VM_ALLOW_HUGE_VMAP, PMD/PUD leaves where the policy allows"),
        new("vfree", "vN", "", "vfree: unmap the area, free its pages, lazily purge the vmap area"),
        new("read", "vN OFFSET", "", "a kernel load from the area at OFFSET through this CPU's TLB (fills it)"),
        new("vm_unmap_aliases", "", "", "vm_unmap_aliases: purge every lazily freed vmap area now, with one TLB flush"),
        new("free_empty_tables", "", "", "arm64 free_empty_tables over [VMALLOC_START, VMALLOC_END), as hot-remove calls it"),
        new("fail_alloc", "AFTER COUNT", "", "after AFTER more successful page allocations, the next COUNT fail with ENOMEM (fail_page_alloc)"),
        new("rcu_reader", "STEPS", "", "rcu_read_lock, STEPS steps inside the read-side section, rcu_read_unlock"),
        new("synchronize_rcu", "", "", "synchronize_rcu: wait for every read-side section begun before it"),
        new("filemap_add", "PAGES", "pN", "a file of PAGES order-0 page-cache folios (filemap_add_folio)"),
        new("truncate", "pN", "", "truncate the file: remove its folios from the page cache and free them"),
        new("spec_lookup", "pN INDEX", "", "filemap_get_entry + folio_try_get_rcu for INDEX, re-validated with xa_load, step by step"),
        new("pfn_walk", "pN INDEX", "", "a compaction-style PFN walker on the PFN page INDEX of the file has when it starts"),
        new("compact_pfn", "PFN", "", "the same walker at an absolute PFN (isolate_migratepages_block)"),
        new("read_page", "PFN", "", "a kernel read of the struct page of PFN through this CPU's TLB"),
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
