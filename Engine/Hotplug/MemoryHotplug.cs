// mm/memory_hotplug.c and mm/memremap.c (v6.12): memory blocks beside boot memory and their life
// cycle, each entry point a task whose steps are the kernel-visible actions (entry stores,
// flushes, frees, lock operations):
//
//   add_memory(start, size)      register_memory_resource (EEXIST over present memory),
//                                check_hotplug_memory_range (EINVAL unless memory-block aligned),
//                                mhp_range_allowed (ERANGE outside the hot-plug range), then under
//                                mem_hotplug_begin arch_add_memory: the linear map, then
//                                __add_pages → sparse_add_section → vmemmap_populate of each
//                                section's memmap from the page allocator. ENOMEM unwinds both.
//                                The block is left offline (no auto-online).
//   online_pages(pfn, nr)        the block's pages go to the buddy (generic_online_page).
//   offline_pages(pfn, nr)       the arm64 boot-memory notifier (NOTIFY_BAD → EPERM); isolation
//                                (unmovable pages → EBUSY); dissolve_free_hugetlb_folios, whose
//                                vmemmap restore can fail (its ENOMEM is returned); the free pages
//                                leave the buddy.
//   remove_memory(start, size)   EBUSY while a block is online; arch_remove_memory: __remove_pages
//                                (vmemmap_free per section) then the linear map's teardown.
//   memremap_pages / memunmap_pages   ZONE_DEVICE memory at sub-section granularity.
//
// The architecture's parts are in HotplugArm64.cs (arch/arm64/mm/mmu.c: unmap_hotplug_range,
// free_empty_tables, __remove_pgd_mapping, vmemmap_free) and HotplugX86.cs
// (arch/x86/mm/init_64.c: remove_pagetable); the ptdump walker in Ptdump.cs (mm/ptdump.c).
// mem_hotplug_lock is the per-CPU rw semaphore (PercpuRwSemaphore.cs).
//
// Departures from the kernel:
// - A memory block is one memory section (memory_block_size_bytes() is the section size on
//   arm64 and on x86-64 machines below 64 GiB). The hot-plug range is the machine's
//   MachineConfig.HotplugBytes right above boot memory; it stands for the arch's mappable range.
// - Hot-added memory is mapped with blocks up to PMD size and no contiguous bit, on both
//   architectures (the model's boot map is block-mapped, as with rodata=off; on arm64 the 2025
//   review of Zhenhua Huang's work kept PUD blocks and CONT out of hot-added ranges; inferred).
// - offline_pages does not migrate: an in-use HugeTLB folio or page-cache page in the block, or a
//   page allocated from it while the offline runs (isolation is not modelled), fails it with
//   EBUSY. Boot memory is never offlined on x86-64 either (EBUSY): freeing bootmem vmemmap
//   (free_pagetable's bootmem path) is not modelled.
// - Sub-section (ZONE_DEVICE) hot-plug is offered only where a sub-section's memmap is a whole
//   number of vmemmap pages (4K base pages); elsewhere memremap_pages returns EINVAL.
// - No memmap_on_memory (altmap) yet, no zones beyond one counter of online pages, no memory
//   notifiers other than arm64's boot-memory one. lock_device_hotplug is folded into
//   mem_hotplug_lock: online, offline and remove check the blocks' state after
//   mem_hotplug_begin, as the kernel checks them under the device hotplug lock.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Hotplug;

/// <summary>What mm/sparse.c's mem_section and the memory block of one section hold.</summary>
public sealed class MemSectionInfo
{
    internal MemSectionInfo(long nr, bool early)
    {
        Nr = nr;
        Early = early;
    }

    public long Nr { get; }
    /// <summary>SECTION_IS_EARLY: present at boot.</summary>
    public bool Early { get; }
    /// <summary>The add_memory / memremap_pages call that made the memory present (0: boot).
    /// Memory added by different calls has different lifetimes.</summary>
    public int AddId { get; internal set; }
    /// <summary>ZONE_DEVICE memory (memremap_pages), present by sub-sections.</summary>
    public bool Device { get; internal set; }
    /// <summary>Present sub-sections (subsection_map), bit i for sub-section i.</summary>
    public ulong SubsectionMap { get; internal set; }
    /// <summary>The memremap_pages call of each present sub-section (device memory only).</summary>
    internal int[] SubsectionAddId { get; } = new int[64];
}

