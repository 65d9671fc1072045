// Migrating in-use HugeTLB folios out of a block being offlined: the hugetlb half of
// mm/memory_hotplug.c do_migrate_range (v6.12) and what it calls: folio_isolate_hugetlb and
// folio_putback_hugetlb (mm/hugetlb.c), migrate_pages → unmap_and_move_huge_page
// (mm/migrate.c), alloc_migration_target → alloc_hugetlb_folio_nodemask (mm/hugetlb.c),
// try_to_migrate / remove_migration_ptes (mm/rmap.c, mm/migrate.c) and
// migrate_huge_page_move_mapping (mm/migrate.c). The folios are hugetlbfs page-cache folios,
// mapped in user mms at their natural size or, in HGM VMAs, by pieces (the HGM series makes
// page_vma_mapped_walk report each entry's size, and try_to_migrate_one and
// remove_migration_pte then replace and restore each entry at the size it has).
//
// The order, per folio, as the kernel has it:
//   1. folio_isolate_hugetlb under hugetlb_lock: only a folio that is HPG_migratable (a fault
//      has finished adding it; the pool's free folios and the folios a kernel caller allocated
//      with `hugetlb_alloc` are not) and whose reference can be taken; the flag is cleared.
//      A folio that cannot be isolated stays, and the offline fails with EBUSY.
//   2. alloc_hugetlb_folio_nodemask: a free pool folio outside the isolated range, else a
//      fresh folio from the buddy (alloc_migrate_hugetlb_folio), outside the range too; none:
//      the folio stays (ENOMEM → EBUSY for the offline).
//   3. if the folio is mapped, i_mmap_rwsem for write (hugetlb_folio_mapping_lock_write); then
//      try_to_migrate: every entry mapping the folio, in every VMA of the file's i_mmap, is
//      cleared with its TLB entries flushed (huge_ptep_clear_flush), its rmap and reference
//      dropped; migrate_huge_page_move_mapping freezes the folio's references at two (the page
//      cache's and the isolation's): any other (a fault between its lookup and its mapping, a
//      kernel caller's) makes the migration fail, and the entries are restored to the old
//      folio (remove_migration_ptes(src, src)). Else the page cache slot moves to the new
//      folio, and remove_migration_ptes(src, dst) maps the new folio where the old one was,
//      entry by entry at the same sizes. i_mmap_rwsem is released.
//   4. folio_putback_hugetlb(dst), then folio_putback_hugetlb(src): its last reference goes,
//      and free_huge_folio puts it in the free pool (or to the buddy when surplus), from where
//      offline_pages' dissolve_free_hugetlb_folios takes it.
//
// Departures from the kernel:
// - Migration entries are not modelled: try_to_migrate, the reference freeze, the move of the
//   page-cache slot and remove_migration_ptes are one step. In the kernel a fault on a
//   migration entry waits in migration_entry_wait_huge until the remap; in the model no other
//   task runs in between, which is the same outcome for the fault.
// - The folio lock is not modelled: the lookup reference that faults, UFFDIO_CONTINUE and
//   collapse take (filemap_lock_hugetlb_folio, filemap_get_folio) is what makes a concurrent
//   migration fail its freeze here; in the kernel the migration would wait for the lock and
//   then succeed or retry.
// - The kernel retries a failed migration (up to ten passes in migrate_pages, and offline_pages
//   loops until it succeeds or a signal arrives); the model makes one pass.
// - alloc_migrate_hugetlb_folio's HPG_temporary folio is a surplus folio here: the pool counts
//   it as surplus, and free_huge_folio frees the old folio to the buddy because the pool has a
//   surplus page, which is where move_hugetlb_state's transfer of the temporary flag sends it.
using PropertySuite.Engine.Hgm;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Hotplug;

public sealed partial class MemoryHotplug
{
    /// <summary>One user entry try_to_migrate took down: where it was and what it held.</summary>
    private readonly record struct MigratedEntry(MmStruct Mm, PtTable Table, int Index, Pte Entry, long Subpage, long NrPages);

