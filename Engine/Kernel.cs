// The composition root: one modelled machine. It builds the services (physical memory, page
// tables, CPUs and their TLBs, locks, RCU, the struct-page store, sparse vmemmap) and then the
// mechanisms, in one ordered list, each receiving the services it uses.
//
// Boot follows the kernel's order (arch/x86/mm/init_64.c, arch/arm64/mm/mmu.c, mm/sparse.c,
// mm/mm_init.c): reserve the kernel image, build the linear map of all present memory with the
// largest leaves that fit, populate vmemmap for every present section (PMD blocks on x86-64 and
// arm64 4K, base pages on arm64 16K/64K) from memblock, then hand the remaining memory to the
// buddy allocator.
//
// Struct pages are reached only through vmemmap: the struct page of PFN p is at
// VMEMMAP_START + p * 64, translated through init_mm (or a CPU's TLB) to a frame and slot
// (Mm/Mmu.cs, Mm/StructPageStore.cs), so remapping vmemmap makes struct pages alias exactly as
// it does in the kernel.
//
// Departures from the kernel (besides those in the service and mechanism headers):
// - The kernel image is a fixed 16 MiB at PFN 0; memblock allocates bottom-up after it, and the
//   remainder of the last MAX_PAGE_ORDER block it touched stays reserved (so free memory starts
//   as whole max-order blocks and the lowest-address-first buddy hands out pages in order),
//   except when that block is the last of memory, whose remainder goes to the buddy.
// - The linear map uses block mappings for all memory (as with rodata=off, or BBML2 on arm64),
//   with the arm64 contiguous bit on whole aligned CONT_PTE/CONT_PMD runs.
using PropertySuite.Engine.Arm64;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.PageCache;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>The modelled machine and kernel. Build with <see cref="Boot"/>.</summary>
public sealed class Kernel : IPteObserver, IKernelView
{
    private const long KernelImageBytes = 16L << 20;

    public ArchConfig Arch { get; }
    public MachineConfig Machine { get; }
    public KernelVariant Variant { get; }

    // ---- services ----
    public KernelLog Log { get; } = new();
    /// <summary>The entry stores and flushes of the current step, in order.</summary>
    public EventLog Events { get; } = new();
    public PhysMem Mem { get; }
    /// <summary>init_mm: the kernel's address space; its page table is swapper_pg_dir.</summary>
    public MmStruct InitMm { get; }
    /// <summary>init_mm.pgd.</summary>
    public PageTable SwapperPgDir => InitMm.Pgd;
    /// <summary>Every address space: init_mm first, then user mms in creation order.</summary>
    public IReadOnlyList<MmStruct> Mms => _mms;
    private readonly List<MmStruct> _mms = new();
    public Scheduler Sched { get; }
    public Spinlocks Locks { get; }
    public Rcu Rcu { get; }
    public TlbFlush Tlb { get; }
    public Arm64Mmu Arm64 { get; }
    public SparseVmemmap Vmemmap { get; }
    public StructPageStore StructPages { get; }
    public Mmu Mmu { get; }
    public KernelPgtable Pgtable { get; }
    public PageFlagHelpers PageFlags { get; }

    // ---- mechanisms, in boot order (see RegisterMechanisms) ----
    public Vmalloc Vmalloc { get; private set; } = null!;
    public HugetlbVmemmap HugetlbVmemmap { get; private set; } = null!;
    public Hugetlb Hugetlb { get; private set; } = null!;
    public Hwpoison Hwpoison { get; private set; } = null!;
    public Arm64Flush Arm64Flush { get; private set; } = null!;
    /// <summary>HugeTLB high-granularity mapping over user address spaces (Engine/Hgm).</summary>
    public HugetlbHgm Hgm { get; private set; } = null!;
    /// <summary>Memory hot-plug (Engine/Hotplug): memory blocks beside boot memory.</summary>
    public PropertySuite.Engine.Hotplug.MemoryHotplug Hotplug { get; private set; } = null!;
    private Filemap? _filemap;

    /// <summary>The page cache, created on first use (it registers its frame accountant then;
    /// before that it holds no frames).</summary>
    public Filemap Filemap => _filemap ??= new Filemap(this);

    /// <summary>The page cache if any operation has used it, for observers that must not create it.</summary>
    public Filemap? FilemapIfUsed => _filemap;

    /// <summary>mem_hotplug_lock (taken for write by hot-remove, for read by get_online_mems).</summary>
    public KernelLock MemHotplugLock { get; } = new("mem_hotplug_lock");

