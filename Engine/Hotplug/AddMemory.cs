// mm/memory_hotplug.c add_memory and mm/memremap.c memremap_pages, with what they call:
// arch_add_memory (the linear map of the new memory, then __add_pages), sparse_add_section and
// vmemmap_populate (mm/sparse.c, mm/sparse-vmemmap.c). The state and the departures are in
// MemoryHotplug.cs.
//
// memmap_on_memory (a08a2ae34613 "mm,memory_hotplug: allocate memmap from the added memory
// range", Oscar Salvador, v5.12; per memory block since Vishal Verma's
// create_altmaps_and_memory_blocks, v6.8): with MHP_MEMMAP_ON_MEMORY and
// mhp_supports_memmap_on_memory(), each memory block gets a vmem_altmap over its first pages and
// vmemmap_populate takes the block's memmap from there (altmap_alloc_block_buf) instead of the
// page allocator; page tables still come from the page allocator. mhp_supports_memmap_on_memory
// asks that the memmap of one memory block fills whole PMDs (arch_supports_memmap_on_memory's
// generic IS_ALIGNED(vmemmap_size, PMD_SIZE); x86-64 and arm64 both use it, arm64 4K only
// qualifies: 2M of struct pages per 128M block) and that the pages left for the buddy are whole
// pageblocks (the memmap_on_memory=force mode that reserves pages to get there is not modelled).
// When it says no, add_memory proceeds without an altmap, as __add_memory does. Onlining marks
// the memmap pages PageVmemmapSelfHosted (mhp_init_memmap_on_memory) and gives only the rest of
// the block to the buddy; the teardown returns them with vmem_altmap_free, never to the buddy.
//
// HVO and memmap_on_memory: when both were new they excluded each other as a whole (the
// vm.hugetlb_optimize_vmemmap sysctl of 78f39084b41d, v5.19, is not registered while
// memory_hotplug.memmap_on_memory is on); Muchun Song's "mm: memory_hotplug: make
// hugetlb_optimize_vmemmap compatible with memmap_on_memory" (66361095129b, v6.0) replaced that
// with a per-folio refusal: the vmemmap pages of a memmap_on_memory block are marked
// PageVmemmapSelfHosted and HVO leaves a folio alone when the vmemmap page describing it carries
// the mark (today checked in vmemmap_pmd_entry on the walk's first entry, -ENOTSUPP; the model's
// check is there, Engine/Hugetlb/HugetlbVmemmapWalk.cs). Commit ids and versions from memory of the
// kernel history, not re-read here.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Hotplug;