    /// <summary>do_migrate_range's hugetlb half: every in-use HugeTLB folio with a frame in
    /// [<paramref name="pfn"/>, +<paramref name="nr"/>) is isolated, then migrated. A folio that
    /// cannot be isolated or moved leaves EBUSY in <paramref name="rc"/>.</summary>
    private IEnumerable<StepStatus> DoMigrateHugetlbRange(ExecContext ctx, long pfn, long nr, Ret<Errno> rc)
    {
        var inUse = K.Hugetlb.AllFoliosByPfn().Where(f => f.State == FolioState.Active && f.HeadPfn < pfn + nr && f.HeadPfn + f.NrPages > pfn).ToList();
        if (inUse.Count == 0) yield break;
        var source = new List<HugetlbFolio>();
        foreach (var f in inUse)
        {
            var isolated = new Ret<bool>();
            foreach (var s in FolioIsolateHugetlb(ctx, f, isolated)) yield return s;
            if (isolated.Value) source.Add(f);
            else
            {
                rc.Value = Errno.EBUSY;
                Note("memory_hotplug.hugetlb_not_isolated");
            }
        }
        foreach (var f in source)
        {
            var moved = new Ret<bool>();
            foreach (var s in UnmapAndMoveHugePage(ctx, f, moved)) yield return s;
            if (!moved.Value) rc.Value = Errno.EBUSY;
        }
    }

    /// <summary>folio_isolate_hugetlb (isolate_hugetlb before v6.13): under hugetlb_lock, a
    /// HugeTLB folio that is HPG_migratable and whose reference can be taken
    /// (folio_try_get) is taken off the active list for migration; HPG_migratable is cleared.</summary>
    [Kernel("mm/hugetlb.c", "folio_isolate_hugetlb")]
    private IEnumerable<StepStatus> FolioIsolateHugetlb(ExecContext ctx, HugetlbFolio f, Ret<bool> isolated)
    {
        var lk = K.Hugetlb.HugetlbLock;
        foreach (var s in SpinLock(ctx, lk)) yield return s;
        ulong head = PfnToPage(f.HeadPfn);
        bool read = ReadStructPage(ctx, head, out var sp);
        isolated.Value = f.State == FolioState.Active && read
            && (sp.Flags & (PageFlags.Hugetlb | PageFlags.HugetlbMigratable)) == (PageFlags.Hugetlb | PageFlags.HugetlbMigratable) && sp.Refcount > 0;
        if (isolated.Value)
        {
            sp.Refcount++;
            sp.Flags &= ~PageFlags.HugetlbMigratable;
            WriteStructPage(ctx, head, sp, "folio_isolate_hugetlb");
        }
        SpinUnlock(ctx, lk);
        yield return StepStatus.After("folio_isolate_hugetlb");
    }

    /// <summary>unmap_and_move_huge_page for an isolated folio <paramref name="src"/>:
    /// allocate the target, move the mappings and the page-cache slot, put both folios back.</summary>
    [Kernel("mm/migrate.c", "unmap_and_move_huge_page")]
    private IEnumerable<StepStatus> UnmapAndMoveHugePage(ExecContext ctx, HugetlbFolio src, Ret<bool> moved)
    {
        var hgm = K.Hgm;
        // The folio was truncated since its isolation: ours is the only reference left.
        if (hgm.PageCacheSlot(src) is not { } slot || ReadRefcount(ctx, src) == 1)
        {
            Note("memory_hotplug.hugetlb_freed_under_us");
            foreach (var s in FolioPutbackHugetlb(ctx, src)) yield return s;
            moved.Value = true;
            yield break;
        }
        var got = new Ret<HugetlbFolio?>();
        foreach (var s in AllocHugetlbFolioNodemask(ctx, src.Hstate, got)) yield return s;
        if (got.Value is not { } dst)
        {
            Note("memory_hotplug.hugetlb_no_target");
            foreach (var s in FolioPutbackHugetlb(ctx, src)) yield return s;
            yield break;
        }
        var file = slot.File;
        bool mapped = Mapped(ctx, src);
        if (mapped)
            foreach (var s in file.IMmapRwsem.DownWrite(ctx)) yield return s;
        try
        {
            // The page-table locks of the entries: the step below takes and drops each of them,
            // so it waits while another task holds one.
            while (EntryLocks(src, file, slot.Index).Any(l => l.Holder is { } holder && holder != ctx)) yield return StepStatus.Blocked;
            var entries = TryToMigrate(ctx, src, file, slot.Index);
            // migrate_huge_page_move_mapping: folio_ref_freeze(src, 2).
            if (ReadRefcount(ctx, src) != 2 || hgm.PageCacheSlot(src) != slot)
            {
                RemoveMigrationPtes(ctx, src, src, entries);
                Note("memory_hotplug.hugetlb_migrate_busy");
                yield return StepStatus.After("remove_migration_ptes");
                foreach (var s in FolioPutbackHugetlb(ctx, dst)) yield return s;
                foreach (var s in FolioPutbackHugetlb(ctx, src)) yield return s;
                yield break;
            }
            // The page cache's reference moves with the slot; src keeps the isolation's.
            hgm.CacheRemove(file, slot.Index);
            hgm.CacheAdd(file, slot.Index, dst);
            hgm.FolioGet(ctx, dst);
            K.Hugetlb.FolioSetRefcount(ctx, src, 1, "folio_ref_unfreeze");
            var target = _broken.HugetlbMigrateRemapsOldFolio ? src : dst;
            RemoveMigrationPtes(ctx, src, target, entries);
            Note(entries.Count > 0 ? "memory_hotplug.hugetlb_migrated_mapped" : "memory_hotplug.hugetlb_migrated");
            yield return StepStatus.After("remove_migration_ptes");
        }
        finally
        {
            if (mapped) file.IMmapRwsem.UpWrite(ctx);
        }
        moved.Value = true;
        foreach (var s in FolioPutbackHugetlb(ctx, dst)) yield return s;
        foreach (var s in FolioPutbackHugetlb(ctx, src)) yield return s;
    }