    /// <summary>Independent records of who holds frames, one per mechanism: for each owner, the
    /// number of frames the mechanism's own bookkeeping says it holds. Conservation compares
    /// their sums with the frame owners.</summary>
    public List<(FrameOwner Owner, string Who, Func<long> Count)> FrameAccountants { get; } = new();

    /// <summary>The mechanisms' declarations of the struct-page references they hold
    /// (Engine/Core/RefHolders.cs), which RefcountAudit sums and compares with _refcount.</summary>
    public List<IRefHolder> RefHolders { get; } = new();

    /// <summary>References taken by speculative paths and not yet put.</summary>
    public SpeculativeRefs SpeculativeRefs { get; } = new();

    // ---- shorthands for what nearly every caller needs ----
    public Cpu[] Cpus => Sched.Cpus;
    public List<KernelFault> Faults => Log.Faults;

    private Kernel(ArchConfig arch, MachineConfig machine, KernelVariant variant)
    {
        machine.Validate(arch);
        variant.Validate(arch);
        Arch = arch;
        Machine = machine;
        Variant = variant;
        long totalPfns = (machine.MemoryBytes + machine.HotplugBytes) >> arch.PageShift;
        Mem = new PhysMem(arch, totalPfns);
        // The sizes a TLB entry can have: every leaf size, and on arm64 every contiguous run.
        var tlbLeafSizes = new[] { PtLevel.Pte, PtLevel.Pmd, PtLevel.Pud }
            .Where(l => (int)l < arch.Levels && arch.LeafAllowed(l))
            .SelectMany(l => new[] { (ulong)arch.LevelSize(l), (ulong)arch.ContSize(l) })
            .Where(s => s != 0).Distinct().Order().ToArray();
        Sched = new Scheduler(this, Log, machine.Cpus, tlbLeafSizes);
        Locks = new Spinlocks(Sched.Cpus, Log);
        Rcu = new Rcu(Sched.Cpus, variant.Broken, () => Log.StepCount);
        Sched.RcuAbandon = Rcu.Abandon;
        Tlb = new TlbFlush(arch, Sched.Cpus, () => Sched.Current, Events);

        long presentSections = machine.MemoryBytes / arch.SectionSize;
        for (long s = 0; s < presentSections; s++) Mem.AddSection(s, FrameOwner.Kernel);
        Mem.ReserveKernelImage(KernelImageBytes >> arch.PageShift);
        InitMm = new MmStruct("init_mm", new PageTable(arch, "init_mm", MemblockTablePfn(), PageTable.KernelVaBase(arch)), MmStruct.InitMmAsid);
        _mms.Add(InitMm);
        Arm64 = new Arm64Mmu(arch, InitMm, Tlb, Locks, Log, variant.Arm64, variant.Broken.BbmSkipsInvalidate);
        Vmemmap = new SparseVmemmap(arch, Mem, SwapperPgDir);
        StructPages = new StructPageStore(arch, Mem, Vmemmap);
        Mmu = new Mmu(arch, InitMm, Sched.Cpus, StructPages, Arm64, Log);
        Pgtable = new KernelPgtable(arch, InitMm, Mem, Tlb, Log, () => Sched.Current)
            { BrokenFreeTableKeepsParentEntry = variant.Broken.FreeTableKeepsParentEntry, BrokenFreeTableLeafOnlyFlush = variant.Broken.FreeTableLeafOnlyFlush, BrokenPmdFreePtePageSkipsFlush = variant.VmallocBreakage.PmdFreePtePageSkipsFlush };
        PageFlags = new PageFlagHelpers(arch, Mmu);
        Vmemmap.AddOffTableHolder(() => Arm64.BbmWindowFrames);
        FrameAccountants.Add((FrameOwner.PageTable, "page tables of every mm", () => _mms.Sum(m => (long)m.Pgd.Tables.Count)));
        FrameAccountants.Add((FrameOwner.Vmemmap, "frames mapped by vmemmap leaves, held by break-before-make windows or on a task's page list", Vmemmap.CountVmemmapFrames));
        FrameAccountants.Add((FrameOwner.Free, "buddy free lists", () => Mem.Buddy.NrFreePages));
    }

