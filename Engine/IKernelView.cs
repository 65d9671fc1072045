// What an invariant may see of the kernel: read-only interfaces over the services' state, with
// no mutator anywhere (no entry store, no allocation, no task step, no TLB fill). Invariants are
// judged against this interface, so a check that acted on the engine would not compile.
// Reading struct pages goes through PeekView (init_mm only: no TLB, no fault recorded).
using PropertySuite.Engine.Arm64;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.PageCache;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

public interface IKernelView
{
    ArchConfig Arch { get; }
    MachineConfig Machine { get; }
    KernelVariant Variant { get; }
    IPhysMemView Mem { get; }
    /// <summary>init_mm's page table.</summary>
    IPageTableView SwapperPgDir { get; }
    /// <summary>Every address space's page table, init_mm's first.</summary>
    IReadOnlyList<IMmView> Mms { get; }
    IMmView? MmByAsid(int asid);
    IReadOnlyList<ICpuView> Cpus { get; }
    IReadOnlyList<PendingFlush> PendingFlushes { get; }
    /// <summary>The pending flushes that are breaks (valid → none), indexed by address.</summary>
    IPendingBreaksView PendingBreaks { get; }
    IReadOnlyList<KernelTask> LiveTasks { get; }
    IReadOnlyList<KernelFault> Faults { get; }
    /// <summary>The current scenario step (faults and grace periods carry the step they happened at).</summary>
    long Step { get; }
    /// <summary>Every RCU grace period that has ended, with its begin and end on the RCU event clock.</summary>
    IReadOnlyList<GracePeriod> GracePeriods { get; }
    /// <summary>Every RCU read-side section so far, with its begin and end on the same clock.</summary>
    IReadOnlyList<RcuReadSection> RcuReadSections { get; }
    IReadOnlyList<(FrameOwner Owner, string Who, Func<long> Count)> FrameAccountants { get; }
    /// <summary>Each mechanism's declaration of the struct-page references it holds (Engine/Core/RefHolders.cs).</summary>
    IReadOnlyList<IRefHolder> RefHolders { get; }
    /// <summary>Speculative references taken and not yet put, with the task that took each
    /// (a record whose task ended is a leaked reference).</summary>
    IReadOnlyList<HeldRef> SpeculativeRefs { get; }
    IReadOnlyList<Arm64Mmu.BbmWindow> BbmWindows { get; }
    /// <summary>The struct pages as init_mm maps them (no TLB, no faults).</summary>
    VmemmapView PeekView { get; }
    IPageFlagsView PageFlags { get; }
    /// <summary>The struct page at vmemmap address <paramref name="page"/> as init_mm maps it,
    /// with one walk; false (and a default record) when nothing maps it.</summary>
    bool PeekStructPage(ulong page, out StructPage value);
    /// <summary>A vmemmap frame's struct-page contents, without materialising them.</summary>
    VmemmapFrameContent PeekFrameContent(long frame);
    /// <summary>The frame init_mm maps <paramref name="va"/> to (through an open BBM window), or
    /// null when nothing maps it.</summary>
    long? FrameOf(ulong va, out bool writable);
    IHugetlbView Hugetlb { get; }
    /// <summary>The entry stores and flushes of the current step, in order.</summary>
    IReadOnlyList<KernelEvent> StepEvents { get; }
    /// <summary>The frees of the current step, in order, each with what still reached its frames.</summary>
    IReadOnlyList<FrameFree> StepFrees { get; }
    /// <summary>The page cache if any operation used it.</summary>
    IFilemapView? Filemap { get; }
    /// <summary>vmalloc: live vm areas and the lazily freed ranges awaiting their flush.</summary>
    IVmallocView Vmalloc { get; }
    /// <summary>HugeTLB high-granularity mapping: hugetlbfs files and user address spaces.</summary>
    IHgmView Hgm { get; }

    /// <summary>Memory hot-plug: sections, walkers' held tables (Engine/Hotplug).</summary>
    PropertySuite.Engine.Hotplug.IHotplugView Hotplug { get; }
}

public interface IPhysMemView
{
    long MaxPfn { get; }
    int NrSections { get; }
    SectionState SectionStateOf(long section);
    long PfnToSection(long pfn);
    FrameOwner OwnerOf(long pfn);
    long Count(FrameOwner owner);
    bool AllOwnedBy(long pfn, long count, FrameOwner owner);
    long CountOwned(long pfn, long count, FrameOwner owner);
    /// <summary>Frees the allocator refused, with the reason.</summary>
    IReadOnlyList<string> BadFrees { get; }
    /// <summary>Frame runs whose owner changed in the current step.</summary>
    IReadOnlyList<PfnRange> Changed { get; }
    /// <summary>Sections whose state was set in the current step (repeats possible).</summary>
    IReadOnlyList<long> SectionsChanged { get; }
    /// <summary>How many sections are in <paramref name="state"/>.</summary>
    long SectionsIn(SectionState state);
    IBuddyView Buddy { get; }
}

