// The kernel variant: which historical fixes and design choices are in force, one options
// record per mechanism, and apart from them the deliberate breakages of the meta-tests.
//
// Every historical bug or proposal (named after its commit or thread) that falls inside a
// modelled mechanism is one switch of that mechanism's record; the default of every switch is
// today's correct kernel. Breakage holds what is not history: engine paths broken on purpose so
// that an invariant can be shown to fail. Validate refuses combinations that do not exist (a
// scheme and a feature of different eras, an arm64 strategy on x86) by name, before boot. Each
// mechanism receives its own record when it is built and chooses its behaviour from it there.
namespace PropertySuite.Engine.Config;

/// <summary>HugeTLB vmemmap optimization scheme.</summary>
public enum HvoScheme
{
    /// <summary>HVO not configured or disabled (hugetlb_free_vmemmap=off).</summary>
    Off,
    /// <summary>v5.14-v5.17: vmemmap pages 0 and 1 kept, 2..V-1 remapped RO onto page 1.</summary>
    TwoPagesKept,
    /// <summary>v5.18 onwards: page 0 kept (as a fresh head copy), 1..V-1 remapped RO onto it.</summary>
    OnePageKept,
}

/// <summary>How vmemmap entries of live mappings are changed.</summary>
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

/// <summary>The speculative-get primitive page_ref_add_unless.</summary>
public enum SpeculativeGet
{
    /// <summary>Before bd225530a4c7: atomic_add_unless through whatever the pointer maps.</summary>
    PreFix,
    /// <summary>bd225530a4c7: inside RCU; skip fake heads; no write when the value equals u.</summary>
    Bd225530,
    /// <summary>Muchun Song's proposal: after a successful add, drop it if the genuine head differs.</summary>
    DropOnMismatch,
}

/// <summary>mm/hugetlb.c, mm/hugetlb_vmemmap.c and arch/arm64/mm/flush.c: HVO and the folio life cycle.</summary>
public sealed record HugetlbOptions
{
    public HvoScheme Hvo { get; init; } = HvoScheme.OnePageKept;
    /// <summary>arm64 selects ARCH_WANT_OPTIMIZE_HUGETLB_VMEMMAP (v6.1-v6.2, 1e63ac088f20; disabled
    /// by 060a2c92d1b6). Off in today's kernel: HVO does not run on arm64 unless this is set.</summary>
    public bool Arm64Hvo { get; init; }
    /// <summary>Joao Martins 2022: allocate a fresh head vmemmap page instead of reusing page 0.</summary>
    public bool HvoAllocatesHeadCopy { get; init; } = true;
    /// <summary>bd225530a4c7: synchronize_rcu() before optimize and restore.</summary>
    public bool HvoSynchronizeRcu { get; init; } = true;
    /// <summary>Muchun Song's alternative in the speculative-get thread: tail vmemmap mapped RW instead of RO.</summary>
    public bool TailVmemmapWritable { get; init; }
    /// <summary>d8f5f7e445f0 reverted: optimize before the hugetlb flag is set.</summary>
    public bool HvoBeforeHugetlbFlag { get; init; }
    /// <summary>30a89adf872d reverted: restore called after the hugetlb flag was cleared.</summary>
    public bool RestoreAfterHugetlbFlagCleared { get; init; }
    /// <summary>Muchun Song's condition 1 broken: folios allocated only half-aligned.</summary>
    public bool HugetlbFolioMisaligned { get; init; }
    /// <summary>Muchun Song's condition 3 broken: HVO remaps inside a vmemmap PMD block without splitting it.</summary>
    public bool HvoRemapsPmdWithoutSplit { get; init; }
    /// <summary>6.10-6.12 as released: dissolve_free_hugetlb_folio removes a free surplus folio
    /// without adjusting surplus_huge_pages (fixed in 2025 by "mm/hugetlb: fix surplus pages in
    /// dissolve_free_huge_page()").</summary>
    public bool DissolveIgnoresSurplus { get; init; }
    /// <summary>The first arm64 HVO enablement thread's v1: flush_dcache_page clears PG_dcache_clean on the tail, not the head.</summary>
    public bool FlushDcachePageOnTail { get; init; }

