// What the harness expects of each buggy kernel variant: which invariants it breaks (what the
// meta-tests must find), which operation families exercise the mechanism it changes (forced on
// when a run targets the variant), how many generated scenarios its meta-test searches, and how
// short its shrunk repro must be. The engine's catalogue (KernelVariants) says what a variant
// is; this table says what the harness does with it, and names invariants and families by type,
// so a misspelt one does not compile.
//
// Search efforts (SearchTests) are measured, not guessed: `dotnet run --project Bench -c Release
// -- find rates N VARIANT` generates N scenarios of the variant and counts the fraction p that
// violates what it breaks (the chance one test finds it); a search of n tests then misses with
// probability (1-p)^n. Each value is ln(100) / p_low, rounded up, where p_low = (k - 2 sqrt(k)) / N
// is a low estimate of p from k finds in N scenarios (so that a rate measured high by chance
// still leaves the miss probability below 1 %).
using PropertySuite.Engine.Config;
using PropertySuite.Generators.Families;
using PropertySuite.Invariants;

namespace PropertySuite.Generators;

/// <summary>The harness's expectations of one buggy variant.</summary>
/// <param name="Variant">The variant (KernelVariants.All) this entry is about.</param>
/// <param name="Breaks">Invariant types the variant is expected to break.</param>
public sealed record VariantTarget(NamedVariant Variant, IReadOnlyList<Type> Breaks)
{
    /// <summary>Operation family types that exercise the mechanism this variant changes. When a
    /// run targets the variant, the swarm always enables them with every kind; the other
    /// families stay random. Empty: no focus.</summary>
    public IReadOnlyList<Type> Focus { get; init; } = [];

    /// <summary>For a bug that needs a rare interleaving: the least number of generated
    /// scenarios its meta-test searches (0: the default budget's, Budget.DefaultTests).</summary>
    public int SearchTests { get; init; }

    /// <summary>The least number of scenarios its meta-test searches: <see cref="SearchTests"/>,
    /// or the default budget's for a variant measured to need no more. A smaller PS_TESTS (a
    /// quick pass, the coverage run) never lowers it: a meta-test below its measured effort
    /// would fail for lack of search, not because the invariant lost its teeth.</summary>
    public int SearchEffort => SearchTests > 0 ? SearchTests : Harness.Budget.DefaultTests;

    /// <summary>The most operation lines its shrunk repro may have (the meta-tests' bound on
    /// "short").</summary>
    public int MaxReproOps { get; init; } = 8;

    /// <summary><see cref="Breaks"/> as invariant names (IInvariant.Name), in table order.</summary>
    public IReadOnlyList<string> BreakNames { get; } = [.. Breaks.Select(VariantTargets.InvariantName)];

    /// <summary>Whether generation must always enable <paramref name="family"/> for this variant.</summary>
    public bool Focuses(IOpFamily family) => Focus.Contains(family.GetType());
}

public static class VariantTargets
{
    private static Type Inv<T>() where T : IInvariant => typeof(T);

    private static Type Fam<T>() where T : IOpFamily => typeof(T);

    private static VariantTarget Buggy(string name, params Type[] breaks) => new(KernelVariants.ByName(name), breaks);

    /// <summary>The speculative-reference races: readers of the page cache, and the schedule that
    /// interleaves them with what frees and reshapes their pages.</summary>
    private static readonly Type[] Races = [Fam<PageCacheFamily>(), Fam<ScheduleFamily>()];
    private static readonly Type[] Vmalloc = [Fam<VmallocFamily>()];
    private static readonly Type[] Hgm = [Fam<HgmFamily>()];
    private static readonly Type[] Hotplug = [Fam<HotplugFamily>()];