public interface IBuddyView
{
    long NrFreePages { get; }
    bool IsFree(long pfn);
    IEnumerable<(long Pfn, long Pages)> FreeBlocksIn(long start, long end);
    /// <summary>The order of the largest block (MAX_PAGE_ORDER).</summary>
    int MaxOrder { get; }
    /// <summary>Every block overlapping [start, end), whole, with its order (corrupt duplicates as strays).</summary>
    IEnumerable<BuddyBlock> BlocksOverlapping(long start, long end);
    /// <summary>Every block the free lists hold.</summary>
    IEnumerable<BuddyBlock> AllBlocks();
    /// <summary>Ranges whose free blocks changed in the current step.</summary>
    IReadOnlyList<(long Pfn, long Pages)> TouchedThisStep { get; }
}

public interface IPageTableView
{
    string Name { get; }
    PtTable Root { get; }
    IReadOnlyDictionary<long, PtTable> Tables { get; }
    int Index(ulong va, PtLevel level);
    ulong EntryVa(PtTable t, int index);
    ulong EntrySize(PtTable t);
    bool TryGetTable(long pfn, out PtTable table);
    bool TryGetChild(PtTable t, Pte e, out PtTable child);
    IReadOnlyList<PtTable> ParentsOf(long pfn);
    PtWalk Walk(ulong va);
    IEnumerable<PtWalk> Leaves(ulong start, ulong end);
    LeafFrameIndex LeafFrames(ulong start, ulong end);
    /// <summary>No frame has two table entries pointing at it and every table sits at the address
    /// its parent entry translates: a walk by address then reaches each reachable leaf once, at
    /// the address its entry reports (incremental checks rely on this and fall back otherwise).</summary>
    bool IsCanonicalTree { get; }
    void ForEachEntry(Action<PtTable, int, Pte> visit);
    void ForEachTableEntry(Action<PtTable, int, Pte> visit);
    void ForEachTableEntry(PtTable from, Action<PtTable, int, Pte> visit);
    /// <summary>Frames of the tables forgotten during the current step.</summary>
    IReadOnlyList<long> TablesForgottenThisStep { get; }
}

public interface IMmView
{
    string Name { get; }
    int Asid { get; }
    IPageTableView Pgd { get; }
}

public interface ICpuView
{
    int Id { get; }
    IReadOnlyList<ExecContext> Contexts { get; }
    ITlbView Tlb { get; }
}

public interface ITlbView
{
    int Count { get; }
    IEnumerable<TlbEntry> Entries { get; }
    IEnumerable<WalkCacheEntry> WalkEntries { get; }
}

/// <summary>The struct-page predicates of include/linux/page-flags.h (pure functions of a view).</summary>
public interface IPageFlagsView
{
    long HugetlbOptimizeVmemmapKey { get; }
    ulong PageFixedFakeHead(in VmemmapView v, ulong page);
    bool PageIsFakeHead(in VmemmapView v, ulong page);
    ulong CompoundHead(in VmemmapView v, ulong page);
    bool PageHead(in VmemmapView v, ulong page);
    bool PageTail(in VmemmapView v, ulong page);
    bool PageCompound(in VmemmapView v, ulong page);
    ulong PageFolio(in VmemmapView v, ulong page);
    bool FolioTestHugetlb(in VmemmapView v, ulong folio);
    bool PageHuge(in VmemmapView v, ulong page);
    bool FolioTestHugetlbVmemmapOptimized(in VmemmapView v, ulong folio);
    int FolioRefCount(in VmemmapView v, ulong folio);
}

public interface IHugetlbView
{
    IReadOnlyList<Hstate> Hstates { get; }
    int ReservePages { get; }
    bool HvoConfigured { get; }
    List<HugetlbFolio> AllFoliosByPfn();
    /// <summary>The folios overlapping frames [start, end), by head PFN, into a cleared <paramref name="into"/>.</summary>
    void FoliosOverlapping(long start, long end, List<HugetlbFolio> into);
    ulong FolioPage(HugetlbFolio f);
}

public interface IFilemapView
{
    IReadOnlyList<RefAdd> RefAdds { get; }
    IReadOnlyCollection<long> LivePfns { get; }
    IReadOnlyList<AddressSpace> Files { get; }
}