public sealed partial class MemoryHotplug
{
    /// <summary>add_memory: the block(s) [start, start + size) become present and offline.</summary>
    [Kernel("mm/memory_hotplug.c", "add_memory")]
    public IEnumerable<StepStatus> AddMemory(ExecContext ctx, long start, long size, Ret<Errno> rc, bool memmapOnMemory = false)
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
        if (memmapOnMemory && MhpSupportsMemmapOnMemory())
        {
            // create_altmaps_and_memory_blocks: one arch_add_memory per block, each with its altmap.
            Note("memory_hotplug.memmap_on_memory");
            for (long b = start; b < start + size && rc.Value == Errno.Ok; b += Arch.SectionSize)
            {
                foreach (var s in ArchAddMemory(ctx, b, Arch.SectionSize, device: false, rc, altmap: true)) yield return s;
                if (rc.Value != Errno.Ok)
                    for (long u = start; u < b; u += Arch.SectionSize)
                        foreach (var s in ArchRemoveMemory(ctx, u >> Arch.PageShift, Arch.PagesPerSection)) yield return s;
            }
            if (rc.Value != Errno.Ok)
                for (long u = start; u < start + size; u += Arch.SectionSize)
                    if (Mem.SectionStateOf(Mem.PfnToSection(u >> Arch.PageShift)) is SectionState.Present) MarkAbsent(u >> Arch.PageShift, Arch.PagesPerSection);
        }
        else foreach (var s in ArchAddMemory(ctx, start, size, device: false, rc)) yield return s;
        MemHotplugDone(ctx);
        if (rc.Value != Errno.Ok) ReleaseResource(start >> Arch.PageShift, size >> Arch.PageShift);
        Note($"memory_hotplug.add_memory.{rc.Value}");
        yield return StepStatus.After("mem_hotplug_done");
    }

    /// <summary>mhp_supports_memmap_on_memory: the memmap of one memory block fills whole PMDs
    /// (arch_supports_memmap_on_memory) and the pages after it are whole pageblocks.</summary>
    [Kernel("mm/memory_hotplug.c", "mhp_supports_memmap_on_memory")]
    public bool MhpSupportsMemmapOnMemory()
    {
        long vmemmapBytes = Arch.PagesPerSection * ArchConfig.StructPageSize;
        long pageblockPages = Arch.PmdSize >> Arch.PageShift;
        return Arch.VmemmapMappedByPmd && vmemmapBytes % Arch.PmdSize == 0
            && (Arch.PagesPerSection - AltmapPagesPerBlock) % pageblockPages == 0;
    }

    /// <summary>memory_block_memmap_on_memory_pages: the pages of one block's memmap.</summary>
    private long AltmapPagesPerBlock => Arch.PagesPerSection * ArchConfig.StructPageSize / Arch.PageSize;

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
    private IEnumerable<StepStatus> ArchAddMemory(ExecContext ctx, long start, long size, bool device, Ret<Errno> rc, bool altmap = false)
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
                foreach (var st in SparseAddSection(ctx, p, sEnd - p, device, id, err, altmap)) yield return st;
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
            var t = InitMm.WalkAlloc(va, level, K.Pgtable.TryAllocPageTablePage, out var e);
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
    private IEnumerable<StepStatus> SparseAddSection(ExecContext ctx, long pfn, long nr, bool device, int id, Ret<Errno> err, bool altmap = false)
    {
        long s = Mem.PfnToSection(pfn);
        bool wholeSection = nr == Arch.PagesPerSection;
        // x86 vmemmap_populate and arm64's since the 2025 fix: base pages for less than a section.
        bool pmd = Arch.VmemmapMappedByPmd && (wholeSection || _options.Arm64VmemmapPmdForSubsections || _broken.SubsectionVmemmapPmd);
        var info = _sections[s];
        if (altmap) info.AltmapPages = AltmapPagesPerBlock; // the altmap's base_pfn is the block's start
        foreach (var st in VmemmapPopulate(ctx, pfn, nr, pmd, err)) yield return st;
        if (err.Value != Errno.Ok)
        {
            // section_activate's failure path: section_deactivate depopulates what was mapped.
            foreach (var st in SparseRemoveSection(ctx, pfn, nr)) yield return st;
            info.AltmapPages = 0;
            info.AltmapUsed = 0;
            yield break;
        }
        info.AddId = id;
        SetSectionDevice(info, device);
        if (device)
        {
            int first = (int)((pfn - s * Arch.PagesPerSection) / SubsectionPages), count = (int)(nr / SubsectionPages);
            for (int i = first; i < first + count; i++)
            {
                info.SubsectionMap |= 1UL << i;
                info.SubsectionAddId[i] = id;
            }
        }
        long alt = info.AltmapPages;
        Mem.SetOwner(pfn + alt, nr - alt, FrameOwner.Offline);
        OfflineFrames += nr - alt;
        if (Mem.SectionStateOf(s) is SectionState.Absent or SectionState.Removed) Mem.SetSectionState(s, SectionState.Present);
        yield return StepStatus.After("section_activate");
    }

    /// <summary>Whether the memmap of <paramref name="firstPfn"/> comes from its block's altmap.</summary>
    private bool HasAltmap(long firstPfn)
    {
        long s = Mem.PfnToSection(firstPfn);
        return s >= 0 && s < _sections.Length && _sections[s].AltmapPages > 0;
    }

    /// <summary>altmap_alloc_block_buf: <paramref name="pages"/> pages of memmap (a PMD block, or
    /// one page where vmemmap_populate_hugepages falls back to base pages over an existing PTE
    /// table) taken in order from the block's own first pages; null once the altmap is used up
    /// (no fallback to the page allocator).</summary>
    [Kernel("mm/sparse-vmemmap.c", "altmap_alloc_block_buf")]
    private long? AltmapAllocBlockBuf(long firstPfn, long pages)
    {
        var info = _sections[Mem.PfnToSection(firstPfn)];
        if (info.AltmapUsed + pages > info.AltmapPages) return null;
        long frame = info.Nr * Arch.PagesPerSection + info.AltmapUsed;
        info.AltmapUsed += pages;
        Mem.SetOwner(frame, pages, FrameOwner.Vmemmap);
        return frame;
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
            var t = InitMm.WalkAlloc(va, level, K.Pgtable.TryAllocPageTablePage, out var e);
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
            long pages = pmd ? Arch.PmdSize >> Arch.PageShift : 1;
            long? frame = HasAltmap(PageToPfn(va)) ? AltmapAllocBlockBuf(PageToPfn(va), pages)
                : Mem.TryAllocPages(pmd ? Arch.PmdShift - Arch.PageShift : 0, FrameOwner.Vmemmap, out long got) ? got : null;
            if (frame is null)
            {
                err.Value = Errno.ENOMEM;
                yield return StepStatus.After("vmemmap_alloc_block");
                yield break;
            }
            InitMm.Set(t, i, Pte.MkLeaf(frame.Value, writable: true));
            yield return StepStatus.After(pmd ? "vmemmap_set_pmd" : "vmemmap_pte_populate");
        }
    }
}