    /// <summary>try_to_migrate(src) with the i_mmap walk of rmap_walk_file: every user entry
    /// mapping part of <paramref name="src"/> is cleared, the TLB flushed over it, its rmap and
    /// its reference dropped (none is the last: the page cache and the isolation hold theirs).
    /// Returns what was taken down, for remove_migration_ptes.</summary>
    [Kernel("mm/rmap.c", "try_to_migrate")]
    private List<MigratedEntry> TryToMigrate(ExecContext ctx, HugetlbFolio src, HugetlbfsInode file, long index)
    {
        var hgm = K.Hgm;
        var entries = new List<MigratedEntry>();
        foreach (var v in file.IMmap)
        {
            if (hgm.Unmap.VaOfIndex(v, index) is not { } va) continue;
            var mm = v.Mm.Mm;
            var pgd = mm.Pgd;
            ulong end = Math.Min(va + (ulong)file.Hstate.Size, v.VmEnd);
            bool any = false;
            foreach (var w in pgd.Leaves(va, end).ToList())
            {
                if (w.Entry.Pfn < src.HeadPfn || w.Entry.Pfn >= src.HeadPfn + src.NrPages) continue;
                long sub = w.Entry.Pfn - src.HeadPfn, n = (long)(pgd.EntrySize(w.Table) / (ulong)Arch.PageSize);
                pgd.Set(w.Table, w.Index, Pte.None);
                hgm.HugetlbRemoveRmap(ctx, src, sub, n);
                hgm.FolioPut(ctx, src);
                entries.Add(new MigratedEntry(mm, w.Table, w.Index, w.Entry, sub, n));
                any = true;
            }
            if (any) K.Tlb.FlushTlbRange(mm, va, end);
        }
        return entries;
    }

    /// <summary>remove_migration_ptes(src, <paramref name="dst"/>): each entry
    /// <see cref="TryToMigrate"/> took down is set again, at its size and permissions, to the
    /// same subpages of <paramref name="dst"/> (the old folio itself when the migration failed),
    /// with its rmap and reference.</summary>
    [Kernel("mm/migrate.c", "remove_migration_ptes")]
    private void RemoveMigrationPtes(ExecContext ctx, HugetlbFolio src, HugetlbFolio dst, List<MigratedEntry> entries)
    {
        var hgm = K.Hgm;
        foreach (var e in entries)
        {
            e.Mm.Pgd.Set(e.Table, e.Index, e.Entry.WithPfn(dst.HeadPfn + e.Subpage));
            hgm.HugetlbAddFileRmap(ctx, dst, e.Subpage, e.NrPages);
            hgm.FolioGet(ctx, dst);
        }
        if (entries.Count > 0 && dst != src && Arch.Arch == Config.Arch.Arm64) K.Hugetlb.SyncIcacheDcache(ctx, dst);
    }

