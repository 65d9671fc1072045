// The engine root: one modelled machine and its kernel state.
//
// Boot follows the kernel's order (arch/x86/mm/init_64.c, arch/arm64/mm/mmu.c, mm/sparse.c,
// mm/mm_init.c): reserve the kernel image, build the linear map of all present memory with the
// largest leaves that fit, populate vmemmap for every present section (PMD blocks on x86-64 and
// arm64 4K, base pages on arm64 16K/64K) from memblock, then hand the remaining memory to the
// buddy allocator.
//
// Struct pages are reached only through vmemmap: the struct page of PFN p is at
// VMEMMAP_START + p * 64, translated through init_mm (or a CPU's TLB) to a frame and slot. The
// contents live per (frame, slot), so remapping vmemmap makes struct pages alias exactly as it
// does in the kernel.
//
// Departures from the kernel (besides those in the component headers):
// - The kernel image is a fixed 16 MiB at PFN 0; memblock allocates bottom-up after it, and the
//   remainder of the last MAX_PAGE_ORDER block it touched stays reserved (so free memory starts
//   as whole max-order blocks and the lowest-address-first buddy hands out pages in order).
// - The linear map uses block mappings for all memory (as with rodata=off, or BBML2 on arm64),
//   with the arm64 contiguous bit on whole aligned CONT_PTE/CONT_PMD runs; it is not split for
//   permission changes in this mechanism set.
// - Struct pages of frames that boot never wrote read as memmap_init leaves them: PG_reserved and
//   refcount 1 below the end of boot reservations, all zero (free) above. They are materialised
//   per vmemmap frame on first write, so a 64 TiB machine costs what is written.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine;

/// <summary>What went wrong at kernel level (an oops, a hang), recorded instead of thrown.</summary>
public enum FaultKind
{
    /// <summary>A store or atomic RMW to a read-only kernel mapping (a kernel oops).</summary>
    WriteToReadOnly,
    /// <summary>A kernel access to an unmapped address with no handler to fix it (an oops).</summary>
    TranslationFault,
    /// <summary>A context waits for a lock that can never be released (self or ABBA deadlock).</summary>
    Deadlock,
    /// <summary>arm64: a live valid entry changed output address or block size in place.</summary>
    BreakBeforeMake,
    /// <summary>A kernel BUG_ON / VM_BUG_ON / VM_WARN_ON that the modelled code contains.</summary>
    KernelBug,
}

/// <summary>One recorded kernel-level failure, with the step it happened at.</summary>
public sealed record KernelFault(FaultKind Kind, long Step, int Cpu, ulong Va, string Detail)
{
    public override string ToString() => $"{Kind} at step {Step} on cpu{Cpu} va {Va:x}: {Detail}";
}

/// <summary>A page-table change that no TLB flush has covered yet. The description is formatted
/// only when asked for (a change is recorded on every entry store, a hot path).</summary>
public sealed record PendingFlush(ulong Start, ulong End, int TaskId, string Mm, PtLevel Level, ulong EntryVa, Pte Old, Pte New)
{
    public string What => $"{Mm} {Level} entry at {EntryVa:x}: {Old} -> {New}";
}

/// <summary>The modelled machine and kernel. Build with <see cref="Boot"/>.</summary>
public sealed partial class Kernel : IPteObserver
{
    /// <summary>TLB entries per CPU before the oldest is evicted.</summary>
    public const int TlbCapacity = 64;
    private const long KernelImageBytes = 16L << 20;

    private readonly Dictionary<long, VmemmapFrameContent> _structPages = new();
    private readonly List<PendingFlush> _pendingFlushes = new();
    private readonly List<KernelTask> _liveTasks = new();
    private int _nextTaskId = 1;
    private long[] _bootVmemmapFrame = [];   // per section: first frame of its boot vmemmap, or -1
    private readonly ulong[] _tlbLeafSizes;

    public ArchConfig Arch { get; }
    public MachineConfig Machine { get; }
    public KernelVariant Variant { get; }
    public PhysMem Mem { get; }
    /// <summary>init_mm's page table (swapper_pg_dir).</summary>
    public PageTable InitMm { get; }
    public Smp.Cpu[] Cpus { get; }
    public Rcu Rcu { get; } = new();
    public Vmalloc Vmalloc { get; }

    /// <summary>Independent records of who holds frames, one per mechanism: for each owner, the
    /// number of frames the mechanism's own bookkeeping says it holds. Conservation compares
    /// their sums with the frame owners.</summary>
    public List<(FrameOwner Owner, string Who, Func<long> Count)> FrameAccountants { get; } = new();