/// <summary>What an invariant may read of memory hot-plug.</summary>
public interface IHotplugView
{
    /// <summary>The first section of the hot-plug range (boot memory ends there).</summary>
    long FirstHotplugSection { get; }
    long SubsectionPages { get; }
    int SubsectionsPerSection { get; }
    MemSectionInfo Section(long nr);
    /// <summary>Pages of online sections by the zone's count (zone->present_pages of what is online).</summary>
    long NrOnlinePages { get; }
    /// <summary>Table pages walkers hold in the middle of a walk.</summary>
    IReadOnlyList<HeldTable> HeldTables { get; }
    /// <summary>The lifetime of the memory at <paramref name="pfn"/>: "boot", "blockN" (a
    /// memory block), "devN" (a memremap_pages call), or null when absent.</summary>
    string? LifetimeOf(long pfn);
    /// <summary>Whether an add or a remove has the PFN's range claimed (register_memory_resource
    /// done, release not yet): memory in transition.</summary>
    bool IsClaimed(long pfn);
}

public sealed partial class MemoryHotplug : KernelCode, IHotplugView
{
    private readonly MemSectionInfo[] _sections;
    private readonly List<(long Pfn, long Count)> _vmemmapInFlight = new();
    // The iomem resources of hot-plugged memory, [Start, End) in PFNs: claimed by
    // register_memory_resource before the add starts, released once the remove is done.
    private readonly List<(long Start, long End, bool Device)> _resources = new();
    private int _nextAddId;
    private readonly HotplugOptions _options;
    private readonly HotplugBreakage _broken;

    /// <summary>mem_hotplug_lock.</summary>
    public PercpuRwSemaphore MemHotplugLock { get; } = new("mem_hotplug_lock");
    public TableWalkers Walkers { get; } = new();

    public long FirstHotplugSection { get; }
    public long NrOnlinePages { get; private set; }
    /// <summary>PAGES_PER_SUBSECTION: 2 MiB of memory (SUBSECTION_SHIFT 21).</summary>
    public long SubsectionPages => (2L << 20) >> Arch.PageShift;
    public int SubsectionsPerSection => (int)(Arch.PagesPerSection / SubsectionPages);

    internal MemoryHotplug(Kernel k) : base(k)
    {
        _options = k.Variant.Hotplug;
        _broken = k.Variant.HotplugBreakage;
        FirstHotplugSection = k.Machine.MemoryBytes / Arch.SectionSize;
        _sections = new MemSectionInfo[Mem.NrSections];
        for (long s = 0; s < _sections.Length; s++) _sections[s] = new MemSectionInfo(s, early: s < FirstHotplugSection);
        NrOnlinePages = FirstHotplugSection * Arch.PagesPerSection;
    }

    public MemSectionInfo Section(long nr) => _sections[nr];
    IReadOnlyList<HeldTable> IHotplugView.HeldTables => Walkers.Held;

    /// <summary>Frames this mechanism holds offline (present, not given to the buddy): its own
    /// record, kept where add, online, offline and remove move pages.</summary>
    public long OfflineFrames { get; private set; }

    /// <summary>Vmemmap frames pass 1 has unmapped and not yet freed.</summary>
    public IEnumerable<(long Pfn, long Count)> VmemmapFramesInFlight => _vmemmapInFlight;

    public string? LifetimeOf(long pfn)
    {
        long s = Mem.PfnToSection(pfn);
        if (s < 0 || s >= _sections.Length) return null;
        var info = _sections[s];
        if (info.Early) return "boot";
        var st = Mem.SectionStateOf(s);
        if (st is SectionState.Absent or SectionState.Removed) return null;
        if (!info.Device) return $"block{s}";
        int sub = (int)((pfn - s * Arch.PagesPerSection) / SubsectionPages);
        return (info.SubsectionMap & (1UL << sub)) == 0 ? null : $"dev{info.SubsectionAddId[sub]}";
    }

    // ---------------------------------------------------------------------------------------
    // Locking
    // ---------------------------------------------------------------------------------------

    /// <summary>get_online_mems: mem_hotplug_lock for read.</summary>
    [Kernel("mm/memory_hotplug.c", "get_online_mems")]
    public IEnumerable<StepStatus> GetOnlineMems(ExecContext ctx) => MemHotplugLock.PercpuDownRead(ctx);

    [Kernel("mm/memory_hotplug.c", "put_online_mems")]
    public void PutOnlineMems(ExecContext ctx) => MemHotplugLock.PercpuUpRead(ctx);

    /// <summary>mem_hotplug_begin: mem_hotplug_lock for write (cpus_read_lock is not modelled).</summary>
    [Kernel("mm/memory_hotplug.c", "mem_hotplug_begin")]
    public IEnumerable<StepStatus> MemHotplugBegin(ExecContext ctx) => MemHotplugLock.PercpuDownWrite(ctx);