    /// <summary>One entry per buggy variant, in KernelVariants.All order.</summary>
    public static IReadOnlyList<VariantTarget> All { get; } =
    [
        Buggy("hugetlb-folio-misaligned", Inv<NoSharedLeafEntries>(), Inv<CompoundHeadResolvesRealHead>()) with { MaxReproOps = 2 },
        Buggy("hvo-remaps-pmd-without-split", Inv<NoSharedLeafEntries>(), Inv<HvoShape>()) with { MaxReproOps = 2 },
        Buggy("flush-dcache-page-on-tail", Inv<NoWriteThroughReadOnlyVmemmap>()) with { MaxReproOps = 3 },
        Buggy("hvo-before-hugetlb-flag", Inv<OptimizedImpliesHugetlb>(), Inv<NoWriteThroughReadOnlyVmemmap>()) with { MaxReproOps = 4 },
        Buggy("restore-after-hugetlb-flag-cleared", Inv<NoKernelOops>()) with { MaxReproOps = 6, SearchTests = 800 },
        Buggy("broken-hvo-skips-last-pte", Inv<HvoShape>(), Inv<HvoFrameConservation>()) with { MaxReproOps = 2 },
        Buggy("broken-restore-leaks-partial-alloc", Inv<HvoFrameConservation>()) with { SearchTests = 400, Focus = [Fam<HugetlbFamily>()], MaxReproOps = 5 },
        Buggy("broken-restore-skips-reset", Inv<CompoundHeadResolvesRealHead>(), Inv<NoKernelOops>(), Inv<StructPageMatchesOwner>()) with { MaxReproOps = 4, SearchTests = 800 },
        Buggy("broken-free-huge-keeps-compound", Inv<StructPageMatchesOwner>()) with { MaxReproOps = 3 },
        Buggy("broken-hvo-frees-before-flush", Inv<ClearFlushFree>()) with { MaxReproOps = 4 },
        Buggy("broken-hvo-batch-split-skips-flush", Inv<NoConflictingTlbEntries>()) with { MaxReproOps = 8, Focus = [Fam<HvoBatchWindowFamily>(), Fam<HugetlbFamily>(), Fam<ScheduleFamily>()] },
        // Race variants, measured over 6,000 scenarios each with the schedule family forced on:
        // spec-get-pre-fix 84 found (1.40 %), spec-get-writable-tails 82 (1.37 %),
        // muchun-drop-on-mismatch 62 (1.03 %), bd225530-without-synchronize-rcu 26 (0.43 %).
        Buggy("spec-get-pre-fix", Inv<NoWriteThroughReadOnlyVmemmap>()) with { SearchTests = 450, Focus = Races },
        Buggy("spec-get-writable-tails", Inv<NoTailRefcountGain>()) with { SearchTests = 450, Focus = Races },
        Buggy("muchun-drop-on-mismatch", Inv<NoTailRefcountGain>()) with { SearchTests = 600, Focus = Races },
        Buggy("bd225530-without-synchronize-rcu", Inv<NoWriteThroughReadOnlyVmemmap>()) with { MaxReproOps = 10, SearchTests = 1800, Focus = Races },
        Buggy("arm64-hvo-in-place", Inv<BreakBeforeMake>()) with { MaxReproOps = 4 },
        Buggy("arm64-hvo-fault-handler", Inv<NoDeadlock>()) with { MaxReproOps = 10, Focus = [Fam<HugetlbFamily>(), Fam<PageCacheFamily>(), Fam<ScheduleFamily>()] },
        Buggy("dissolve-ignores-surplus", Inv<HugetlbPoolAccounting>()) with { SearchTests = 3000, Focus = [Fam<HugetlbFamily>()] },
        // The table frees of hot-remove (the only kernel path that frees kernel tables once empty): Focus Hotplug.
        Buggy("broken-free-table-keeps-parent", Inv<PageTableTreeWellFormed>()) with { Focus = Hotplug },
        Buggy("broken-vfree-leaks-page", Inv<FrameConservation>()),
        Buggy("broken-vunmap-skips-last-pte", Inv<NoLeafMapsFreeFrame>()),
        // On arm64 mapping the freed VA again over the unflushed break is a BreakBeforeMake violation too.
        Buggy("broken-vunmap-skips-flush", Inv<TlbCoherentAfterFlush>(), Inv<BreakBeforeMake>()),
        Buggy("broken-synchronize-rcu-no-wait", Inv<RcuGracePeriodWaitsForReaders>()),
        Buggy("broken-synchronize-rcu-local-readers", Inv<RcuGracePeriodWaitsForReaders>()) with { SearchTests = 600 }, // 8 found in 300 scenarios (2.7 %)
        // The walk cache still points at the freed table: incoherent, and the next walk reads freed memory.
        // A table freed without its walk-cache flush and made again over the same address is also
        // a make before the break was invalidated (BreakBeforeMake, judged across levels since bbm3).
        Buggy("broken-free-table-leaf-flush", Inv<TlbCoherentAfterFlush>(), Inv<NoKernelOops>(), Inv<BreakBeforeMake>()) with { Focus = Hotplug },
        Buggy("broken-bbm-skips-invalidate", Inv<BreakBeforeMake>()) with { MaxReproOps = 2 },
        // Huge vmalloc: the area allocator, the huge policy, the table replacement, the lazy purge.
        Buggy("broken-vmalloc-no-guard-page", Inv<VmallocMappingsExact>()) with { MaxReproOps = 2, Focus = Vmalloc },
        Buggy("broken-huge-vmalloc-ignores-opt-in", Inv<HugeVmapLeafOnlyWhereAllowed>()) with { MaxReproOps = 2, Focus = Vmalloc },
        Buggy("broken-pmd-free-pte-page-skips-flush", Inv<NoFreedFrameReachable>(), Inv<TlbCoherentAfterFlush>(), Inv<BreakBeforeMake>()) with { MaxReproOps = 6, Focus = Vmalloc },
        Buggy("broken-vmap-reuse-before-purge", Inv<TlbCoherentAfterFlush>(), Inv<NoFreedFrameReachable>(), Inv<BreakBeforeMake>()) with { MaxReproOps = 5, Focus = Vmalloc },
        Buggy("vmalloc-compound-backing", Inv<BackingPagesIndependent>()) with { MaxReproOps = 1, Focus = Vmalloc },
        // Permissions and the direct map: module_alloc 2M, set_memory_ro over it, pressure, vfree
        // (VmallocFamily's module permission chain). find rates 1200 with the chain: huge-module-alloc
        // 53 (4.42 %, ln(100) / p_low = 144), broken-reset-perms-skips-direct-map-flush 187 (15.58 %),
        // broken-set-memory-no-alias 285 (23.75 %); without it 0.50 %, 1.33 % and 9.92 %.
        Buggy("huge-module-alloc", Inv<DirectMapAliasPermissions>()) with { MaxReproOps = 4, Focus = Vmalloc },
        Buggy("broken-set-memory-no-alias", Inv<DirectMapAliasPermissions>()) with { MaxReproOps = 2, Focus = Vmalloc },
        // The stale read-only alias is incoherent once the reset made it writable again, and it covers a freed page.
        Buggy("broken-reset-perms-skips-direct-map-flush", Inv<TlbCoherentAfterFlush>(), Inv<DirectMapAliasPermissions>()) with { MaxReproOps = 4, Focus = Vmalloc },
        // An overshoot into a huge-mapped neighbour cuts its PMD leaf: the kernel's own WARN
        // (vunmap_pmd_range, 61ef8ddaa35e) fires first in some scenarios; a page it clears past the
        // range stays in the TLB of a CPU that read it, since the flush covers only the range.
        Buggy("broken-vunmap-range-overshoots", Inv<VmallocMappingsExact>(), Inv<NoKernelOops>(), Inv<TlbCoherentAfterFlush>()) with { MaxReproOps = 3, Focus = Vmalloc },
        Buggy("broken-huge-vmap-ignores-phys-alignment", Inv<HugeVmapLeafOnlyWhereAllowed>()) with { MaxReproOps = 1, Focus = Vmalloc },
        Buggy("broken-cont-pte-vmap-ignores-phys-alignment", Inv<HugeVmapLeafOnlyWhereAllowed>()) with { MaxReproOps = 1, Focus = Vmalloc },
        // The overwritten table is registered with nothing pointing at it (PageTableTreeWellFormed
        // once no task runs), and the first vmalloc's pages, mapped in it, are not mapped
        // (VmallocMappingsExact, also while another task still runs). With VmallocFamily's
        // population-race plan, find rates 1200: 72 (6.00 %); ln(100) / p_low = 101, within the default budget.
        Buggy("broken-vmalloc-populate-skips-lock-recheck", Inv<PageTableTreeWellFormed>(), Inv<VmallocMappingsExact>()) with { MaxReproOps = 6, Focus = Vmalloc },
        // HugeTLB high-granularity mapping: v2 mapcounts against HVO, and one breakage per HGM invariant.
        Buggy("hgm-v2-hvo", Inv<NoWriteThroughReadOnlyVmemmap>(), Inv<MapcountEqualsPageTableReferences>()) with { MaxReproOps = 7, Focus = Hgm },
        Buggy("broken-hgm-continue-skips-mapcount", Inv<MapcountEqualsPageTableReferences>()) with { MaxReproOps = 7, Focus = Hgm },
        Buggy("broken-hgm-collapse-skips-folio-get", Inv<RefcountCoversMappings>()) with { MaxReproOps = 8, Focus = Hgm },
        Buggy("broken-hgm-continue-maps-next-subpage", Inv<HugetlbPteShape>(), Inv<UserLeafMapsLiveFolio>()) with { MaxReproOps = 7, Focus = Hgm },
        Buggy("broken-hgm-split-ignores-huge-alignment", Inv<VmaTreeWellFormed>()) with { MaxReproOps = 4, Focus = Hgm },
        Buggy("broken-hgm-punch-hole-skips-unmap", Inv<UserLeafMapsLiveFolio>()) with { MaxReproOps = 4, Focus = Hgm },
        Buggy("broken-hgm-collapse-frees-tables-before-flush", Inv<NoFreedFrameReachable>(), Inv<TlbCoherentAfterFlush>(), Inv<NoKernelOops>(), Inv<ClearFlushFree>()) with { MaxReproOps = 10, SearchTests = 600, Focus = Hgm },
        // Without i_mmap_rwsem a hole punch can also run inside the collapse, which then maps a folio the punch took out of the page cache;
        // a UFFDIO_CONTINUE inside it installs a PTE table that the collapse's PMD leaf then overwrites (a leaked table).
        Buggy("broken-hgm-collapse-skips-vma-lock", Inv<NoKernelOops>(), Inv<UserLeafMapsLiveFolio>(), Inv<PageTableTreeWellFormed>()) with { MaxReproOps = 11, SearchTests = 600, Focus = Hgm },
        // Memory hot-plug: ptdump against the teardown, sub-section vmemmap, the removal and the accounting.
        // Measured with `find rates 600`: ptdump-without-get-online-mems 5 (0.83 %),
        // broken-remove-skips-mem-hotplug-begin 2 (0.33 %); the walk must be inside the hot block's
        // own PMD table when the remove runs, which needs 1G of boot memory (1 in 3 machines).
        // Too few finds for the p_low bound above: these two are ln(100) / p at the measured p.
        // Re-measured (issue 12, hp3): before the memmap_on_memory/fill/pfn_walk kinds, find rates 3000:
        // broken-remove-skips-mem-hotplug-begin 21 (0.70 %), ptdump-without-get-online-mems 28 (0.93 %);
        // with them, find rates 1200: 4 (0.33 %) and 8 (0.67 %). Still too rare for a stable bound: the
        // generation bias toward a walk inside the hot block's PMD table at the remove is to be raised;
        // ptdump's effort raised to 1380 meanwhile (miss about 0.01 % at 0.67 %).
        // With HotplugFamily's walker-vs-teardown plan (a ranged ptdump of the block stepped to its
        // lowest table, then the remove; issue 12, hp5), find rates 600: ptdump-without-get-online-mems
        // 24 (4.00 %), broken-remove-skips-mem-hotplug-begin 15 (2.50 %); efforts ln(100) / p_low:
        // 195 and 381 (an earlier run of the plan before it preferred a block with absent neighbours:
        // 19 (3.17 %) and 17 (2.83 %)). With the plan drawn three times as often, and its walk on the
        // range, where a block has one, whose lowest table maps no boot memory (HotplugFamily.
        // FreeingRanges: on x86-64 the linear map's PMD table spans 1G, so only machines whose boot
        // memory ends on a 1G boundary can have it freed), find rates 1200: 83 (6.92 %) and 65
        // (5.42 %); ln(100) / p_low = 85 and 113, within the default budget.
        Buggy("ptdump-without-get-online-mems", Inv<NoWalkerHoldsFreedTable>()) with { MaxReproOps = 6, Focus = Hotplug },
        Buggy("arm64-vmemmap-pmd-for-subsections", Inv<SectionsHavePrivateLeaves>()) with { MaxReproOps = 3, Focus = Hotplug },
        Buggy("broken-remove-keeps-linear-map", Inv<RemovedMemoryIsGone>()) with { MaxReproOps = 2, Focus = Hotplug },
        Buggy("broken-offline-keeps-section-online", Inv<OnlineAccounting>()) with { MaxReproOps = 3, Focus = Hotplug },
        // A state change with no owner change in its step: what OnlineAccounting's incremental form reads SectionsChanged for.
        Buggy("broken-online-skips-generic-online-page", Inv<OnlineAccounting>()) with { MaxReproOps = 2, Focus = Hotplug },
        Buggy("broken-hugetlb-migrate-remaps-old-folio", Inv<HugetlbPteShape>(), Inv<UserLeafMapsLiveFolio>()) with { MaxReproOps = 9, Focus = Hotplug },
        Buggy("broken-remove-skips-mem-hotplug-begin", Inv<NoWalkerHoldsFreedTable>()) with { MaxReproOps = 6, Focus = Hotplug },
        Buggy("broken-subsection-vmemmap-pmd", Inv<SectionsHavePrivateLeaves>()) with { MaxReproOps = 3, Focus = Hotplug },
        // Invariant teeth (issue 9, item 6): the free lists judged from their own shape.
        Buggy("broken-truncate-frees-twice", Inv<BuddyWellFormed>(), Inv<FrameConservation>()) with { MaxReproOps = 2, Focus = Races },
        Buggy("broken-free-surplus-skips-decrement", Inv<HugetlbPoolAccounting>()) with { MaxReproOps = 4, Focus = [Fam<HugetlbFamily>()] },
        Buggy("broken-pfn-walk-skips-put", Inv<RefcountAudit>()) with { MaxReproOps = 3, Focus = Races },
        // A folio leaves HugeTLB with its vmemmap still optimized: no entry store in that step, only
        // the owner change of its frames (what NoSharedLeafEntries' incremental form must see).
        Buggy("broken-free-skips-vmemmap-restore", Inv<NoSharedLeafEntries>()) with { MaxReproOps = 3, Focus = [Fam<HugetlbFamily>()] },
        Buggy("broken-hvo-reserve-off-by-one", Inv<HvoShape>()) with { MaxReproOps = 2 },
        // HVO on a folio whose memmap is self-hosted: its tail memmap pages, which are the block's altmap, go to the buddy
        // (whose bad_page check also sees PageVmemmapSelfHosted still set on them).
        Buggy("broken-hvo-optimizes-self-hosted-vmemmap", Inv<SelfHostedMemmapStaysOutOfBuddy>(), Inv<StructPageMatchesOwner>()) with { MaxReproOps = 6, Focus = Hotplug },
        // x86-64 remove_pagetable before the flush-before-free patch: a vmemmap page is freed while its PTE still maps it.
        Buggy("x86-remove-pagetable-frees-before-flush", Inv<ClearFlushFree>()) with { MaxReproOps = 3, Focus = Hotplug },
    ];

    /// <summary>The entry of a variant; null for a correct one.</summary>
    public static VariantTarget? For(string variant) => All.FirstOrDefault(t => t.Variant.Name == variant);

    /// <summary>The entry of a buggy variant.</summary>
    /// <exception cref="ConfigException">The variant is correct or has no entry here.</exception>
    public static VariantTarget Of(string variant) =>
        For(variant) ?? throw new ConfigException($"variant '{variant}' has no harness target: only buggy variants have one (Generators/VariantTargets.cs)");

    /// <summary>Invariant names a variant breaks (empty for a correct one).</summary>
    public static IReadOnlyList<string> BreakNames(string variant) => For(variant)?.BreakNames ?? [];

    /// <summary>The registered invariant of a type, by its name.</summary>
    public static string InvariantName(Type invariant) =>
        InvariantRegistry.All.FirstOrDefault(i => i.GetType() == invariant)?.Name
        ?? throw new InvalidOperationException($"{invariant.Name} is not in InvariantRegistry");
}