    /// <summary>Vmemmap frames a running task holds off the page table (collected for freeing,
    /// or allocated and not yet installed).</summary>
    public long VmemmapFramesInFlight => _vmemmapInFlight.Values.Sum();

    private readonly SortedDictionary<long, int> _vmemmapInFlight = new();

    /// <summary>A vmemmap frame goes on (or comes off) a task's page list.</summary>
    public void VmemmapInFlightAdd(long pfn) => _vmemmapInFlight[pfn] = _vmemmapInFlight.GetValueOrDefault(pfn) + 1;

    public void VmemmapInFlightRemove(long pfn)
    {
        int n = _vmemmapInFlight.GetValueOrDefault(pfn);
        if (n == 0) throw new ModelBugException($"vmemmap frame {pfn:x} leaves a page list it is not on");
        if (n == 1) _vmemmapInFlight.Remove(pfn); else _vmemmapInFlight[pfn] = n - 1;
    }

    /// <summary>init_mm.page_table_lock.</summary>
    public KernelLock PageTableLock { get; } = new("init_mm.page_table_lock");
    /// <summary>mem_hotplug_lock (taken for write by hot-remove, for read by get_online_mems).</summary>
    public KernelLock MemHotplugLock { get; } = new("mem_hotplug_lock");
    /// <summary>hugetlb_lock.</summary>
    public KernelLock HugetlbLock { get; } = new("hugetlb_lock");

    /// <summary>Kernel-level failures, in order. Invariants report them.</summary>
    public List<KernelFault> Faults { get; } = new();
    /// <summary>Number of engine steps taken so far (for evidence in faults).</summary>
    public long StepCount { get; set; }
    /// <summary>The context currently executing a step, or null outside any task.</summary>
    public ExecContext? Current { get; private set; }

    public IReadOnlyList<PendingFlush> PendingFlushes => _pendingFlushes;
    public IReadOnlyList<KernelTask> LiveTasks => _liveTasks;

    private Kernel(ArchConfig arch, MachineConfig machine, KernelVariant variant)
    {
        machine.Validate(arch);
        Arch = arch;
        Machine = machine;
        Variant = variant;
        long totalPfns = (machine.MemoryBytes + machine.HotplugBytes) >> arch.PageShift;
        Mem = new PhysMem(arch, totalPfns);
        _tlbLeafSizes = new[] { PtLevel.Pte, PtLevel.Pmd, PtLevel.Pud }
            .Where(l => (int)l < arch.Levels && arch.LeafAllowed(l)).Select(l => (ulong)arch.LevelSize(l)).ToArray();
        Cpus = Enumerable.Range(0, machine.Cpus).Select(i => new Smp.Cpu(i, new Tlb(TlbCapacity, _tlbLeafSizes))).ToArray();

        long presentSections = machine.MemoryBytes / arch.SectionSize;
        for (long s = 0; s < presentSections; s++) Mem.AddSection(s, FrameOwner.Kernel);
        long imagePages = KernelImageBytes >> arch.PageShift;
        Mem.ReserveKernelImage(imagePages);
        long rootPfn = Mem.MemblockAlloc(1, 1);
        Mem.SetOwner(rootPfn, 1, FrameOwner.PageTable);
        InitMm = new PageTable(arch, "init_mm", rootPfn, PageTable.KernelVaBase(arch));
        Vmalloc = new Vmalloc(this);
        FrameAccountants.Add((FrameOwner.Vmalloc, "vmalloc areas", () => Vmalloc.PagesInUse));
        FrameAccountants.Add((FrameOwner.PageTable, "init_mm tables", () => InitMm.Tables.Count));
        FrameAccountants.Add((FrameOwner.Vmemmap, "frames mapped by vmemmap leaves, held by break-before-make windows or on a task's page list", CountVmemmapFrames));
        FrameAccountants.Add((FrameOwner.Free, "buddy free lists", () => Mem.Buddy.NrFreePages));
    }

    /// <summary>Distinct frames mapped by init_mm leaves inside [VMEMMAP_START, VMEMMAP_END)
    /// (aliases, such as HVO's remapped tails, count once), from the incrementally maintained
    /// <see cref="PageTable.LeafFrames"/> index: cost grows with what changed since the last
    /// call, not with the size of vmemmap.</summary>
    public long CountVmemmapFrames()
    {
        var index = InitMm.LeafFrames(Arch.VmemmapStart, Arch.VmemmapEnd);
        if (BbmWindows.Count == 0 && _vmemmapInFlight.Count == 0) return index.DistinctFrames;
        // A page on a list may still be mapped (vmemmap_remap_pte adds it before it rewrites the
        // entry): count every frame once.
        return CountDistinct(index.Runs.Concat(BbmWindowFrames).Concat(_vmemmapInFlight.Keys.Select(p => (p, 1L))));
    }