    [Kernel("mm/memory_hotplug.c", "mem_hotplug_done")]
    public void MemHotplugDone(ExecContext ctx) => MemHotplugLock.PercpuUpWrite(ctx);

    // ---------------------------------------------------------------------------------------
    // Range checks
    // ---------------------------------------------------------------------------------------

    private bool InHotplugRange(long pfn, long nr) => pfn >= FirstHotplugSection * Arch.PagesPerSection && pfn + nr <= Mem.MaxPfn;

    /// <summary>Sections [first, last] covered by the PFN range.</summary>
    private (long First, long Last) Sections(long pfn, long nr) => (Mem.PfnToSection(pfn), Mem.PfnToSection(pfn + nr - 1));

    /// <summary>Whether [pfn, +nr) overlaps boot memory or a claimed resource.</summary>
    private bool Conflicts(long pfn, long nr, out bool device)
    {
        device = false;
        if (pfn < FirstHotplugSection * Arch.PagesPerSection) return true;
        foreach (var (s, e, d) in _resources)
            if (pfn < e && s < pfn + nr) { device = d; return true; }
        return false;
    }

    public bool IsClaimed(long pfn) => _resources.Any(r => pfn >= r.Start && pfn < r.End);

    /// <summary>release_mem_region_adjustable: [pfn, +nr) is no longer claimed.</summary>
    private void ReleaseResource(long pfn, long nr)
    {
        long end = pfn + nr;
        for (int i = _resources.Count - 1; i >= 0; i--)
        {
            var (s, e, d) = _resources[i];
            if (e <= pfn || s >= end) continue;
            _resources.RemoveAt(i);
            if (s < pfn) _resources.Add((s, pfn, d));
            if (e > end) _resources.Add((end, e, d));
        }
        _resources.Sort();
    }

    /// <summary>register_memory_resource, check_hotplug_memory_range and mhp_range_allowed, in
    /// the order __add_memory meets them.</summary>
    private Errno CheckAdd(long start, long size, long granule)
    {
        if (size <= 0) return Errno.EINVAL;
        long pfn = start >> Arch.PageShift, nr = size >> Arch.PageShift;
        if (start >= 0 && pfn < Mem.MaxPfn && Conflicts(pfn, nr, out _)) return Errno.EEXIST;
        if (start % granule != 0 || size % granule != 0) return Errno.EINVAL;
        if (!InHotplugRange(pfn, nr)) return Errno.ERANGE;
        return Errno.Ok;
    }

    // ---------------------------------------------------------------------------------------
    // add_memory
    // ---------------------------------------------------------------------------------------

    /// <summary>add_memory: the block(s) [start, start + size) become present and offline.</summary>
    [Kernel("mm/memory_hotplug.c", "add_memory")]
    public IEnumerable<StepStatus> AddMemory(ExecContext ctx, long start, long size, Ret<Errno> rc)
    {
        rc.Value = CheckAdd(start, size, Arch.SectionSize);
        if (rc.Value != Errno.Ok)
        {
            Note($"memory_hotplug.add_memory.{rc.Value}");
            yield return StepStatus.After("register_memory_resource");
            yield break;
        }
        _resources.Add((start >> Arch.PageShift, (start + size) >> Arch.PageShift, false)); // register_memory_resource
        foreach (var s in MemHotplugBegin(ctx)) yield return s;
        foreach (var s in ArchAddMemory(ctx, start, size, device: false, rc)) yield return s;
        MemHotplugDone(ctx);
        if (rc.Value != Errno.Ok) ReleaseResource(start >> Arch.PageShift, size >> Arch.PageShift);
        Note($"memory_hotplug.add_memory.{rc.Value}");
        yield return StepStatus.After("mem_hotplug_done");
    }

