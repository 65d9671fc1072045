// The switches of memory hot-plug (Engine/Hotplug): how the arm64 teardown frees page tables,
// whether ptdump excludes hot-remove, how device-memory subsections get their vmemmap, and the
// deliberately broken paths the hot-plug invariants' meta-tests use. Defaults are today's kernel.
//
// History the switches stand for:
// - Seed S004 (Anshuman Khandual, "arm64/mm: Enable memory hot remove", V6, Jul 2019): option 3,
//   vmemmap_free() does not call free_empty_tables(), so emptied vmemmap tables stay until the
//   range is added again (VmemmapTablesKept).
// - bbd6ec605c0f (v5.7, 2020), the merged version: vmemmap tables are freed, but only where
//   pgtable_range_aligned shows them wholly inside [VMEMMAP_START, VMEMMAP_END) (the default).
// - "arm64/mm: Hold memory hotplug lock while walking for kernel page table dump" (S004 2/3,
//   2020) and "mm/ptdump: take the memory hotplug lock inside ptdump_walk_pgd()" (2025): ptdump
//   holds get_online_mems() for the walk; before them it did not (PtdumpWithoutGetOnlineMems).
// - "arm64: mm: Populate vmemmap at the page level if not section aligned" (Zhenhua Huang, v7,
//   Feb 2025, in stable Mar 2025): before it, arm64 4K mapped the vmemmap of a sub-section
//   range (ZONE_DEVICE memory added by memremap_pages) with the section's PMD block, shared by
//   every sub-section of the section (Arm64VmemmapPmdForSubsections).
// - x86-64 remove_pagetable before Rick Edgecombe's "x86/mm: Flush before free in
//   remove_pagetable()" (Aug 2021): vmemmap pages and emptied tables are freed before their
//   entries are cleared and before flush_tlb_all (X86RemovePagetableFreesBeforeFlush).
namespace PropertySuite.Engine.Config;

/// <summary>The memory hot-plug variant switches; every default is today's kernel.</summary>
public sealed record HotplugOptions
{
    /// <summary>S004 V6 (option 3): vmemmap_free unmaps and frees the backing but never frees
    /// page-table pages.</summary>
    public bool VmemmapTablesKept { get; init; }

    /// <summary>Before 2020 (arm64) / 2025 (generic): ptdump walks the kernel page table without
    /// get_online_mems(), so hot-remove can free a table the walk holds.</summary>
    public bool PtdumpWithoutGetOnlineMems { get; init; }

    /// <summary>Before the Feb 2025 arm64 fix: a sub-section vmemmap range on arm64 4K is mapped
    /// with a PMD block covering the whole section's memmap.</summary>
    public bool Arm64VmemmapPmdForSubsections { get; init; }

    /// <summary>x86-64 remove_pagetable in the order before "x86/mm: Flush before free in
    /// remove_pagetable()": free_pagetable of a vmemmap page or table before its entry is cleared,
    /// remove_pte_table's flush after its loop, the final flush_tlb_all last.</summary>
    public bool X86RemovePagetableFreesBeforeFlush { get; init; }

    /// <exception cref="ConfigException">A combination that never existed.</exception>
    public void Validate(ArchConfig arch)
    {
        if (Arm64VmemmapPmdForSubsections && !(arch.Arch == Arch.Arm64 && arch.VmemmapMappedByPmd))
            throw new ConfigException($"hotplug: Arm64VmemmapPmdForSubsections is arm64 4K's PMD-mapped vmemmap, not {arch.Name}'s");
        if (X86RemovePagetableFreesBeforeFlush && arch.Arch != Arch.X86_64)
            throw new ConfigException($"hotplug: X86RemovePagetableFreesBeforeFlush is x86-64's remove_pagetable, not {arch.Name}'s");
    }
}

/// <summary>Deliberately broken hot-plug paths, one per hot-plug invariant (not history).</summary>
public sealed record HotplugBreakage
{
    /// <summary>arch_remove_memory tears down the vmemmap but skips __remove_pgd_mapping, so the
    /// linear map of the removed block stays.</summary>
    public bool RemoveKeepsLinearMap { get; init; }

    /// <summary>offline_pages takes the block's free pages out of the buddy but leaves the
    /// section marked online.</summary>
    public bool OfflineKeepsSectionOnline { get; init; }

    /// <summary>online_pages marks the sections online and counts their pages in the zone but
    /// skips generic_online_page: the pages never reach the buddy and stay offline.</summary>
    public bool OnlineSkipsGenericOnlinePage { get; init; }

    /// <summary>remove_memory does not take mem_hotplug_lock for write (no mem_hotplug_begin),
    /// so get_online_mems() readers do not exclude it.</summary>
    public bool RemoveSkipsMemHotplugBegin { get; init; }

    /// <summary>vmemmap_pmd_entry ignores PageVmemmapSelfHosted, so HVO optimizes a folio whose
    /// memmap lives in its own memory block (memmap_on_memory) and frees those memmap pages to
    /// the buddy.</summary>
    public bool HvoOptimizesSelfHosted { get; init; }

    /// <summary>memremap_pages maps a sub-section's vmemmap with the PMD block of its section
    /// on every configuration that maps vmemmap by PMD (x86-64 too).</summary>
    public bool SubsectionVmemmapPmd { get; init; }

    /// <summary>A successful HugeTLB migration restores the user entries to the old folio
    /// (remove_migration_ptes(src, src)) while the page cache moves to the new one and the old
    /// folio is freed.</summary>
    public bool HugetlbMigrateRemapsOldFolio { get; init; }
}
