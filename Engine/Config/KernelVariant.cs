// The kernel variant: which historical fixes and design choices are in force.
//
// Every historical bug or proposal of KERNEL-MODEL.md §8 that falls inside a modelled mechanism
// is one named switch here; the default value of every switch is today's correct kernel.
// Switches whose name starts with "Broken" are not history: they are deliberately broken engine
// paths that exist only so that a core invariant can be shown to fail (a meta-test).
namespace PropertySuite.Engine.Config;

/// <summary>HugeTLB vmemmap optimization scheme (KERNEL-MODEL.md §2.1).</summary>
public enum HvoScheme
{
    /// <summary>HVO not configured or disabled (hugetlb_free_vmemmap=off).</summary>
    Off,
    /// <summary>v5.14-v5.17: vmemmap pages 0 and 1 kept, 2..V-1 remapped RO onto page 1.</summary>
    TwoPagesKept,
    /// <summary>v5.18 onwards: page 0 kept (as a fresh head copy), 1..V-1 remapped RO onto it.</summary>
    OnePageKept,
}

/// <summary>How vmemmap entries of live mappings are changed (KERNEL-MODEL.md §4).</summary>
public enum VmemmapUpdate
{
    /// <summary>set_pte_at / pmd_populate over the live entry (x86; arm64 v6.1-v6.2, a BBM violation).</summary>
    InPlace,
    /// <summary>Nanyong Sun v3: clear, flush, set under init_mm.page_table_lock; vmemmap
    /// translation faults wait for that lock in the fault handler.</summary>
    BbmFaultHandler,
    /// <summary>stop_machine() around each break-before-make sequence.</summary>
    StopMachine,
    /// <summary>FEAT_BBM level 2 (BBML2_NOABORT): block splits in place, PTE remaps still need BBM
    /// (done under stop_machine).</summary>
    Bbml2,
}

/// <summary>The speculative-get primitive page_ref_add_unless (KERNEL-MODEL.md §3).</summary>
public enum SpeculativeGet
{
    /// <summary>Before bd225530a4c7: atomic_add_unless through whatever the pointer maps.</summary>
    PreFix,
    /// <summary>bd225530a4c7: inside RCU; skip fake heads; no write when the value equals u.</summary>
    Bd225530,
    /// <summary>Muchun Song's proposal: after a successful add, drop it if the genuine head differs.</summary>
    DropOnMismatch,
}

/// <summary>A kernel variant: every switch defaults to today's correct kernel.</summary>
public sealed record KernelVariant
{
    public string Name { get; init; } = "default";

    // ---- HugeTLB and HVO (mm/hugetlb.c, mm/hugetlb_vmemmap.c) ----
    public HvoScheme Hvo { get; init; } = HvoScheme.OnePageKept;
    /// <summary>arm64 selects ARCH_WANT_OPTIMIZE_HUGETLB_VMEMMAP (v6.1-v6.2, 1e63ac088f20; disabled
    /// by 060a2c92d1b6). Off in today's kernel: HVO does not run on arm64 unless this is set.</summary>
    public bool Arm64Hvo { get; init; }
    /// <summary>Joao Martins 2022: allocate a fresh head vmemmap page instead of reusing page 0.</summary>
    public bool HvoAllocatesHeadCopy { get; init; } = true;
    /// <summary>d8f5f7e445f0 reverted: optimize before the hugetlb flag is set (§8 #6).</summary>
    public bool HvoBeforeHugetlbFlag { get; init; }
    /// <summary>30a89adf872d reverted: restore called after the hugetlb flag was cleared (§8 #7).</summary>
    public bool RestoreAfterHugetlbFlagCleared { get; init; }
    /// <summary>Broken alignment: gigantic/huge folios allocated only half-aligned (Muchun's condition 1).</summary>
    public bool HugetlbFolioMisaligned { get; init; }
    /// <summary>HVO remaps inside a vmemmap PMD block without splitting it (Muchun's condition 3).</summary>
    public bool HvoRemapsPmdWithoutSplit { get; init; }
    /// <summary>6.10-6.12 as released: dissolve_free_hugetlb_folio removes a free surplus folio
    /// without adjusting surplus_huge_pages (fixed in 2025 by "mm/hugetlb: fix surplus pages in
    /// dissolve_free_huge_page()").</summary>
    public bool DissolveIgnoresSurplus { get; init; }
    /// <summary>S000 hazard: flush_dcache_page clears PG_dcache_clean on the tail, not the head.</summary>
    public bool FlushDcachePageOnTail { get; init; }

    // ---- Speculative references and arm64 BBM (S001) ----
    public SpeculativeGet SpeculativeGet { get; init; } = SpeculativeGet.Bd225530;
    /// <summary>bd225530a4c7: synchronize_rcu() before optimize and restore.</summary>
    public bool HvoSynchronizeRcu { get; init; } = true;
    /// <summary>Muchun Song's alternative: tail vmemmap mapped RW instead of RO.</summary>
    public bool TailVmemmapWritable { get; init; }
    public VmemmapUpdate VmemmapUpdate { get; init; } = VmemmapUpdate.InPlace;

    // ---- Deliberately broken core paths (meta-tests of the core invariants) ----
    /// <summary>free_empty_tables frees a table page but leaves the parent entry pointing at it.</summary>
    public bool BrokenFreeTableKeepsParentEntry { get; init; }
    /// <summary>vfree forgets to free the last backing page of an area.</summary>
    public bool BrokenVfreeLeaksLastPage { get; init; }
    /// <summary>vunmap clears every PTE but the last before the pages are freed.</summary>
    public bool BrokenVunmapSkipsLastPte { get; init; }
    /// <summary>vunmap does not flush the TLB.</summary>
    public bool BrokenVunmapSkipsFlush { get; init; }
    /// <summary>arm64 break-before-make under stop_machine makes the new entry without the TLB
    /// invalidation after the break.</summary>
    public bool BrokenBbmSkipsInvalidate { get; init; }
    /// <summary>synchronize_rcu returns without waiting for pre-existing readers.</summary>
    public bool BrokenSynchronizeRcuNoWait { get; init; }
    /// <summary>HVO's walk ends one vmemmap page early: the last tail page keeps its own frame.</summary>
    public bool BrokenHvoSkipsLastPte { get; init; }
    /// <summary>alloc_vmemmap_page_list does not free the pages it got when a later one fails.</summary>
    public bool BrokenRestoreLeaksOnPartialAlloc { get; init; }
    /// <summary>vmemmap_restore_pte copies the head page but skips reset_struct_pages.</summary>
    public bool BrokenRestoreSkipsReset { get; init; }

    /// <summary>The huge-vmalloc switches (Engine/Config/VmallocOptions.cs).</summary>
    public VmallocOptions Vmalloc { get; init; } = new();
    /// <summary>The huge-vmalloc meta-test breakages (Engine/Config/VmallocOptions.cs).</summary>
    public VmallocBreakage VmallocBreakage { get; init; } = new();

    public override string ToString() => Name;
}