    /// <summary>memremap_pages for MEMORY_DEVICE_GENERIC: ZONE_DEVICE memory at sub-section
    /// granularity (check_pfn_span), never online.</summary>
    [Kernel("mm/memremap.c", "memremap_pages")]
    public IEnumerable<StepStatus> MemremapPages(ExecContext ctx, long start, long size, Ret<Errno> rc)
    {
        long subsectionBytes = SubsectionPages << Arch.PageShift;
        bool wholePages = SubsectionPages * ArchConfig.StructPageSize % Arch.PageSize == 0;
        rc.Value = wholePages ? CheckAdd(start, size, subsectionBytes) : Errno.EINVAL;
        if (rc.Value == Errno.Ok)
        {
            // A System RAM block and device memory never share a section.
            var (first, last) = Sections(start >> Arch.PageShift, size >> Arch.PageShift);
            if (Conflicts(first * Arch.PagesPerSection, (last - first + 1) * Arch.PagesPerSection, out bool device) && !device) rc.Value = Errno.EEXIST;
        }
        if (rc.Value != Errno.Ok)
        {
            Note($"memremap.memremap_pages.{rc.Value}");
            yield return StepStatus.After("pagemap_range");
            yield break;
        }
        _resources.Add((start >> Arch.PageShift, (start + size) >> Arch.PageShift, true));
        foreach (var s in MemHotplugBegin(ctx)) yield return s;
        foreach (var s in ArchAddMemory(ctx, start, size, device: true, rc)) yield return s;
        MemHotplugDone(ctx);
        if (rc.Value != Errno.Ok) ReleaseResource(start >> Arch.PageShift, size >> Arch.PageShift);
        Note($"memremap.memremap_pages.{rc.Value}");
        yield return StepStatus.After("mem_hotplug_done");
    }

    /// <summary>arch_add_memory: the linear map, then __add_pages; on ENOMEM the sections added
    /// so far and the linear map are torn down again.</summary>
    [Kernel("arch/arm64/mm/mmu.c", "arch_add_memory")]
    private IEnumerable<StepStatus> ArchAddMemory(ExecContext ctx, long start, long size, bool device, Ret<Errno> rc)
    {
        long pfn = start >> Arch.PageShift, nr = size >> Arch.PageShift;
        ulong va = Arch.PfnToVirt(pfn), vaEnd = Arch.PfnToVirt(pfn + nr);
        var err = new Ret<Errno>(Errno.Ok);
        foreach (var s in CreateLinearMapping(ctx, va, pfn, nr, err)) yield return s;
        int id = ++_nextAddId;
        var added = new List<(long Pfn, long Nr)>();
        if (err.Value == Errno.Ok)
        {
            // __add_pages: one sparse_add_section per section (or part of one).
            for (long p = pfn; p < pfn + nr && err.Value == Errno.Ok;)
            {
                long s = Mem.PfnToSection(p), sEnd = Math.Min(pfn + nr, (s + 1) * Arch.PagesPerSection);
                foreach (var st in SparseAddSection(ctx, p, sEnd - p, device, id, err)) yield return st;
                if (err.Value == Errno.Ok) added.Add((p, sEnd - p));
                p = sEnd;
            }
        }
        if (err.Value != Errno.Ok)
        {
            foreach (var (p, n) in added)
            {
                foreach (var st in SparseRemoveSection(ctx, p, n)) yield return st;
                MarkAbsent(p, n);
            }
            foreach (var st in RemoveLinearMap(ctx, va, vaEnd)) yield return st;
            rc.Value = err.Value;
            yield break;
        }
        rc.Value = Errno.Ok;
    }

    /// <summary>The linear map of hot-added memory (arm64 __create_pgd_mapping, x86
    /// kernel_physical_mapping_init): leaves up to PMD size where aligned, no contiguous bit, one
    /// entry store per step. ENOMEM for a table stops it (the caller unwinds).</summary>
    private IEnumerable<StepStatus> CreateLinearMapping(ExecContext ctx, ulong va, long pfn, long nr, Ret<Errno> err)
    {
        long end = pfn + nr;
        long pmdPages = Arch.PmdSize >> Arch.PageShift;
        bool pmdLeaf = Arch.LeafAllowed(PtLevel.Pmd) && (int)PtLevel.Pmd < Arch.Levels;
        while (pfn < end)
        {
            var level = pmdLeaf && (pfn & (pmdPages - 1)) == 0 && pfn + pmdPages <= end ? PtLevel.Pmd : PtLevel.Pte;
            var t = InitMm.WalkAlloc(va, level, K.Pgtable.AllocPageTablePage, out var e);
            if (t is null)
            {
                if (e != Errno.ENOMEM) throw new ModelBugException($"hot-add linear map at {va:x}: {e} (a leaf already covers it)");
                err.Value = Errno.ENOMEM;
                yield return StepStatus.After("__pgd_pgtable_alloc");
                yield break;
            }
            int i = InitMm.Index(va, level);
            if (!t.Entries[i].IsNone) throw new ModelBugException($"hot-add linear map at {va:x}: {level} entry already {t.Entries[i]}");
            InitMm.Set(t, i, Pte.MkLeaf(pfn, writable: true));
            yield return StepStatus.After(level == PtLevel.Pmd ? "set_pmd" : "set_pte");
            long pages = Arch.LevelSize(level) >> Arch.PageShift;
            pfn += pages;
            va += (ulong)Arch.LevelSize(level);
        }
    }