    /// <exception cref="ConfigException">A combination that never existed.</exception>
    public void Validate(ArchConfig arch)
    {
        if (Hvo == HvoScheme.TwoPagesKept && HvoAllocatesHeadCopy)
            throw new ConfigException("hugetlb: the two-page HVO scheme (v5.14-v5.17) predates the fresh head copy (2022): set HvoAllocatesHeadCopy false");
        if (Hvo == HvoScheme.Off && (HvoBeforeHugetlbFlag || RestoreAfterHugetlbFlagCleared || HvoRemapsPmdWithoutSplit || TailVmemmapWritable))
            throw new ConfigException("hugetlb: an HVO ordering or mapping variant needs HVO (Hvo is Off)");
        if (arch.Arch != Arch.Arm64 && (Arm64Hvo || FlushDcachePageOnTail))
            throw new ConfigException($"hugetlb: Arm64Hvo and FlushDcachePageOnTail are arm64 behaviours, not {arch.Name}'s");
    }
}

/// <summary>include/linux/page_ref.h: the speculative-get primitive.</summary>
public sealed record PageRefOptions
{
    public SpeculativeGet SpeculativeGet { get; init; } = SpeculativeGet.Bd225530;
}

/// <summary>arch/arm64/mm/mmu.c: how live vmemmap entries are changed.</summary>
public sealed record Arm64MmuOptions
{
    public VmemmapUpdate VmemmapUpdate { get; init; } = VmemmapUpdate.InPlace;

    /// <exception cref="ConfigException">An arm64 strategy on another architecture.</exception>
    public void Validate(ArchConfig arch)
    {
        if (arch.Arch != Arch.Arm64 && VmemmapUpdate != VmemmapUpdate.InPlace)
            throw new ConfigException($"arm64: vmemmap update strategy {VmemmapUpdate} is an arm64 break-before-make strategy; {arch.Name} updates in place");
    }
}

/// <summary>Engine paths broken on purpose, each so that one invariant can be shown to fail (a
/// meta-test). None is kernel history.</summary>
public sealed record Breakage
{
    /// <summary>Hot-remove frees an emptied table page but leaves the parent entry pointing at it
    /// (arm64 free_empty_tables, x86 free_pte_table / free_pmd_table).</summary>
    public bool FreeTableKeepsParentEntry { get; init; }
    /// <summary>arm64 hot-remove's free_empty_tables invalidates with flush_tlb_kernel_range (last
    /// level only) instead of __flush_tlb_kernel_pgtable before freeing a table page.</summary>
    public bool FreeTableLeafOnlyFlush { get; init; }
    /// <summary>arm64 break-before-make under stop_machine makes the new entry without the TLB
    /// invalidation after the break.</summary>
    public bool BbmSkipsInvalidate { get; init; }
    /// <summary>vfree forgets to free the last backing page of an area.</summary>
    public bool VfreeLeaksLastPage { get; init; }
    /// <summary>vunmap clears every PTE but the last before the pages are freed.</summary>
    public bool VunmapSkipsLastPte { get; init; }
    /// <summary>vunmap does not flush the TLB.</summary>
    public bool VunmapSkipsFlush { get; init; }
    /// <summary>synchronize_rcu returns without waiting for pre-existing readers.</summary>
    public bool SynchronizeRcuNoWait { get; init; }
    /// <summary>synchronize_rcu waits only for the readers on its own CPU.</summary>
    public bool SynchronizeRcuWaitsForLocalReadersOnly { get; init; }
    /// <summary>HVO's walk ends one vmemmap page early: the last tail page keeps its own frame.</summary>
    public bool HvoSkipsLastPte { get; init; }
    /// <summary>alloc_vmemmap_page_list does not free the pages it got when a later one fails.</summary>
    public bool RestoreLeaksOnPartialAlloc { get; init; }
    /// <summary>vmemmap_remap_range frees the pages it unmapped before flush_tlb_kernel_range
    /// instead of after it (both inside one step).</summary>
    public bool HvoFreesBeforeFlush { get; init; }
    /// <summary>hugetlb_vmemmap_optimize_folios leaves out the flush_tlb_all between splitting
    /// every folio's vmemmap PMDs and remapping their PTEs: a CPU that cached a PMD block entry
    /// before the split keeps it while the PTEs under it change their output.</summary>
    public bool HvoBatchSplitSkipsFlush { get; init; }
    /// <summary>hugetlb_free_folio frees the frames without free_pages_prepare's reset of the
    /// compound metadata: the freed struct pages still read as a head and its tails.</summary>
    public bool FreeHugeFolioKeepsCompound { get; init; }
    /// <summary>vmemmap_restore_pte copies the head page but skips reset_struct_pages.</summary>
    public bool RestoreSkipsReset { get; init; }
    /// <summary>truncate_inode_pages, after folio_put freed a folio, hands it to __free_one_page a
    /// second time, past free_pages_prepare's checks: the buddy's lists hold the frame twice.</summary>
    public bool TruncateFreesTwice { get; init; }
    /// <summary>free_huge_folio frees a surplus folio to the buddy without the surplus_huge_pages
    /// decrement (remove_hugetlb_folio with adjust_surplus false).</summary>
    public bool FreeSurplusSkipsDecrement { get; init; }
    /// <summary>The PFN walker (isolate_migratepages_block's peek) returns without the put_page of
    /// the reference its get_page_unless_zero took.</summary>
    public bool PfnWalkSkipsPut { get; init; }
    /// <summary>The engine's HUGETLB_VMEMMAP_RESERVE_PAGES is one more than the scheme's: HVO keeps
    /// one vmemmap page too many per folio (and remaps the tails onto the wrong page).</summary>
    public bool HvoReserveOffByOne { get; init; }
    /// <summary>__update_and_free_hugetlb_folio hands an optimized folio to the buddy without
    /// hugetlb_vmemmap_restore_folio: its tails' vmemmap pages still alias the head's, read-only,
    /// after the frames they describe left HugeTLB.</summary>
    public bool FreeSkipsVmemmapRestore { get; init; }

