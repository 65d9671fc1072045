// The registry: every invariant the runner checks after every step (the .cfg of the suite).
// A test asserts that every IInvariant type in this assembly is listed here.
namespace PropertySuite.Invariants;

public static class InvariantRegistry
{
    /// <summary>Every invariant, in the order they are checked. Structural ones first.</summary>
    public static IReadOnlyList<IInvariant> All { get; } =
    [
        new PageTableTreeWellFormed(),
        new BuddyWellFormed(),
        new FrameConservation(),
        new NoLeafMapsFreeFrame(),
        new NoSharedLeafEntries(),
        new HvoShape(),
        new HvoFrameConservation(),
        new TlbCoherentAfterFlush(),
        new NoWriteThroughReadOnlyVmemmap(),
        new NoKernelOops(),
        new NoDeadlock(),
        new BreakBeforeMake(),
        new RcuGracePeriodWaitsForReaders(),
        new NoTailRefcountGain(),
        new CompoundHeadResolvesRealHead(),
        new OptimizedImpliesHugetlb(),
        new HugetlbPoolAccounting(),
        new VmallocMappingsExact(),
        new HugeVmapLeafOnlyWhereAllowed(),
        new NoFreedFrameReachable(),
        new ClearFlushFree(),
        new StructPageMatchesOwner(),
        new DirectMapAliasPermissions(),
        new BackingPagesIndependent(),
        new VmaTreeWellFormed(),
        new HugetlbPteShape(),
        new UserLeafMapsLiveFolio(),
        new MapcountEqualsPageTableReferences(),
        new RefcountCoversMappings(),
        new OnlineAccounting(),
        new SelfHostedMemmapStaysOutOfBuddy(),
        new RemovedMemoryIsGone(),
        new SectionsHavePrivateLeaves(),
        new NoWalkerHoldsFreedTable(),
        new RefcountAudit(),
        new NoConflictingTlbEntries(),
    ];

    public static IInvariant ByName(string name) =>
        All.FirstOrDefault(i => i.Name == name)
        ?? throw new ArgumentException($"unknown invariant '{name}': known are {string.Join(", ", All.Select(i => i.Name))}");
}