    /// <summary>sparse_add_section → section_activate → populate_section_memmap: the memmap of
    /// [pfn, +nr) (a whole section, or sub-sections of one), then the section is present.</summary>
    [Kernel("mm/sparse.c", "sparse_add_section")]
    private IEnumerable<StepStatus> SparseAddSection(ExecContext ctx, long pfn, long nr, bool device, int id, Ret<Errno> err)
    {
        long s = Mem.PfnToSection(pfn);
        bool wholeSection = nr == Arch.PagesPerSection;
        // x86 vmemmap_populate and arm64's since the 2025 fix: base pages for less than a section.
        bool pmd = Arch.VmemmapMappedByPmd && (wholeSection || _options.Arm64VmemmapPmdForSubsections || _broken.SubsectionVmemmapPmd);
        foreach (var st in VmemmapPopulate(ctx, pfn, nr, pmd, err)) yield return st;
        if (err.Value != Errno.Ok)
        {
            // section_activate's failure path: section_deactivate depopulates what was mapped.
            foreach (var st in SparseRemoveSection(ctx, pfn, nr)) yield return st;
            yield break;
        }
        var info = _sections[s];
        info.AddId = id;
        info.Device = device;
        if (device)
        {
            int first = (int)((pfn - s * Arch.PagesPerSection) / SubsectionPages), count = (int)(nr / SubsectionPages);
            for (int i = first; i < first + count; i++)
            {
                info.SubsectionMap |= 1UL << i;
                info.SubsectionAddId[i] = id;
            }
        }
        Mem.SetOwner(pfn, nr, FrameOwner.Offline);
        OfflineFrames += nr;
        if (Mem.SectionStateOf(s) is SectionState.Absent or SectionState.Removed) Mem.SetSectionState(s, SectionState.Present);
        yield return StepStatus.After("section_activate");
    }

    /// <summary>vmemmap_populate (vmemmap_populate_hugepages or _basepages) of the struct pages of
    /// [pfn, +nr), backing and tables from the page allocator, one leaf per step. A PMD already
    /// populated (by a sub-section of the same section) is left as it is.</summary>
    [Kernel("mm/sparse-vmemmap.c", "vmemmap_populate")]
    private IEnumerable<StepStatus> VmemmapPopulate(ExecContext ctx, long pfn, long nr, bool pmd, Ret<Errno> err)
    {
        ulong start = PfnToPage(pfn), end = PfnToPage(pfn + nr);
        var level = pmd ? PtLevel.Pmd : PtLevel.Pte;
        ulong step = (ulong)Arch.LevelSize(level);
        for (ulong va = start & ~(step - 1); va < end; va += step)
        {
            var t = InitMm.WalkAlloc(va, level, K.Pgtable.AllocPageTablePage, out var e);
            if (t is null)
            {
                if (e != Errno.ENOMEM) throw new ModelBugException($"vmemmap_populate at {va:x}: {e} (a leaf already covers it)");
                err.Value = Errno.ENOMEM;
                yield return StepStatus.After("vmemmap_alloc_block");
                yield break;
            }
            int i = InitMm.Index(va, level);
            if (pmd && t.Entries[i].IsTable)
            {
                // vmemmap_populate_hugepages: a PMD that is a table (left by an earlier base-page
                // population) is populated with base pages.
                long p0 = Math.Max(pfn, PageToPfn(va)), p1 = Math.Min(pfn + nr, PageToPfn(va + step));
                foreach (var st in VmemmapPopulate(ctx, p0, p1 - p0, pmd: false, err)) yield return st;
                if (err.Value != Errno.Ok) yield break;
                continue;
            }
            if (!t.Entries[i].IsNone) continue; // vmemmap_verify: already populated
            long frame = Mem.AllocPages(pmd ? Arch.PmdShift - Arch.PageShift : 0, FrameOwner.Vmemmap);
            if (frame < 0)
            {
                err.Value = Errno.ENOMEM;
                yield return StepStatus.After("vmemmap_alloc_block");
                yield break;
            }
            InitMm.Set(t, i, Pte.MkLeaf(frame, writable: true));
            yield return StepStatus.After(pmd ? "vmemmap_set_pmd" : "vmemmap_pte_populate");
        }
    }

    /// <summary>sparse_remove_section → section_deactivate → depopulate_section_memmap
    /// (vmemmap_free) for [pfn, +nr).</summary>
    [Kernel("mm/sparse.c", "sparse_remove_section")]
    private IEnumerable<StepStatus> SparseRemoveSection(ExecContext ctx, long pfn, long nr)
    {
        foreach (var st in VmemmapFreeArch(ctx, PfnToPage(pfn), PfnToPage(pfn + nr))) yield return st;
    }