    /// <summary>alloc_hugetlb_folio_nodemask for a migration target: a free pool folio
    /// (dequeue_hugetlb_folio_node_exact skips the isolated range), else
    /// alloc_migrate_hugetlb_folio: a fresh folio (the buddy never gives isolated pageblocks),
    /// here accounted as surplus (see the header). Null: ENOMEM.</summary>
    [Kernel("mm/hugetlb.c", "alloc_hugetlb_folio_nodemask")]
    private IEnumerable<StepStatus> AllocHugetlbFolioNodemask(ExecContext ctx, Hstate h, Ret<HugetlbFolio?> got)
    {
        var hugetlb = K.Hugetlb;
        foreach (var s in SpinLock(ctx, hugetlb.HugetlbLock)) yield return s;
        got.Value = hugetlb.DequeueHugetlbFolioNodeExact(ctx, h);
        SpinUnlock(ctx, hugetlb.HugetlbLock);
        yield return StepStatus.After("dequeue_hugetlb_folio_node_exact");
        if (got.Value is not null) yield break;
        foreach (var s in hugetlb.AllocSurplusHugetlbFolio(ctx, h, got, null)) yield return s;
        if (got.Value is not { } f) yield break;
        foreach (var s in SpinLock(ctx, hugetlb.HugetlbLock)) yield return s;
        f.State = FolioState.Active;
        K.Hugetlb.FolioSetRefcount(ctx, f, 1, "folio_ref_unfreeze");
        SpinUnlock(ctx, hugetlb.HugetlbLock);
        Note("memory_hotplug.hugetlb_migrate_fresh_target");
        yield return StepStatus.After("alloc_migrate_hugetlb_folio");
    }

    /// <summary>folio_putback_hugetlb: under hugetlb_lock the folio is HPG_migratable again and
    /// back on the active list; then its isolation (or allocation) reference is put, which for
    /// the old folio of a successful migration is the last: free_huge_folio.</summary>
    [Kernel("mm/hugetlb.c", "folio_putback_hugetlb")]
    private IEnumerable<StepStatus> FolioPutbackHugetlb(ExecContext ctx, HugetlbFolio f)
    {
        var lk = K.Hugetlb.HugetlbLock;
        foreach (var s in SpinLock(ctx, lk)) yield return s;
        ModifyPageFlags(ctx, PfnToPage(f.HeadPfn), PageFlags.HugetlbMigratable, PageFlags.None, "folio_putback_hugetlb");
        SpinUnlock(ctx, lk);
        if (K.Hgm.FolioPut(ctx, f))
            foreach (var s in K.Hugetlb.FreeHugeFolio(ctx, f)) yield return s;
        yield return StepStatus.After("folio_putback_hugetlb");
    }

    /// <summary>The page-table locks of the user entries that may map huge page
    /// <paramref name="index"/> of <paramref name="file"/>.</summary>
    private IEnumerable<KernelLock> EntryLocks(HugetlbFolio src, HugetlbfsInode file, long index)
    {
        var hgm = K.Hgm;
        foreach (var v in file.IMmap)
        {
            if (hgm.Unmap.VaOfIndex(v, index) is not { } va) continue;
            var mm = v.Mm.Mm;
            foreach (var w in mm.Pgd.Leaves(va, Math.Min(va + (ulong)file.Hstate.Size, v.VmEnd)))
                if (w.Entry.Pfn >= src.HeadPfn && w.Entry.Pfn < src.HeadPfn + src.NrPages) yield return hgm.Walk.HugePteLockptr(mm, w.Table);
        }
    }

    private bool Mapped(ExecContext ctx, HugetlbFolio f)
    {
        // folio_mapped: the entire mapcount, or any subpage's (HGM v2's per-page counts).
        if (ReadStructPage(ctx, PfnToPage(f.HeadPfn + 1), out var t) && t.EntireMapcount > 0) return true;
        for (long p = 0; p < f.NrPages; p++)
            if (ReadStructPage(ctx, PfnToPage(f.HeadPfn + p), out var sp) && sp.Mapcount > 0) return true;
        return false;
    }

    /// <summary>The head's refcount as this CPU reads it through the vmemmap (0 if unreadable).</summary>
    private int ReadRefcount(ExecContext ctx, HugetlbFolio f) => ReadStructPage(ctx, PfnToPage(f.HeadPfn), out var sp) ? sp.Refcount : 0;
}
