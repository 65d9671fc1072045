// mm/memory_hotplug.c online_pages and offline_pages: a present block's pages given to the buddy
// and taken back. The state and the departures are in MemoryHotplug.cs.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Hotplug;

public sealed partial class MemoryHotplug
{
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
                long p = s * Arch.PagesPerSection, alt = _sections[s].AltmapPages;
                if (alt > 0)
                {
                    // memory_block_online: the memmap pages first (never given to the buddy).
                    MhpInitMemmapOnMemory(ctx, p, alt);
                    yield return StepStatus.After("mhp_init_memmap_on_memory");
                }
                Mem.FreeContigPages(p + alt, Arch.PagesPerSection - alt, FrameOwner.Offline, "generic_online_page");
                OfflineFrames -= Arch.PagesPerSection - alt;
                Mem.SetSectionState(s, SectionState.Online);
                NrOnlinePages += Arch.PagesPerSection;
                yield return StepStatus.After("online_pages_range");
            }
        }
        MemHotplugDone(ctx);
        Note($"memory_hotplug.online_pages.{rc.Value}");
        yield return StepStatus.After("online_pages");
    }

    /// <summary>mhp_init_memmap_on_memory: the struct pages of the block's memmap pages are marked
    /// PageVmemmapSelfHosted (HVO reads the mark); the pages count as present and online
    /// (adjust_present_page_count) without ever being in the buddy.</summary>
    [Kernel("mm/memory_hotplug.c", "mhp_init_memmap_on_memory")]
    private void MhpInitMemmapOnMemory(ExecContext ctx, long pfn, long nr)
    {
        for (long p = pfn; p < pfn + nr; p++)
        {
            ulong page = PfnToPage(p);
            if (!K.Mmu.ReadStructPage(ctx, page, out var sp)) throw new ModelBugException($"mhp_init_memmap_on_memory: struct page of pfn {p:x} unreadable");
            sp.Flags |= PageFlags.VmemmapSelfHosted;
            K.Mmu.WriteStructPage(ctx, page, sp, "mhp_init_memmap_on_memory");
        }
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
            // memory_block_offline offlines the block after its memmap pages.
            long alt = _sections[s].AltmapPages, p = s * Arch.PagesPerSection + alt, n = Arch.PagesPerSection - alt;
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
            bool allFree = true;
            for (long s = first; s <= last; s++)
                allFree &= Mem.AllOwnedBy(s * Arch.PagesPerSection + _sections[s].AltmapPages, Arch.PagesPerSection - _sections[s].AltmapPages, FrameOwner.Free);
            if (!allFree) rc.Value = Errno.EBUSY; // allocated meanwhile
            else
            {
                for (long s = first; s <= last; s++)
                {
                    long alt = _sections[s].AltmapPages;
                    Mem.TakeFreeRange(s * Arch.PagesPerSection + alt, Arch.PagesPerSection - alt, FrameOwner.Offline);
                    OfflineFrames += Arch.PagesPerSection - alt;
                }
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
}