    // ---------------------------------------------------------------------------------------
    // online / offline
    // ---------------------------------------------------------------------------------------

    private Errno CheckBlocks(long pfn, long nr, out long first, out long last)
    {
        first = last = -1;
        if (nr <= 0 || pfn < 0 || pfn % Arch.PagesPerSection != 0 || nr % Arch.PagesPerSection != 0 || pfn + nr > Mem.MaxPfn) return Errno.EINVAL;
        (first, last) = Sections(pfn, nr);
        for (long s = first; s <= last; s++)
            if (Mem.SectionStateOf(s) is SectionState.Absent or SectionState.Removed || _sections[s].Device) return Errno.EINVAL;
        return Errno.Ok;
    }

    /// <summary>online_pages: every page of the offline block(s) goes to the buddy.</summary>
    [Kernel("mm/memory_hotplug.c", "online_pages")]
    public IEnumerable<StepStatus> OnlinePages(ExecContext ctx, long pfn, long nr, Ret<Errno> rc)
    {
        foreach (var s in MemHotplugBegin(ctx)) yield return s;
        rc.Value = CheckBlocks(pfn, nr, out long first, out long last);
        if (rc.Value == Errno.Ok)
        {
            for (long s = first; s <= last; s++)
            {
                if (Mem.SectionStateOf(s) == SectionState.Online) continue; // memory_block already online
                long p = s * Arch.PagesPerSection;
                Mem.FreeContigPages(p, Arch.PagesPerSection, FrameOwner.Offline, "generic_online_page");
                OfflineFrames -= Arch.PagesPerSection;
                Mem.SetSectionState(s, SectionState.Online);
                NrOnlinePages += Arch.PagesPerSection;
                yield return StepStatus.After("online_pages_range");
            }
        }
        MemHotplugDone(ctx);
        Note($"memory_hotplug.online_pages.{rc.Value}");
        yield return StepStatus.After("online_pages");
    }

    /// <summary>offline_pages: EPERM for arm64 boot memory (prevent_bootmem_remove_notifier's
    /// NOTIFY_BAD through notifier_to_errno), EBUSY for unmovable pages, the dissolve's error
    /// for a free HugeTLB folio whose vmemmap cannot be restored; else the pages leave the buddy.</summary>
    [Kernel("mm/memory_hotplug.c", "offline_pages")]
    public IEnumerable<StepStatus> OfflinePages(ExecContext ctx, long pfn, long nr, Ret<Errno> rc)
    {
        foreach (var s in MemHotplugBegin(ctx)) yield return s;
        rc.Value = CheckBlocks(pfn, nr, out long first, out long last);
        if (rc.Value == Errno.Ok && _sections[first].Early)
            rc.Value = Arch.Arch == PropertySuite.Engine.Config.Arch.Arm64 ? Errno.EPERM : Errno.EBUSY;
        bool allOffline = rc.Value == Errno.Ok;
        for (long s = first; allOffline && s <= last; s++) allOffline = Mem.SectionStateOf(s) != SectionState.Online;
        if (rc.Value != Errno.Ok || allOffline)
        {
            MemHotplugDone(ctx);
            Note($"memory_hotplug.offline_pages.{rc.Value}");
            yield return StepStatus.After("offline_pages");
            yield break;
        }
        // start_isolate_page_range / has_unmovable_pages: anything but free pages and HugeTLB
        // folios (which offlining can dissolve or migrate) makes the block unmovable here.
        for (long s = first; s <= last && rc.Value == Errno.Ok; s++)
        {
            long p = s * Arch.PagesPerSection, n = Arch.PagesPerSection;
            if (Mem.SectionStateOf(s) != SectionState.Online) rc.Value = Errno.EINVAL;
            else if (Mem.CountOwned(p, n, FrameOwner.Free) + Mem.CountOwned(p, n, FrameOwner.HugetlbFolio) != n) rc.Value = Errno.EBUSY;
        }
        yield return StepStatus.After("start_isolate_page_range");
        if (rc.Value == Errno.Ok)
        {
            // dissolve_free_hugetlb_folios: a folio in use is EBUSY (no migration in the model).
            var folios = K.Hugetlb.AllFoliosByPfn().Where(f => f.HeadPfn < pfn + nr && f.HeadPfn + f.NrPages > pfn).ToList();
            foreach (var f in folios)
            {
                var ret = new Ret<Errno>(Errno.Ok);
                foreach (var s in K.Hugetlb.DissolveFreeHugetlbFolio(ctx, f, ret)) yield return s;
                if (ret.Value != Errno.Ok) { rc.Value = ret.Value; break; }
            }
        }
        if (rc.Value == Errno.Ok)
        {
            if (!Mem.AllOwnedBy(pfn, nr, FrameOwner.Free)) rc.Value = Errno.EBUSY; // allocated meanwhile
            else
            {
                Mem.TakeFreeRange(pfn, nr, FrameOwner.Offline);
                OfflineFrames += nr;
                NrOnlinePages -= nr;
                if (!_broken.OfflineKeepsSectionOnline)
                    for (long s = first; s <= last; s++) Mem.SetSectionState(s, SectionState.Offline);
                yield return StepStatus.After("__offline_isolated_pages");
            }
        }
        MemHotplugDone(ctx);
        Note($"memory_hotplug.offline_pages.{rc.Value}");
        yield return StepStatus.After("mem_hotplug_done");
    }