    /// <summary>The mechanisms, in the order boot sets them up: a new mechanism is its own file
    /// plus one line here. Each gets the services it uses and registers its frame accountant.</summary>
    private void RegisterMechanisms()
    {
        Vmalloc = new Vmalloc(Arch, Mem, Pgtable, SwapperPgDir, Tlb, Log, () => Sched.Current, Machine.Cpus, Variant, Locks, InitMm.PageTableLock) { Mmu = Mmu };
        FrameAccountants.Add((FrameOwner.Vmalloc, "vmalloc areas", () => Vmalloc.PagesInUse));
        RefHolders.Add(new VmallocRefs(this));
        RefHolders.Add(new PageCacheRefs(this));
        RefHolders.Add(SpeculativeRefs);
        HugetlbVmemmap = new HugetlbVmemmap(this);
        Vmemmap.AddOffTableHolder(() => HugetlbVmemmap.FramesInFlight);
        Hugetlb = new Hugetlb(this);
        FrameAccountants.Add((FrameOwner.HugetlbFolio, "hugetlb folios of the hstates", () => Hugetlb.PagesInFolios));
        Hwpoison = new Hwpoison(this);
        Arm64Flush = new Arm64Flush(this);
        Hgm = new HugetlbHgm(this); // its folios are the hstates'; its page tables are counted with every mm's
        Hotplug = new PropertySuite.Engine.Hotplug.MemoryHotplug(this);
        Vmalloc.VmapRanges.Walkers = Hotplug.Walkers; // a populating vmap walk holds the tables it descends into
        FrameAccountants.Add((FrameOwner.Offline, "present memory that is not online", () => Hotplug.OfflineFrames));
        Vmemmap.AddOffTableHolder(() => Hotplug.VmemmapFramesInFlight);
    }

    /// <summary>Boots a machine: linear map, vmemmap, buddy allocator, then the mechanisms.</summary>
    /// <exception cref="ConfigException">An impossible configuration, with value and rule.</exception>
    public static Kernel Boot(ArchConfig arch, MachineConfig machine, KernelVariant? variant = null)
    {
        var k = new Kernel(arch, machine, variant ?? new KernelVariant());
        long presentPfns = machine.MemoryBytes >> arch.PageShift;
        k.Pgtable.CreatePgdMapping(arch.PfnToVirt(0), 0, presentPfns, writable: true, k.MemblockTable);
        k.Vmemmap.SparseInit(machine.MemoryBytes / arch.SectionSize, k.MemblockTable);
        // Keep the rest of the last max-order block that memblock touched reserved, so that the
        // buddy starts with whole MAX_PAGE_ORDER blocks and allocations read naturally -- unless
        // that block is the last one (arm64 64K: 512M blocks on a 512M machine), where the
        // rounding would leave the buddy nothing; then the rest is freed, as memblock_free_all does.
        long maxBlock = 1L << arch.MaxPageOrder;
        if ((k.Mem.BootReservedEnd + maxBlock - 1) / maxBlock * maxBlock < presentPfns) k.Mem.MemblockAlloc(0, maxBlock);
        k.Mem.MemblockFreeAll();
        k.SwapperPgDir.Observer = k;
        var witness = new FreeWitness(arch, k._mms, k.Cpus, k.Events, () => k.Sched.Current);
        k.Mem.Freeing = witness.OnFree;
        k.RegisterMechanisms();
        k.BeginStep(0);
        return k;
    }

    /// <summary>A scenario step begins: faults are reported at <paramref name="step"/>, and the
    /// per-step records (frames whose owner changed, the event log) start empty.</summary>
    public void BeginStep(long step)
    {
        Log.StepCount = step;
        Mem.ClearChanged();
        Mem.Buddy.ClearTouched();
        SpeculativeRefs.BeginStep();
        _filemap?.CacheChangedThisStep.Clear();
        Events.Clear();
        foreach (var mm in _mms) mm.Pgd.ClearStepRecords();
        if (Hugetlb is not null) foreach (var h in Hugetlb.Hstates) h.ClearTouched();
        Hgm?.BeginStep();
        Vmalloc.BeginStep();
    }

    /// <summary>mm_alloc with pgd_alloc (kernel/fork.c): a new user address space with an empty
    /// page table of its own and the next ASID; null on ENOMEM.</summary>
    [Kernel("kernel/fork.c", "mm_alloc")]
    public MmStruct? MmAlloc()
    {
        if (_nextAsid > Smp.Tlb.MaxAsid) return null; // no ASID left (ASID rollover is not modelled)
        if (!Pgtable.TryAllocPageTablePage(out long pgd)) return null;
        string name = $"mm{_nextAsid}";
        var mm = new MmStruct(name, new PageTable(Arch, name, pgd, 0) { Observer = this }, _nextAsid++);
        _mms.Add(mm);
        return mm;
    }

    // ASIDs (and mm names) are never reused: a dropped mm's ASID is not handed out again.
    private int _nextAsid = 1;