    /// <summary>The number of distinct frames in a collection of (pfn, count) runs.</summary>
    public static long CountDistinct(IEnumerable<(long Pfn, long Count)> runs)
    {
        long total = 0, coveredTo = long.MinValue;
        foreach (var (pfn, n) in runs.OrderBy(r => r.Pfn))
        {
            long start = Math.Max(pfn, coveredTo), end = pfn + n;
            if (end > start) { total += end - start; coveredTo = end; }
        }
        return total;
    }

    /// <summary>The full-scan oracle of <see cref="CountVmemmapFrames"/>: walks every vmemmap
    /// leaf. For tests that check the incremental count.</summary>
    public long CountVmemmapFramesFullScan()
    {
        var runs = new List<(long Pfn, long Count)>(BbmWindowFrames);
        runs.AddRange(_vmemmapInFlight.Keys.Select(p => (p, 1L)));
        foreach (var w in InitMm.Leaves(Arch.VmemmapStart, Arch.VmemmapEnd))
            runs.Add((w.Entry.Pfn, (long)(InitMm.EntrySize(w.Table) >> Arch.PageShift)));
        return CountDistinct(runs);
    }

    /// <summary>Boots a machine: linear map, vmemmap, buddy allocator.</summary>
    /// <exception cref="ConfigException">An impossible configuration, with value and rule.</exception>
    public static Kernel Boot(ArchConfig arch, MachineConfig machine, KernelVariant? variant = null)
    {
        var k = new Kernel(arch, machine, variant ?? new KernelVariant());
        k.BootMapLinear();
        k.BootPopulateVmemmap();
        // Keep the rest of the last max-order block that memblock touched reserved, so that the
        // buddy starts with whole MAX_PAGE_ORDER blocks and allocations read naturally.
        k.Mem.MemblockAlloc(0, 1L << arch.MaxPageOrder);
        k.Mem.MemblockFreeAll();
        k.InitMm.Observer = k;
        k.OnBooted();
        k.Mem.ClearChanged();
        return k;
    }

    /// <summary>Mechanisms hook their own set-up here (each in its own partial file): state
    /// objects, frame accountants.</summary>
    partial void OnBooted();

    private long MemblockTable()
    {
        long pfn = Mem.MemblockAlloc(1, 1);
        Mem.SetOwner(pfn, 1, FrameOwner.PageTable);
        return pfn;
    }

    /// <summary>Linear-map VA of a PFN (__va(PFN_PHYS(pfn))).</summary>
    public ulong PfnToVirt(long pfn) => Arch.PageOffset + ((ulong)pfn << Arch.PageShift);
    /// <summary>pfn_to_page: the vmemmap address of the struct page of <paramref name="pfn"/>.</summary>
    public ulong PfnToPage(long pfn) => Arch.VmemmapStart + (ulong)pfn * ArchConfig.StructPageSize;
    /// <summary>page_to_pfn.</summary>
    public long PageToPfn(ulong page) => (long)((page - Arch.VmemmapStart) / ArchConfig.StructPageSize);
    public bool IsVmemmapAddr(ulong va) => va >= Arch.VmemmapStart && va < Arch.VmemmapEnd;

    private void BootMapLinear()
    {
        long presentPfns = Machine.MemoryBytes >> Arch.PageShift;
        MapBoot(PfnToVirt(0), 0, presentPfns, writable: true);
    }

    private static readonly PtLevel[] BlockLevelsLargestFirst = [PtLevel.Pud, PtLevel.Pmd];

    /// <summary>Maps [pfn, pfn+count) at va with the largest leaves that alignment allows. On
    /// arm64 a leaf whose whole contiguous run (CONT_PTE_SIZE / CONT_PMD_SIZE, aligned) lies in
    /// the range gets the contiguous bit, as alloc_init_cont_pte / alloc_init_cont_pmd do when
    /// NO_CONT_MAPPINGS is not requested.</summary>
    private void MapBoot(ulong va, long pfn, long count, bool writable)
    {
        long end = pfn + count;
        ulong vaStart = va, vaEnd = va + ((ulong)count << Arch.PageShift);
        while (pfn < end)
        {
            PtLevel level = PtLevel.Pte;
            foreach (var l in BlockLevelsLargestFirst)
            {
                if ((int)l >= Arch.Levels || !Arch.LeafAllowed(l)) continue;
                long pages = Arch.LevelSize(l) >> Arch.PageShift;
                if ((pfn & (pages - 1)) == 0 && pfn + pages <= end) { level = l; break; }
            }
            var t = InitMm.WalkAlloc(va, level, MemblockTable, out var err)
                ?? throw new ModelBugException($"boot map of {va:x} failed: {err}");
            ulong contSize = (ulong)Arch.ContSize(level);
            ulong group = contSize == 0 ? 0 : va & ~(contSize - 1);
            bool cont = contSize != 0 && group >= vaStart && group + contSize <= vaEnd
                && ((ulong)pfn << Arch.PageShift) % contSize == va % contSize;
            InitMm.Set(t, InitMm.Index(va, level), Pte.MkLeaf(pfn, writable, cont));
            long step = Arch.LevelSize(level) >> Arch.PageShift;
            pfn += step;
            va += (ulong)Arch.LevelSize(level);
        }
    }