    // ---------------------------------------------------------------------------------------
    // remove_memory / memunmap_pages
    // ---------------------------------------------------------------------------------------

    /// <summary>remove_memory (try_remove_memory): EBUSY while a block is online (boot memory
    /// always is), then arch_remove_memory and the section becomes absent.</summary>
    [Kernel("mm/memory_hotplug.c", "remove_memory")]
    public IEnumerable<StepStatus> RemoveMemory(ExecContext ctx, long start, long size, Ret<Errno> rc)
    {
        long pfn = start >> Arch.PageShift, nr = size >> Arch.PageShift;
        bool locked = !_broken.RemoveSkipsMemHotplugBegin;
        if (locked) foreach (var s in MemHotplugBegin(ctx)) yield return s;
        rc.Value = start % Arch.PageSize != 0 || size % Arch.PageSize != 0 ? Errno.EINVAL : CheckBlocks(pfn, nr, out _, out _);
        if (rc.Value == Errno.Ok)
        {
            var (first, last) = Sections(pfn, nr);
            for (long s = first; s <= last; s++)
                if (Mem.SectionStateOf(s) == SectionState.Online) rc.Value = Errno.EBUSY; // check_memblock_offlined_cb
        }
        if (rc.Value != Errno.Ok)
        {
            if (locked) MemHotplugDone(ctx);
            Note($"memory_hotplug.remove_memory.{rc.Value}");
            yield return StepStatus.After("try_remove_memory");
            yield break;
        }
        foreach (var s in TearDown(ctx, pfn, nr, locked)) yield return s;
        Note("memory_hotplug.remove_memory.Ok");
        yield return StepStatus.After("try_remove_memory");
    }

    /// <summary>memunmap_pages: ZONE_DEVICE sub-sections [start, +size), all present device memory.</summary>
    [Kernel("mm/memremap.c", "memunmap_pages")]
    public IEnumerable<StepStatus> MemunmapPages(ExecContext ctx, long start, long size, Ret<Errno> rc)
    {
        long pfn = start >> Arch.PageShift, nr = size >> Arch.PageShift;
        foreach (var s in MemHotplugBegin(ctx)) yield return s;
        rc.Value = size <= 0 || pfn % SubsectionPages != 0 || nr % SubsectionPages != 0 || pfn < 0 || pfn + nr > Mem.MaxPfn ? Errno.EINVAL : Errno.Ok;
        for (long p = pfn; rc.Value == Errno.Ok && p < pfn + nr; p += SubsectionPages)
        {
            var info = _sections[Mem.PfnToSection(p)];
            if (!info.Device || LifetimeOf(p) is null) rc.Value = Errno.EINVAL;
        }
        if (rc.Value != Errno.Ok)
        {
            MemHotplugDone(ctx);
            Note($"memremap.memunmap_pages.{rc.Value}");
            yield return StepStatus.After("memunmap_pages");
            yield break;
        }
        foreach (var s in TearDown(ctx, pfn, nr, locked: true)) yield return s;
        Note("memremap.memunmap_pages.Ok");
        yield return StepStatus.After("memunmap_pages");
    }

    /// <summary>Under mem_hotplug_lock (taken by the caller): arch_remove_memory (__remove_pages:
    /// vmemmap_free of each section's part; then the linear map), the memory absent, the
    /// resource released, mem_hotplug_done.</summary>
    private IEnumerable<StepStatus> TearDown(ExecContext ctx, long pfn, long nr, bool locked)
    {
        foreach (var s in ArchRemoveMemory(ctx, pfn, nr)) yield return s;
        MarkAbsent(pfn, nr);
        ReleaseResource(pfn, nr);
        if (locked) MemHotplugDone(ctx);
        yield return StepStatus.After("mem_hotplug_done");
    }

