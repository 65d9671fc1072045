// mm/memory_hotplug.c remove_memory and mm/memremap.c memunmap_pages, with the generic part of
// their teardown: arch_remove_memory (__remove_pages → sparse_remove_section → vmemmap_free, then
// the linear map), the memory marked absent, the resource released; and the frees of the
// architectures' teardowns (HotplugArm64.cs, HotplugX86.cs), all through the page allocator so the
// central event log sees every one. The state and the departures are in MemoryHotplug.cs.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Hotplug;

public sealed partial class MemoryHotplug
{
    /// <summary>sparse_remove_section → section_deactivate → depopulate_section_memmap
    /// (vmemmap_free) for [pfn, +nr).</summary>
    [Kernel("mm/sparse.c", "sparse_remove_section")]
    private IEnumerable<StepStatus> SparseRemoveSection(ExecContext ctx, long pfn, long nr)
    {
        foreach (var st in VmemmapFreeArch(ctx, PfnToPage(pfn), PfnToPage(pfn + nr))) yield return st;
    }

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
                SetSectionDevice(info, false);
                info.AddId = 0;
                info.AltmapPages = 0;
                info.AltmapUsed = 0;
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

    private void VmemmapInFlightAdd(long pfn, long n) => _vmemmapInFlight.Add((pfn, n));

    private void VmemmapInFlightRemove(long pfn, long n)
    {
        int i = _vmemmapInFlight.IndexOf((pfn, n));
        if (i < 0) throw new ModelBugException($"vmemmap frames {pfn:x}+{n} freed without being unmapped first");
        _vmemmapInFlight.RemoveAt(i);
    }

    /// <summary>Whether [pfn, +n) is memmap a block holds in its own first pages (memmap_on_memory).</summary>
    private bool InAltmap(long pfn, long n)
    {
        long s = Mem.PfnToSection(pfn);
        if (s < 0 || s >= _sections.Length) return false;
        long alt = _sections[s].AltmapPages, basePfn = s * Arch.PagesPerSection;
        return alt > 0 && pfn >= basePfn && pfn + n <= basePfn + alt;
    }

    /// <summary>vmem_altmap_free: memmap pages of the block's altmap given back to the altmap,
    /// not to the buddy; they are the block's (offline) memory again, absent with it.</summary>
    [Kernel("mm/memremap.c", "vmem_altmap_free")]
    private void VmemAltmapFree(long pfn, long n)
    {
        if (!Mem.AllOwnedBy(pfn, n, FrameOwner.Vmemmap)) throw new ModelBugException($"vmem_altmap_free of {pfn:x}+{n}: not all owned Vmemmap");
        bool present = Mem.SectionStateOf(Mem.PfnToSection(pfn)) is not (SectionState.Absent or SectionState.Removed);
        Mem.SetOwner(pfn, n, present ? FrameOwner.Offline : FrameOwner.Absent);
        if (present) OfflineFrames += n;
    }

    /// <summary>free_hotplug_page_range: a vmemmap backing block back to the buddy (or to its
    /// altmap: vmem_altmap_free).</summary>
    [Kernel("arch/arm64/mm/mmu.c", "free_hotplug_page_range")]
    private void FreeHotplugPageRange(long pfn, long pages)
    {
        VmemmapInFlightRemove(pfn, pages);
        if (InAltmap(pfn, pages)) { VmemAltmapFree(pfn, pages); return; }
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