    /// <summary>vmemmap_populate for each present section (sparse_init).</summary>
    private void BootPopulateVmemmap()
    {
        _bootVmemmapFrame = new long[Mem.NrSections];
        Array.Fill(_bootVmemmapFrame, -1);
        long framesPerSection = Arch.SectionVmemmapBytes >> Arch.PageShift;
        long present = Machine.MemoryBytes / Arch.SectionSize;
        // memblock places the sections' memmaps back to back (each PMD aligned when PMD mapped).
        long align = Arch.VmemmapMappedByPmd ? Arch.PmdSize >> Arch.PageShift : 1;
        long first = Mem.MemblockAlloc(present * framesPerSection, align);
        Mem.SetOwner(first, present * framesPerSection, FrameOwner.Vmemmap);
        long pmdPages = Arch.PmdSize >> Arch.PageShift;
        for (long s = 0; s < present; s++)
        {
            long frame = first + s * framesPerSection;
            ulong va = PfnToPage(s * Arch.PagesPerSection);
            if (Arch.VmemmapMappedByPmd)
            {
                // vmemmap_populate_hugepages: PMD blocks for the section's memmap.
                for (long i = 0; i < framesPerSection; i += pmdPages)
                {
                    ulong pva = va + (ulong)(i << Arch.PageShift);
                    var t = InitMm.WalkAlloc(pva, PtLevel.Pmd, MemblockTable, out var err)
                        ?? throw new ModelBugException($"vmemmap populate at {pva:x} failed: {err}");
                    InitMm.Set(t, InitMm.Index(pva, PtLevel.Pmd), Pte.MkLeaf(frame + i, true));
                }
            }
            else
            {
                // vmemmap_populate_basepages.
                for (long i = 0; i < framesPerSection; i++)
                {
                    ulong pva = va + (ulong)(i << Arch.PageShift);
                    var t = InitMm.WalkAlloc(pva, PtLevel.Pte, MemblockTable, out var err)
                        ?? throw new ModelBugException($"vmemmap populate at {pva:x} failed: {err}");
                    InitMm.Set(t, InitMm.Index(pva, PtLevel.Pte), Pte.MkLeaf(frame + i, true));
                }
            }
            _bootVmemmapFrame[s] = frame;
        }
    }

    // ---------------------------------------------------------------------------------------
    // Struct page contents
    // ---------------------------------------------------------------------------------------

    /// <summary>The stored contents of vmemmap frame <paramref name="frame"/>, materialised from
    /// the post-boot memmap on first use.</summary>
    public VmemmapFrameContent FrameContent(long frame)
    {
        if (_structPages.TryGetValue(frame, out var c)) return c;
        c = PristineContent(frame);
        _structPages[frame] = c;
        return c;
    }

    /// <summary>Whether a frame's struct-page contents have been materialised (for tests).</summary>
    public bool HasFrameContent(long frame) => _structPages.ContainsKey(frame);

    /// <summary>A struct page as stored in <paramref name="frame"/>, slot <paramref name="slot"/>,
    /// without materialising the frame's contents: reads cost nothing to keep.</summary>
    private StructPage ReadSlot(long frame, int slot)
    {
        if (_structPages.TryGetValue(frame, out var c)) return c.Read(slot);
        long firstPfn = BootDescribedPfn(frame);
        return firstPfn >= 0 && firstPfn + slot < Mem.BootReservedEnd ? StructPage.BootReserved : default;
    }

    private VmemmapFrameContent PristineContent(long frame)
    {
        int slots = Arch.StructPagesPerVmemmapPage;
        long firstPfn = BootDescribedPfn(frame);
        if (firstPfn < 0) return new VmemmapFrameContent(default);
        long reservedEnd = Mem.BootReservedEnd;
        var content = new VmemmapFrameContent(firstPfn < reservedEnd ? StructPage.BootReserved : default);
        if (firstPfn < reservedEnd && firstPfn + slots > reservedEnd)
            for (long p = reservedEnd; p < firstPfn + slots; p++) content.Write((int)(p - firstPfn), default);
        return content;
    }