    /// <summary>The memory of [pfn, +nr) is no longer present: its sub-sections and sections are
    /// cleared (a section with no sub-section left is removed) and its frames are absent.</summary>
    private void MarkAbsent(long pfn, long nr)
    {
        for (long p = pfn; p < pfn + nr;)
        {
            long sec = Mem.PfnToSection(p), sEnd = Math.Min(pfn + nr, (sec + 1) * Arch.PagesPerSection);
            var info = _sections[sec];
            if (info.Device)
            {
                int a = (int)((p - sec * Arch.PagesPerSection) / SubsectionPages), b = (int)((sEnd - sec * Arch.PagesPerSection) / SubsectionPages);
                for (int i = a; i < b; i++) info.SubsectionMap &= ~(1UL << i);
            }
            if (!info.Device || info.SubsectionMap == 0)
            {
                Mem.SetSectionState(sec, SectionState.Removed);
                info.Device = false;
                info.AddId = 0;
            }
            OfflineFrames -= Mem.CountOwned(p, sEnd - p, FrameOwner.Offline);
            Mem.SetOwner(p, sEnd - p, FrameOwner.Absent);
            p = sEnd;
        }
    }

    /// <summary>arch_remove_memory: __remove_pages then the linear map's teardown.</summary>
    [Kernel("arch/arm64/mm/mmu.c", "arch_remove_memory")]
    private IEnumerable<StepStatus> ArchRemoveMemory(ExecContext ctx, long pfn, long nr)
    {
        for (long p = pfn; p < pfn + nr;)
        {
            long sec = Mem.PfnToSection(p), sEnd = Math.Min(pfn + nr, (sec + 1) * Arch.PagesPerSection);
            foreach (var s in SparseRemoveSection(ctx, p, sEnd - p)) yield return s;
            p = sEnd;
        }
        if (!_broken.RemoveKeepsLinearMap)
            foreach (var s in RemoveLinearMap(ctx, Arch.PfnToVirt(pfn), Arch.PfnToVirt(pfn + nr))) yield return s;
    }

    /// <summary>vmemmap_free(start, end): the architecture's teardown of a memmap range.</summary>
    private IEnumerable<StepStatus> VmemmapFreeArch(ExecContext ctx, ulong start, ulong end) =>
        Arch.Arch == PropertySuite.Engine.Config.Arch.Arm64 ? VmemmapFree(ctx, start, end) : VmemmapFreeX86(ctx, start, end);

    /// <summary>The linear map's teardown: arm64 __remove_pgd_mapping, x86 kernel_physical_mapping_remove.</summary>
    private IEnumerable<StepStatus> RemoveLinearMap(ExecContext ctx, ulong start, ulong end) =>
        Arch.Arch == PropertySuite.Engine.Config.Arch.Arm64 ? RemovePgdMapping(ctx, start, end) : KernelPhysicalMappingRemove(ctx, start, end);

    // ---------------------------------------------------------------------------------------
    // Frees, through the page allocator only (so the central event log sees every one)
    // ---------------------------------------------------------------------------------------

    private void VmemmapInFlightAdd(long pfn, long n) => _vmemmapInFlight.Add((pfn, n));

    private void VmemmapInFlightRemove(long pfn, long n)
    {
        int i = _vmemmapInFlight.IndexOf((pfn, n));
        if (i < 0) throw new ModelBugException($"vmemmap frames {pfn:x}+{n} freed without being unmapped first");
        _vmemmapInFlight.RemoveAt(i);
    }

    /// <summary>free_hotplug_page_range: a vmemmap backing block back to the buddy.</summary>
    [Kernel("arch/arm64/mm/mmu.c", "free_hotplug_page_range")]
    private void FreeHotplugPageRange(long pfn, long pages)
    {
        VmemmapInFlightRemove(pfn, pages);
        Mem.FreePages(pfn, System.Numerics.BitOperations.Log2((ulong)pages), FrameOwner.Vmemmap, "free_hotplug_page_range");
    }

    /// <summary>free_hotplug_pgtable_page: an unlinked table page back to the buddy.</summary>
    [Kernel("arch/arm64/mm/mmu.c", "free_hotplug_pgtable_page")]
    private void FreeHotplugPgtablePage(PtTable table)
    {
        InitMm.ForgetTable(table);
        Mem.FreePages(table.Pfn, 0, FrameOwner.PageTable, "free_hotplug_pgtable_page");
    }
}