    /// <summary>mmdrop → pgd_free (kernel/fork.c __mmdrop): the last reference to a user mm whose
    /// page tables below the root are already freed and whose TLB entries are flushed.</summary>
    /// <exception cref="ModelBugException">init_mm, or tables other than the root remain.</exception>
    [Kernel("kernel/fork.c", "mmdrop")]
    public void Mmdrop(MmStruct mm)
    {
        if (mm == InitMm || !_mms.Contains(mm)) throw new ModelBugException($"mmdrop of {mm.Name}: not a live user mm");
        if (mm.Pgd.Tables.Count != 1) throw new ModelBugException($"mmdrop of {mm.Name}: {mm.Pgd.Tables.Count - 1} page tables below the root remain");
        mm.Pgd.ForgetTable(mm.Pgd.Root);
        Mem.FreePages(mm.Pgd.Root.Pfn, 0, FrameOwner.PageTable, "pgd_free");
        _mms.Remove(mm);
    }

    /// <summary>The mm whose TLB entries carry <paramref name="asid"/> (global: init_mm), or null.</summary>
    public MmStruct? MmByAsid(int asid) => asid == TlbEntry.Global ? InitMm : _mms.Find(m => m != InitMm && m.Asid == asid);

    /// <summary>A page-table page from memblock (boot only; memblock exhaustion is a
    /// configuration error, so it never fails).</summary>
    private long MemblockTablePfn()
    {
        long pfn = Mem.MemblockAlloc(1, 1);
        Mem.SetOwner(pfn, 1, FrameOwner.PageTable);
        return pfn;
    }

    /// <summary><see cref="MemblockTablePfn"/> as a <see cref="PtAllocator"/>.</summary>
    private bool MemblockTable(out long pfn)
    {
        pfn = MemblockTablePfn();
        return true;
    }

    // ---- the read-only view invariants get ----
    IPhysMemView IKernelView.Mem => Mem;
    IPageTableView IKernelView.SwapperPgDir => SwapperPgDir;
    IReadOnlyList<IMmView> IKernelView.Mms => _mms;
    IMmView? IKernelView.MmByAsid(int asid) => MmByAsid(asid);
    IReadOnlyList<ICpuView> IKernelView.Cpus => Cpus;
    IReadOnlyList<PendingFlush> IKernelView.PendingFlushes => Tlb.PendingFlushes;
    IPendingBreaksView IKernelView.PendingBreaks => Tlb.PendingBreaks;
    IReadOnlyList<KernelTask> IKernelView.LiveTasks => Sched.LiveTasks;
    IReadOnlyList<KernelFault> IKernelView.Faults => Log.Faults;
    IReadOnlyList<GracePeriod> IKernelView.GracePeriods => Rcu.GracePeriodHistory;
    IReadOnlyList<RcuReadSection> IKernelView.RcuReadSections => Rcu.ReadSections;
    long IKernelView.Step => Log.StepCount;
    IReadOnlyList<(FrameOwner Owner, string Who, Func<long> Count)> IKernelView.FrameAccountants => FrameAccountants;
    IReadOnlyList<IRefHolder> IKernelView.RefHolders => RefHolders;
    IReadOnlyList<HeldRef> IKernelView.SpeculativeRefs => SpeculativeRefs.Held;
    IReadOnlyList<Arm64Mmu.BbmWindow> IKernelView.BbmWindows => Arm64.BbmWindows;
    VmemmapView IKernelView.PeekView => PageFlags.PeekView;
    IPageFlagsView IKernelView.PageFlags => PageFlags;
    VmemmapFrameContent IKernelView.PeekFrameContent(long frame) => StructPages.PeekFrameContent(frame);
    long? IKernelView.FrameOf(ulong va, out bool writable) => Mmu.FrameOf(va, out writable);
    bool IKernelView.PeekStructPage(ulong page, out StructPage value) => Mmu.PeekStructPage(page, out value);
    IHugetlbView IKernelView.Hugetlb => Hugetlb;
    IFilemapView? IKernelView.Filemap => _filemap;
    IReadOnlyList<KernelEvent> IKernelView.StepEvents => Events.StepEvents;
    IReadOnlyList<FrameFree> IKernelView.StepFrees => Events.StepFrees;
    IVmallocView IKernelView.Vmalloc => Vmalloc;
    IHgmView IKernelView.Hgm => Hgm;
    PropertySuite.Engine.Hotplug.IHotplugView IKernelView.Hotplug => Hotplug;

    /// <summary>Every entry store of every page table: the event log and the TLB bookkeeping.</summary>
    void IPteObserver.OnPteChange(PageTable mm, PtTable table, int index, Pte oldPte, Pte newPte)
    {
        ulong va = mm.EntryVa(table, index);
        Events.Add(KernelEvent.Store(mm.Name, table.Level, va, va + mm.EntrySize(table), oldPte, newPte, Sched.Current?.CpuId));
        Tlb.EntryChanged(mm, table, index, oldPte, newPte);
    }
}