    /// <summary>The PFN described by slot 0 of a boot vmemmap frame, or -1.</summary>
    private long BootDescribedPfn(long frame)
    {
        long framesPerSection = Arch.SectionVmemmapBytes >> Arch.PageShift;
        // Boot vmemmap blocks are allocated in section order: binary search by first frame.
        int lo = 0, hi = _bootVmemmapFrame.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            long f = _bootVmemmapFrame[mid];
            if (f < 0) { hi = mid - 1; continue; }
            if (f <= frame) { found = mid; lo = mid + 1; } else hi = mid - 1;
        }
        if (found < 0) return -1;
        long start = _bootVmemmapFrame[found];
        if (frame >= start + framesPerSection) return -1;
        return found * Arch.PagesPerSection + (frame - start) * Arch.StructPagesPerVmemmapPage;
    }

    /// <summary>copy_page() between two vmemmap frames' struct-page contents.</summary>
    public void CopyFrameContent(long to, long from) => _structPages[to] = FrameContent(from).Clone();

    /// <summary>Drops the stored contents of a frame that leaves vmemmap (freed to the buddy).</summary>
    public void DropFrameContent(long frame) => _structPages.Remove(frame);

    public int StructPageSlot(ulong va) => (int)((va & (ulong)(Arch.PageSize - 1)) / ArchConfig.StructPageSize);

    /// <summary>Reads the struct page at <paramref name="page"/> as the current CPU sees it (its
    /// TLB, else a walk). Returns false, recording a translation fault, if nothing maps it.</summary>
    public bool ReadStructPage(ExecContext? ctx, ulong page, out StructPage value)
    {
        if (!Translate(ctx, page, write: false, out long frame, out _))
        {
            value = default;
            return false;
        }
        value = ReadSlot(frame, StructPageSlot(page));
        return true;
    }

    /// <summary>Writes the struct page at <paramref name="page"/>. A write through a read-only
    /// mapping does not happen: it is recorded as a <see cref="FaultKind.WriteToReadOnly"/> fault
    /// and false is returned.</summary>
    public bool WriteStructPage(ExecContext? ctx, ulong page, in StructPage value, string what)
    {
        if (!Translate(ctx, page, write: true, out long frame, out bool writable)) return false;
        if (!writable)
        {
            RecordFault(FaultKind.WriteToReadOnly, ctx, page,
                $"{what}: write to struct page of pfn {PageToPfn(page):x} through read-only vmemmap (frame {frame:x})");
            return false;
        }
        FrameContent(frame).Write(StructPageSlot(page), value);
        return true;
    }

    /// <summary>Reads a struct page through init_mm only: no TLB, no fault recorded. For
    /// invariants and rendering, which observe and never act.</summary>
    /// <remarks>Inside an open break-before-make window the struct page reads as the entry
    /// being installed will show it: the window is a transition the updater owns, and
    /// BreakBeforeMake / NoDeadlock judge the window itself.</remarks>
    public bool PeekStructPage(ulong page, out StructPage value)
    {
        long frame = WalkToFrame(page, out _);
        if (frame < 0) { value = default; return false; }
        value = ReadSlot(frame, StructPageSlot(page));
        return true;
    }

    /// <summary>The frame that maps kernel VA <paramref name="va"/> according to init_mm (through
    /// the pending entry of an open break-before-make window), or -1.</summary>
    public long WalkToFrame(ulong va, out bool writable)
    {
        var w = InitMm.Walk(va);
        writable = w.IsLeaf && w.Entry.Writable;
        if (!w.IsLeaf) return BbmWindowAt(va) is { } window ? ResolveThroughWindow(window, va, out writable) : -1;
        return w.Entry.Pfn + (long)((va - InitMm.EntryVa(w.Table, w.Index)) >> Arch.PageShift);
    }

    /// <summary>An access by a CPU: TLB first, else a walk that fills the TLB. On a miss with no
    /// valid leaf the access faults: recorded, false returned.</summary>
    public bool Translate(ExecContext? ctx, ulong va, bool write, out long frame, out bool writable)
    {
        var cpu = ctx is null ? null : Cpus[ctx.CpuId];
        if (cpu is not null && cpu.Tlb.TryLookup(va, out var te))
        {
            frame = te.PfnFor(va, Arch.PageShift);
            writable = te.Writable;
            return true;
        }
        var w = InitMm.Walk(va);
        if (!w.IsLeaf)
        {
            frame = -1;
            writable = false;
            if (ctx is not null && Variant.VmemmapUpdate == VmemmapUpdate.BbmFaultHandler && BbmWindowAt(va) is { } window)
            {
                // Nanyong Sun v3: the arm64 vmemmap fault handler waits for the update by taking
                // init_mm.page_table_lock. If the updater is this CPU's interrupted context (or
                // this context), it never releases it: the CPU hangs.
                var holder = window.Updater;
                if (holder.CpuId == ctx.CpuId && holder.Depth <= ctx.Depth)
                {
                    if (!ctx.Hung)
                        RecordFault(FaultKind.Deadlock, ctx, va, $"vmemmap translation fault in {ctx} spins on {PageTableLock.Name}, held by {holder} — interrupted on the same CPU{(ctx.InIrq ? " (IRQ context)" : "")}");
                    ctx.WaitingFor = PageTableLock;
                    ctx.Hung = true;
                    return false;
                }
                // Another CPU holds the lock: the handler waits until the entry is made again and
                // the access retries. The access therefore sees the entry the update installs.
                frame = ResolveThroughWindow(window, va, out writable);
                Note("vmemmap_fault.waited");
                if (frame >= 0) return true;
            }
            RecordFault(FaultKind.TranslationFault, ctx, va, $"{(write ? "write" : "read")} of unmapped kernel address (walk ended at level {w.Level} entry {w.Entry})");
            return false;
        }
        ulong size = InitMm.EntrySize(w.Table);
        ulong baseVa = InitMm.EntryVa(w.Table, w.Index);
        frame = w.Entry.Pfn + (long)((va - baseVa) >> Arch.PageShift);
        writable = w.Entry.Writable;
        if (ctx is not null && ctx.WaitingFor == PageTableLock && PageTableLock.Holder != ctx) ctx.WaitingFor = null;
        cpu?.Tlb.Fill(new TlbEntry(baseVa, size, w.Entry.Pfn, w.Entry.Writable));
        return true;
    }

    /// <summary>Whether a walk of <paramref name="va"/> ends on a valid leaf (no side effects).</summary>
    public bool IsMapped(ulong va) => InitMm.Walk(va).IsLeaf;

    /// <summary>Counts of interesting states reached (e.g. "hvo.rollback", "alloc.enomem"), for
    /// generation statistics. Keys are sorted when reported.</summary>
    public Dictionary<string, long> Reached { get; } = new(StringComparer.Ordinal);

    /// <summary>Notes that an interesting state was reached.</summary>
    public void Note(string state) => Reached[state] = Reached.GetValueOrDefault(state) + 1;

    public void RecordFault(FaultKind kind, ExecContext? ctx, ulong va, string detail) =>
        Faults.Add(new KernelFault(kind, StepCount, ctx?.CpuId ?? -1, va, detail));

    // ---------------------------------------------------------------------------------------
    // Page-table changes, TLB bookkeeping and flushes
    // ---------------------------------------------------------------------------------------

    void IPteObserver.OnPteChange(PageTable mm, PtTable table, int index, Pte oldPte, Pte newPte)
    {
        if (oldPte.IsNone) return; // nothing could have been cached
        ulong va = mm.EntryVa(table, index);
        ulong size = mm.EntrySize(table);
        _pendingFlushes.Add(new PendingFlush(va, va + size, Current?.Task.Id ?? 0, mm.Name, table.Level, va, oldPte, newPte));
        if (Arch.Arch == Config.Arch.Arm64 && !newPte.IsNone && BreaksBbm(table.Level, oldPte, newPte, out string why))
            RecordFault(FaultKind.BreakBeforeMake, Current, va, $"{table.Level} entry changed in place: {oldPte} -> {newPte} ({why})");
    }

    /// <summary>arm64: whether changing a live valid entry from old to new needs break-before-make
    /// (a different output address, or a different block size: leaf ↔ table). Permission-only
    /// changes of a leaf are in pgattr_change_is_safe's set. With BBML2 a block-size change
    /// that keeps the same output frames is allowed.</summary>
    public bool BreaksBbm(PtLevel level, Pte oldPte, Pte newPte, out string why)
    {
        if (oldPte.IsLeaf && newPte.IsLeaf)
        {
            if (oldPte.Pfn != newPte.Pfn) { why = "output address changed"; return true; }
            if (oldPte.Cont != newPte.Cont) { why = "contiguous bit changed"; return true; }
            why = "";
            return false;
        }
        if (oldPte.IsTable && newPte.IsTable && oldPte.Pfn == newPte.Pfn) { why = ""; return false; }
        if (oldPte.IsLeaf && newPte.IsTable && Variant.VmemmapUpdate == VmemmapUpdate.Bbml2 && level > PtLevel.Pte)
        {
            why = "";
            return false; // BBML2_NOABORT: splitting a block into a table of the same frames
        }
        why = oldPte.IsTable != newPte.IsTable ? "block size changed" : "table pointer changed";
        return true;
    }

    /// <summary>flush_tlb_kernel_range: drops every CPU's translations of [start, end) and marks
    /// the pending changes inside it as flushed. An end of 0 means the top of the address space.</summary>
    public void FlushTlbKernelRange(ulong start, ulong end)
    {
        foreach (var cpu in Cpus) cpu.Tlb.FlushRange(start, end);
        for (int i = _pendingFlushes.Count - 1; i >= 0; i--)
        {
            var p = _pendingFlushes[i];
            if (!VaRange.Overlaps(p.Start, p.End, start, end)) continue;
            _pendingFlushes.RemoveAt(i);
            if (p.Start < start) _pendingFlushes.Add(p with { End = start });
            if (p.End - 1 > end - 1) _pendingFlushes.Add(p with { Start = end });
        }
    }

    /// <summary>flush_tlb_all.</summary>
    public void FlushTlbAll()
    {
        foreach (var cpu in Cpus) cpu.Tlb.FlushAll();
        _pendingFlushes.Clear();
    }

    /// <summary>Allocates a zeroed page-table page (__get_free_page(GFP_PGTABLE_KERNEL)), or -1.</summary>
    public long AllocPageTablePage() => Mem.AllocPages(0, FrameOwner.PageTable);

    // ---------------------------------------------------------------------------------------
    // Tasks, CPUs, locks, RCU
    // ---------------------------------------------------------------------------------------

    /// <summary>Starts <paramref name="task"/> on an idle CPU. Returns false if the CPU is busy.</summary>
    public bool StartTask(int cpu, KernelTask task)
    {
        var c = Cpus[cpu];
        if (!c.Idle) return false;
        task.Id = _nextTaskId++;
        var ctx = c.Push(task, irq: false);
        ctx.Body = task.Run(this, ctx).GetEnumerator();
        _liveTasks.Add(task);
        return true;
    }

    /// <summary>Raises an interrupt on <paramref name="cpu"/>; the handler runs above whatever
    /// runs there, at the CPU's next step, unless interrupts are disabled (then it waits).</summary>
    public void RaiseIrq(int cpu, KernelTask handler)
    {
        handler.Id = _nextTaskId++;
        _liveTasks.Add(handler);
        Cpus[cpu].QueueIrq(handler);
    }

    /// <summary>Advances one step on <paramref name="cpu"/>: delivers a pending interrupt if
    /// allowed, else steps the top context. Returns what happened, with the action the step
    /// performed (also on <see cref="Smp.Cpu.LastStep"/>); the step that ends a task is named
    /// <see cref="StepStatus.ReturnAction"/>.</summary>
    public StepStatus? StepCpu(int cpu)
    {
        var c = Cpus[cpu];
        if (c.PendingIrqs > 0 && !c.IrqsDisabled && c.TryDequeueIrq(out var handler))
        {
            var hctx = c.Push(handler, irq: true);
            hctx.Body = handler.Run(this, hctx).GetEnumerator();
        }
        var top = c.Top;
        if (top is null) return null;
        if (top.Hung) return c.Took(top, StepStatus.Blocked);
        Current = top;
        try
        {
            if (top.Body!.MoveNext()) return c.Took(top, top.Body.Current);
            FinishContext(c, top);
            return c.Took(top, StepStatus.Return);
        }
        finally
        {
            Current = null;
        }
    }

    /// <summary>Runs the task on top of <paramref name="cpu"/> until it finishes or blocks.
    /// Returns true if it finished. Bounded: a task that makes progress forever is a model bug.</summary>
    public bool RunToCompletionOrBlock(int cpu, KernelTask task, int maxSteps = 1_000_000)
    {
        for (int i = 0; i < maxSteps; i++)
        {
            if (task.Done) return true;
            var st = StepCpu(cpu);
            if (st is null) return task.Done;
            if (st == StepStatus.Blocked) { Note("task.blocked"); return false; }
        }
        throw new ModelBugException($"task {task.Name} on cpu{cpu} did not finish in {maxSteps} steps");
    }

    private void FinishContext(Smp.Cpu c, ExecContext ctx)
    {
        if (ctx.Held.Count > 0)
            RecordFault(FaultKind.KernelBug, ctx, 0, $"{ctx.Task.Name} returned holding {string.Join(", ", ctx.Held)}");
        if (ctx.RcuDepth > 0)
            RecordFault(FaultKind.KernelBug, ctx, 0, $"{ctx.Task.Name} returned inside an RCU read-side section");
        foreach (var l in ctx.Held) l.Holder = null;
        ctx.Held.Clear();
        ctx.RcuDepth = 0;
        ctx.Task.Done = true;
        _liveTasks.Remove(ctx.Task);
        c.Pop(ctx);
    }

    /// <summary>spin_lock: one step to take the lock; blocks while it is held. A wait that can
    /// never end (the holder is below us on the same CPU, or a waits-for cycle) is a deadlock,
    /// recorded once.</summary>
    public IEnumerable<StepStatus> SpinLock(ExecContext ctx, KernelLock l) => SpinLock(ctx, l, stepWhenTaken: true);

    /// <summary>spin_lock; with <paramref name="stepWhenTaken"/> false, taking a free lock is
    /// part of the caller's next action (one step: lock and store), which keeps a lock and the
    /// entry change it guards indivisible for the other CPUs' observers.</summary>
    public IEnumerable<StepStatus> SpinLock(ExecContext ctx, KernelLock l, bool stepWhenTaken)
    {
        bool reported = false;
        while (l.Holder is not null)
        {
            ctx.WaitingFor = l;
            if (!reported && IsDeadlocked(ctx, out string cycle))
            {
                RecordFault(FaultKind.Deadlock, ctx, 0, cycle);
                reported = true;
            }
            yield return StepStatus.Blocked;
        }
        ctx.WaitingFor = null;
        l.Holder = ctx;
        ctx.Held.Add(l);
        if (stepWhenTaken) yield return l.Taken;
    }

    /// <summary>Takes a lock without a step boundary (for one-shot operations); false if held.</summary>
    public bool TryLock(ExecContext ctx, KernelLock l)
    {
        if (l.Holder is not null) return false;
        l.Holder = ctx;
        ctx.Held.Add(l);
        return true;
    }

    public void SpinUnlock(ExecContext ctx, KernelLock l)
    {
        if (l.Holder != ctx) throw new ModelBugException($"{ctx} unlocks {l} held by {l.Holder?.ToString() ?? "nobody"}");
        l.Holder = null;
        ctx.Held.Remove(l);
    }

    private bool IsDeadlocked(ExecContext waiter, out string evidence)
    {
        var chain = new List<string>();
        var seen = new HashSet<ExecContext>();
        ExecContext? cur = waiter;
        while (cur is not null && cur.WaitingFor is { } lk && lk.Holder is { } holder)
        {
            chain.Add($"{cur} waits for {lk.Name} held by {holder}");
            if (holder == waiter || !seen.Add(cur)) { evidence = string.Join("; ", chain); return true; }
            // The holder is below the waiter on the same CPU: it cannot run until the waiter returns.
            var cpu = Cpus[holder.CpuId];
            if (holder.CpuId == cur.CpuId && holder.Depth < cur.Depth)
            {
                evidence = string.Join("; ", chain) + $" — interrupted on the same CPU{(cur.InIrq ? " (IRQ context)" : "")}";
                return true;
            }
            // Or the holder is itself interrupted by a context that waits (forever) above it.
            if (cpu.Top != holder && cpu.Top is { } above && above.WaitingFor is not null && above != cur)
            {
                cur = above;
                continue;
            }
            cur = holder;
        }
        evidence = "";
        return false;
    }

    /// <summary>rcu_read_lock.</summary>
    public void RcuReadLock(ExecContext ctx)
    {
        if (ctx.RcuDepth++ == 0) ctx.RcuReaderSince = Rcu.GpSeq;
    }

    /// <summary>rcu_read_unlock.</summary>
    public void RcuReadUnlock(ExecContext ctx)
    {
        if (ctx.RcuDepth <= 0) throw new ModelBugException($"{ctx}: rcu_read_unlock without rcu_read_lock");
        if (--ctx.RcuDepth == 0) ctx.RcuReaderSince = -1;
    }

    /// <summary>Readers currently inside an RCU read-side section, with the grace-period sequence
    /// at which they entered.</summary>
    public IEnumerable<ExecContext> RcuReaders() =>
        Cpus.SelectMany(c => c.Contexts).Where(x => x.RcuDepth > 0);

    /// <summary>synchronize_rcu: blocks until every reader that was inside when it began has left.</summary>
    public IEnumerable<StepStatus> SynchronizeRcu(ExecContext ctx)
    {
        long seq = ++Rcu.GpSeq;
        var before = RcuReaders().Where(r => r != ctx && r.RcuReaderSince < seq).ToList();
        yield return StepStatus.After("synchronize_rcu");
        if (!Variant.BrokenSynchronizeRcuNoWait)
        {
            while (before.Any(r => r.RcuDepth > 0 && r.RcuReaderSince < seq))
                yield return StepStatus.Blocked;
        }
        var still = before.Where(r => r.RcuDepth > 0 && r.RcuReaderSince < seq).Select(r => r.ToString()).ToList();
        Rcu.Completed.Add((seq, ctx.ToString(), still));
    }
}
