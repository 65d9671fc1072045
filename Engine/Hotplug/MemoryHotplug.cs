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
// The entry points are in AddMemory.cs (add_memory, memremap_pages, arch_add_memory),
// OnlineOffline.cs (online_pages, offline_pages) and RemoveMemory.cs (remove_memory,
// memunmap_pages, arch_remove_memory); this file holds the sections' state, the lock and the
// range checks. The architecture's parts are in HotplugArm64.cs (arch/arm64/mm/mmu.c: unmap_hotplug_range,
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
// - offline_pages migrates page-cache pages (do_migrate_range, OnlineOffline.cs) and in-use
//   hugetlbfs folios (HugetlbMigration.cs, with its own departures); a HugeTLB folio a kernel
//   caller holds (`hugetlb_alloc`) is not migratable and fails the offline with EBUSY. Pageblock
//   isolation is modelled only as far as HugeTLB allocations go (dequeue and the buddy skip the
//   isolated range); any other page allocated from the range while the offline runs fails it with
//   EBUSY. Where the kernel retries migration until it succeeds or a signal arrives (-EINTR), the
//   model makes one pass and returns EBUSY for a page that did not move. Boot memory is never offlined on x86-64 either (EBUSY): freeing bootmem vmemmap
//   (free_pagetable's bootmem path) is not modelled.
// - Sub-section (ZONE_DEVICE) hot-plug is offered only where a sub-section's memmap is a whole
//   number of vmemmap pages (4K base pages); elsewhere memremap_pages returns EINVAL.
// - memmap_on_memory (MHP_MEMMAP_ON_MEMORY, mm/memory_hotplug.c create_altmaps_and_memory_blocks,
//   v6.8 and later: one altmap per memory block) is asked for by the add_memory operation's
//   `memmap_on_memory` word, which stands for both the driver's flag and the
//   memory_hotplug.memmap_on_memory parameter; see AddMemory.cs for the conditions.
// - No zones beyond one counter of online pages, no memory
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
    /// <summary>memmap_on_memory: how many of the section's first pages hold its own memmap
    /// (the vmem_altmap of its memory block; 0 when the memmap came from the page allocator).</summary>
    public long AltmapPages { get; internal set; }
    /// <summary>Pages of the altmap handed out so far (vmem_altmap's alloc).</summary>
    internal long AltmapUsed { get; set; }
}

/// <summary>What an invariant may read of memory hot-plug.</summary>
public interface IHotplugView
{
    /// <summary>The first section of the hot-plug range (boot memory ends there).</summary>
    long FirstHotplugSection { get; }
    long SubsectionPages { get; }
    int SubsectionsPerSection { get; }
    MemSectionInfo Section(long nr);
    /// <summary>The sections whose Device mark is set, ascending.</summary>
    IReadOnlyCollection<long> DeviceSections { get; }
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
    private readonly SortedSet<long> _deviceSections = new();

    public IReadOnlyCollection<long> DeviceSections => _deviceSections;

    /// <summary>Sets a section's ZONE_DEVICE mark, keeping <see cref="DeviceSections"/>.</summary>
    private void SetSectionDevice(MemSectionInfo info, bool device)
    {
        info.Device = device;
        if (device) _deviceSections.Add(info.Nr);
        else _deviceSections.Remove(info.Nr);
    }
    private readonly List<(long Pfn, long Count)> _vmemmapInFlight = new();
    // The PFN ranges offline_pages has isolated (start_isolate_page_range) and not yet taken
    // offline or given back (undo_isolate_page_range).
    private readonly List<(long Pfn, long Nr)> _isolated = new();

    /// <summary>is_migrate_isolate_page: whether <paramref name="pfn"/>'s pageblock is
    /// MIGRATE_ISOLATE (inside a range an offline_pages is working on).</summary>
    [Kernel("include/linux/page-isolation.h", "is_migrate_isolate_page")]
    public bool IsMigrateIsolatePage(long pfn)
    {
        foreach (var (p, n) in _isolated)
            if (pfn >= p && pfn < p + n) return true;
        return false;
    }
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
}