    /// <exception cref="ConfigException">A breakage of a path the variant does not take.</exception>
    public void Validate(KernelVariant v)
    {
        if (BbmSkipsInvalidate && v.Arm64.VmemmapUpdate != VmemmapUpdate.StopMachine)
            throw new ConfigException("breakage BbmSkipsInvalidate breaks the stop_machine strategy: set Arm64.VmemmapUpdate = StopMachine");
    }
}

/// <summary>A kernel variant: every switch defaults to today's correct kernel.</summary>
public sealed record KernelVariant
{
    public string Name { get; init; } = "default";

    public HugetlbOptions Hugetlb { get; init; } = new();
    public PageRefOptions PageRef { get; init; } = new();
    public Arm64MmuOptions Arm64 { get; init; } = new();
    /// <summary>Deliberate meta-test breakages (not history).</summary>
    public Breakage Broken { get; init; } = new();

    /// <summary>Checks every mechanism's options against each other and the architecture.</summary>
    /// <exception cref="ConfigException">The first impossible combination, named.</exception>
    public void Validate(ArchConfig arch)
    {
        try
        {
            Hugetlb.Validate(arch);
            Arm64.Validate(arch);
            Broken.Validate(this);
            Vmalloc.Validate();
            Hotplug.Validate(arch);
        }
        catch (ConfigException e)
        {
            throw new ConfigException($"variant '{Name}': {e.Message}");
        }
    }

    /// <summary>The huge-vmalloc switches (Engine/Config/VmallocOptions.cs).</summary>
    public VmallocOptions Vmalloc { get; init; } = new();
    /// <summary>The huge-vmalloc meta-test breakages (Engine/Config/VmallocOptions.cs).</summary>
    public VmallocBreakage VmallocBreakage { get; init; } = new();
    /// <summary>The HGM design switches (Engine/Config/HgmOptions.cs).</summary>
    public HgmOptions Hgm { get; init; } = new();
    /// <summary>The HGM meta-test breakages (Engine/Config/HgmOptions.cs).</summary>
    public HgmBreakage HgmBreakage { get; init; } = new();

    /// <summary>The memory hot-plug switches (Engine/Config/HotplugOptions.cs).</summary>
    public HotplugOptions Hotplug { get; init; } = new();
    /// <summary>The memory hot-plug meta-test breakages (Engine/Config/HotplugOptions.cs).</summary>
    public HotplugBreakage HotplugBreakage { get; init; } = new();

    public override string ToString() => Name;
}
