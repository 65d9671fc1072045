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
        first = last = 0;
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
                if (!_broken.OnlineSkipsGenericOnlinePage)
                {
                    Mem.FreeContigPages(p + alt, Arch.PagesPerSection - alt, FrameOwner.Offline, "generic_online_page");
                    OfflineFrames -= Arch.PagesPerSection - alt;
                }
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

    /// <summary>do_migrate_range: every page-cache page of [pfn, +nr) is isolated from the LRU
    /// (isolate_folio_to_list: PG_lru cleared, a reference taken), then migrated
    /// (migrate_pages with alloc_migration_target): a new page outside the range, the page cache's
    /// slot pointed at it (folio_migrate_mapping, which first freezes the old folio's references
    /// at the expected count: the cache's and the isolation's), the old page freed. A page that
    /// cannot be isolated (off the LRU: being truncated or freed), whose references do not freeze
    /// (someone else holds one, e.g. a speculative lookup), or for which no page outside the range
    /// can be allocated stays, and the offline fails with EBUSY after the pass.</summary>
    [Kernel("mm/memory_hotplug.c", "do_migrate_range")]
    private IEnumerable<StepStatus> DoMigrateRange(ExecContext ctx, long pfn, long nr, Ret<Errno> rc)
    {
        var filemap = K.Filemap;
        var isolated = new List<long>();
        foreach (long p in filemap.LivePfns.GetViewBetween(pfn, pfn + nr - 1).ToList())
        {
            ulong page = PfnToPage(p);
            if (!K.Mmu.ReadStructPage(ctx, page, out var sp) || (sp.Flags & PageFlags.Lru) == 0 || sp.Refcount <= 0) { rc.Value = Errno.EBUSY; continue; }
            sp.Flags &= ~PageFlags.Lru;
            sp.Refcount++;
            K.Mmu.WriteStructPage(ctx, page, sp, "isolate_folio_to_list");
            isolated.Add(p);
            yield return StepStatus.After("isolate_folio_to_list");
        }
        if (isolated.Count > 0)
        {
            // migrate_pages of the whole list, one step. Pages the buddy hands out from inside the
            // range are held aside until the list is done (they stand for the isolated pageblocks
            // the kernel's allocator skips), then given back.
            var inside = new List<long>();
            foreach (long p in isolated)
                if (!MigrateFolio(ctx, p, pfn, nr, inside)) rc.Value = Errno.EBUSY;
            foreach (long p in inside) Mem.FreePages(p, 0, FrameOwner.PageCache, "alloc_migration_target: isolated page");
            yield return StepStatus.After("migrate_pages");
        }
        Note(rc.Value == Errno.Ok ? (isolated.Count > 0 ? "memory_hotplug.migrated" : "memory_hotplug.nothing_to_migrate") : "memory_hotplug.migrate_failed");
    }

    /// <summary>One page-cache folio's migration (migrate_folio_unmap/move and
    /// folio_migrate_mapping, under the xarray lock, as one step), or its putback on failure.</summary>
    [Kernel("mm/migrate.c", "migrate_folio")]
    private bool MigrateFolio(ExecContext ctx, long oldPfn, long rangeStart, long rangeNr, List<long> inside)
    {
        var filemap = K.Filemap;
        ulong oldPage = PfnToPage(oldPfn);
        if (!K.Mmu.ReadStructPage(ctx, oldPage, out var old)) return false;
        long? target = AllocMigrationTarget(rangeStart, rangeNr, inside);
        var file = old.Mapping > 0 && old.Mapping <= filemap.Files.Count ? filemap.Files[(int)(old.Mapping - 1)] : null;
        bool inCache = file is not null && file.IPages.TryGetValue(old.Index, out ulong slot) && slot == oldPage;
        // folio_ref_freeze(folio, expected): the page cache's reference and the isolation's.
        if (target is null || !inCache || old.Refcount != 2)
        {
            if (target is { } unused) Mem.FreePages(unused, 0, FrameOwner.PageCache, "migrate_pages: target unused");
            // putback_movable_pages: back on the LRU, the isolation reference dropped.
            old.Flags |= PageFlags.Lru;
            K.Mmu.WriteStructPage(ctx, oldPage, old, "putback_movable_pages");
            filemap.FolioPut(ctx, oldPage, "putback_movable_pages");
            return false;
        }
        ulong newPage = PfnToPage(target.Value);
        var moved = new StructPage { Refcount = 1, Flags = old.Flags | PageFlags.Lru, Mapping = old.Mapping, Index = old.Index };
        K.Mmu.WriteStructPage(ctx, newPage, moved, "folio_migrate_mapping");
        file!.IPages[old.Index] = newPage;
        filemap.LivePfns.Add(target.Value);
        // The old folio: out of the cache, its last reference gone, freed.
        filemap.LivePfns.Remove(oldPfn);
        K.Mmu.WriteStructPage(ctx, oldPage, default, "free_pages_prepare");
        Mem.FreePages(oldPfn, 0, FrameOwner.PageCache, "migrate_folio_done");
        return true;
    }

    /// <summary>alloc_migration_target: an order-0 page outside the range being offlined (its
    /// pageblocks are MIGRATE_ISOLATE, so the buddy never hands them out: the model, which has no
    /// isolation, holds aside what it is given from inside the range and asks again), or null.</summary>
    [Kernel("mm/migrate.c", "alloc_migration_target")]
    private long? AllocMigrationTarget(long rangeStart, long rangeNr, List<long> inside)
    {
        while (true)
        {
            if (!Mem.TryAllocPages(0, FrameOwner.PageCache, out long p)) return null;
            if (p < rangeStart || p >= rangeStart + rangeNr) return p;
            inside.Add(p);
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
        // start_isolate_page_range / has_unmovable_pages: anything but free pages, HugeTLB folios
        // (which offlining can dissolve) and page-cache pages (which it migrates) makes the block
        // unmovable here.
        for (long s = first; s <= last && rc.Value == Errno.Ok; s++)
        {
            // memory_block_offline offlines the block after its memmap pages.
            long alt = _sections[s].AltmapPages, p = s * Arch.PagesPerSection + alt, n = Arch.PagesPerSection - alt;
            if (Mem.SectionStateOf(s) != SectionState.Online) rc.Value = Errno.EINVAL;
            else if (Mem.CountOwned(p, n, FrameOwner.Free) + Mem.CountOwned(p, n, FrameOwner.HugetlbFolio) + Mem.CountOwned(p, n, FrameOwner.PageCache) != n) rc.Value = Errno.EBUSY;
        }
        if (rc.Value == Errno.Ok) _isolated.Add((pfn, nr));
        yield return StepStatus.After("start_isolate_page_range");
        if (rc.Value == Errno.Ok)
            foreach (var s in DoMigrateRange(ctx, pfn, nr, rc)) yield return s;
        if (rc.Value == Errno.Ok)
            foreach (var s in DoMigrateHugetlbRange(ctx, pfn, nr, rc)) yield return s;
        if (rc.Value == Errno.Ok)
        {
            // dissolve_free_hugetlb_folios: a folio still in use is EBUSY.
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
        // Offline, or undo_isolate_page_range: the range is no longer isolated either way.
        _isolated.Remove((pfn, nr));
        MemHotplugDone(ctx);
        Note($"memory_hotplug.offline_pages.{rc.Value}");
        yield return StepStatus.After("mem_hotplug_done");
    }
}
