// Taking mappings down: __unmap_hugepage_range, hugetlb_change_protection (mm/hugetlb.c),
// free_pgtables (mm/memory.c), do_vmi_munmap (mm/mmap.c), hole punch and truncate
// (fs/hugetlbfs/inode.c) and memory_failure on a hugetlbfs page (mm/memory-failure.c). Part of
// HugetlbHgm (see HugetlbHgm.cs).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Hgm;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>munmap, mprotect, hole punch, truncate, memory failure.</summary>
public sealed class HgmUnmap : HgmPart
{
    internal HgmUnmap(Kernel k, HugetlbHgm hgm) : base(k, hgm) { }

    /// <summary>__unmap_hugepage_range over [start, end) of <paramref name="v"/> (boundaries
    /// aligned to the huge page size): every hugetlb_pte leaf at any level is cleared under its
    /// PTL and its rmap removed; one flush_tlb_range; then the references are dropped (a folio
    /// whose last reference goes is freed), as tlb_finish_mmu does after the flush.</summary>
    [Kernel("mm/hugetlb.c", "__unmap_hugepage_range")]
    public IEnumerable<StepStatus> UnmapHugepageRange(ExecContext ctx, VmAreaStruct v, ulong start, ulong end)
    {
        var mm = v.Mm.Mm;
        var pgd = mm.Pgd;
        var puts = new List<HugetlbFolio>();
        foreach (var w in pgd.Leaves(start, end).ToList())
        {
            var lk = Walk.HugePteLockptr(mm, w.Table);
            foreach (var s in SpinLock(ctx, lk, stepWhenTaken: false)) yield return s;
            var f = Hgm.FolioOfLeaf(w.Entry) ?? throw new ModelBugException($"{mm.Name}: leaf {w.Entry} at {pgd.EntryVa(w.Table, w.Index):x} maps no HugeTLB folio");
            pgd.Set(w.Table, w.Index, Pte.None);
            Hgm.HugetlbRemoveRmap(ctx, f, w.Entry.Pfn - f.HeadPfn, (long)(pgd.EntrySize(w.Table) / PageSize));
            puts.Add(f);
            SpinUnlock(ctx, lk);
        }
        if (puts.Count > 0) yield return StepStatus.After("huge_ptep_get_and_clear");
        K.Tlb.FlushTlbRange(mm, start, end);
        yield return StepStatus.After("flush_tlb_range");
        foreach (var s in Hgm.PutAll(ctx, puts)) yield return s;
    }

    /// <summary>free_pgtables over [start, end) with [floor, ceiling) the gap between the
    /// neighbouring VMAs: every table page whose whole span lies in the gap is unlinked (parent
    /// entry cleared), the mm's TLB and walk caches are flushed over the gap, then the pages are
    /// freed. The root (pgd) is never freed here.</summary>
    [Kernel("mm/memory.c", "free_pgtables")]
    public void FreePgtables(HugetlbMm hm, ulong floor, ulong ceiling)
    {
        var mm = hm.Mm;
        var tables = new List<PtTable>();
        UnlinkTablesIn(mm, mm.Pgd.Root, floor, ceiling, tables);
        if (tables.Count == 0) return;
        K.Tlb.FlushTlbRange(mm, floor, ceiling);
        Hgm.FreeUserTables(mm, tables, "free_pgtables");
    }

    private void UnlinkTablesIn(MmStruct mm, PtTable t, ulong floor, ulong ceiling, List<PtTable> acc)
    {
        var pgd = mm.Pgd;
        ulong size = pgd.EntrySize(t);
        foreach (int i in t.TableEntryIndices.ToList())
        {
            ulong va = pgd.EntryVa(t, i);
            if (!VaRange.Overlaps(va, va + size, floor, ceiling)) continue;
            if (!pgd.TryGetChild(t, t.Entries[i], out var child)) continue;
            UnlinkTablesIn(mm, child, floor, ceiling, acc);
            if (va < floor || va + size > ceiling || child.Used != 0) continue;
            pgd.Set(t, i, Pte.None);
            acc.Add(child);
        }
    }

    /// <summary>do_vmi_munmap of [start, start + len): split the VMAs at the ends (EINVAL where
    /// hugetlb_vm_op_split refuses), unmap and unlink the VMAs inside, free the page tables of
    /// the gap. EINVAL: start not page aligned or len 0. Unmapped parts are skipped.</summary>
    [Kernel("mm/mmap.c", "do_vmi_munmap")]
    public IEnumerable<StepStatus> DoVmiMunmap(ExecContext ctx, HugetlbMm hm, ulong start, ulong len, Ret<Errno> ret) =>
        HugetlbHgm.WithMmapLock(ctx, hm, write: true, DoVmiMunmapLocked(ctx, hm, start, len, ret));

    private IEnumerable<StepStatus> DoVmiMunmapLocked(ExecContext ctx, HugetlbMm hm, ulong start, ulong len, Ret<Errno> ret)
    {
        ulong end = start + (len + PageSize - 1) / PageSize * PageSize;
        ret.Value = Errno.Ok;
        if (hm.Exited || start % PageSize != 0 || len == 0 || end < start || end > Hgm.UserTop) ret.Value = Errno.EINVAL;
        else
            foreach (ulong split in new[] { start, end })
                if (hm.VmaLookup(split) is { } sv && sv.VmStart != split && Hgm.VmaOps.HugetlbVmOpSplit(sv, split) != Errno.Ok) ret.Value = Errno.EINVAL;
        if (ret.Value != Errno.Ok) { yield return StepStatus.After("do_vmi_munmap"); yield break; }
        Hgm.VmaOps.SplitVma(hm, start);
        Hgm.VmaOps.SplitVma(hm, end);
        foreach (var v in hm.Intersecting(start, end))
            foreach (var s in UnmapVma(ctx, v)) yield return s;
        var (floor, ceiling) = Gap(hm, start, end);
        FreePgtables(hm, floor, ceiling);
        yield return StepStatus.After("free_pgtables");
    }

    internal IEnumerable<StepStatus> UnmapVma(ExecContext ctx, VmAreaStruct v)
    {
        if (v.VmFile is { } file)
        {
            foreach (var s in v.VmaLock!.DownWrite(ctx)) yield return s;
            foreach (var s in file.IMmapRwsem.DownWrite(ctx)) yield return s;
            try
            {
                foreach (var s in UnmapHugepageRange(ctx, v, v.VmStart, v.VmEnd)) yield return s;
                file.Unlink(v);
            }
            finally
            {
                file.IMmapRwsem.UpWrite(ctx);
                v.VmaLock!.UpWrite(ctx);
            }
        }
        v.Mm.Remove(v);
    }

    /// <summary>The free gap around [start, end): from the end of the VMA before to the start of the one after.</summary>
    private (ulong Floor, ulong Ceiling) Gap(HugetlbMm hm, ulong start, ulong end)
    {
        ulong floor = 0, ceiling = Hgm.UserTop;
        foreach (var v in hm.Vmas)
        {
            if (v.VmEnd <= start) floor = Math.Max(floor, v.VmEnd);
            if (v.VmStart >= end) ceiling = Math.Min(ceiling, v.VmStart);
        }
        return (floor, ceiling);
    }

    /// <summary>mprotect of [start, start + len) → hugetlb_change_protection: VM_WRITE set or
    /// cleared on the VMAs (split at the ends as hugetlb_vm_op_split allows) and on every
    /// hugetlb_pte leaf at any level, under i_mmap_rwsem and the VMA lock for write; one
    /// flush_tlb_range. EINVAL: unaligned split, non-hugetlb VMA; ENOMEM: a hole.</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_change_protection")]
    public IEnumerable<StepStatus> HugetlbChangeProtection(ExecContext ctx, HugetlbMm hm, ulong start, ulong len, bool writable, Ret<Errno> ret) =>
        HugetlbHgm.WithMmapLock(ctx, hm, write: true, HugetlbChangeProtectionLocked(ctx, hm, start, len, writable, ret));

    private IEnumerable<StepStatus> HugetlbChangeProtectionLocked(ExecContext ctx, HugetlbMm hm, ulong start, ulong len, bool writable, Ret<Errno> ret)
    {
        var vmas = Hgm.VmaOps.RangeVmas(hm, start, start + len, hugetlbOnly: true, out var err);
        ret.Value = err;
        if (vmas is null) { yield return StepStatus.After("mprotect_fixup"); yield break; }
        foreach (var v in vmas)
        {
            var file = v.VmFile!;
            foreach (var s in v.VmaLock!.DownWrite(ctx)) yield return s;
            foreach (var s in file.IMmapRwsem.DownWrite(ctx)) yield return s;
            try
            {
                var mm = hm.Mm;
                foreach (var w in mm.Pgd.Leaves(v.VmStart, v.VmEnd).ToList())
                {
                    var lk = Walk.HugePteLockptr(mm, w.Table);
                    foreach (var s in SpinLock(ctx, lk, stepWhenTaken: false)) yield return s;
                    mm.Pgd.Set(w.Table, w.Index, w.Entry.WithWritable(writable));
                    SpinUnlock(ctx, lk);
                }
                v.VmFlags = writable ? v.VmFlags | VmaFlags.VmWrite : v.VmFlags & ~VmaFlags.VmWrite;
                K.Tlb.FlushTlbRange(mm, v.VmStart, v.VmEnd);
                yield return StepStatus.After("flush_hugetlb_tlb_range");
            }
            finally
            {
                file.IMmapRwsem.UpWrite(ctx);
                v.VmaLock!.UpWrite(ctx);
            }
        }
    }

    /// <summary>hugetlb_vmdelete_list for huge page <paramref name="index"/> of
    /// <paramref name="file"/> (i_mmap_rwsem held for write and the page's fault mutex held by
    /// the caller): unmap it from every VMA that maps it. The kernel only trylocks each VMA's
    /// hugetlb VMA lock here (it is taken before i_mmap_rwsem elsewhere); the model does not take
    /// it: the unmap frees no page table, so a walker holding the VMA lock for read reads
    /// cleared entries at worst.</summary>
    [Kernel("fs/hugetlbfs/inode.c", "hugetlb_vmdelete_list")]
    public IEnumerable<StepStatus> HugetlbVmdeleteList(ExecContext ctx, HugetlbfsInode file, long index)
    {
        foreach (var v in file.IMmap.ToList())
        {
            if (VaOfIndex(v, index) is not { } va) continue;
            foreach (var s in UnmapHugepageRange(ctx, v, va, va + (ulong)file.Hstate.Size)) yield return s;
        }
    }

    /// <summary>The address at which <paramref name="v"/> maps huge page <paramref name="index"/> of its file, or null.</summary>
    public ulong? VaOfIndex(VmAreaStruct v, long index)
    {
        long per = v.VmFile!.Hstate.PagesPerHugePage;
        long off = index * per - v.VmPgoff;
        if (off < 0) return null;
        ulong va = v.VmStart + (ulong)off * PageSize;
        return va < v.VmEnd ? va : null;
    }

    /// <summary>hugetlbfs_punch_hole (fallocate FALLOC_FL_PUNCH_HOLE) of huge page
    /// <paramref name="index"/>: under i_mmap_rwsem for write unmap it everywhere, then
    /// remove_inode_hugepages drops the page cache's reference (freeing the folio when it was
    /// the last).</summary>
    [Kernel("fs/hugetlbfs/inode.c", "hugetlbfs_punch_hole")]
    public IEnumerable<StepStatus> HugetlbfsPunchHole(ExecContext ctx, HugetlbfsInode file, long index)
    {
        var mutex = file.FaultMutex(index);
        foreach (var s in SpinLock(ctx, mutex)) yield return s;
        try
        {
            foreach (var s in file.IMmapRwsem.DownWrite(ctx)) yield return s;
            try
            {
                if (!Bad.PunchHoleSkipsUnmap)
                    foreach (var s in HugetlbVmdeleteList(ctx, file, index)) yield return s;
                foreach (var s in RemoveInodeHugepage(ctx, file, index)) yield return s;
            }
            finally { file.IMmapRwsem.UpWrite(ctx); }
        }
        finally { SpinUnlock(ctx, mutex); }
    }

    private IEnumerable<StepStatus> RemoveInodeHugepage(ExecContext ctx, HugetlbfsInode file, long index)
    {
        if (!file.PageCache.TryGetValue(index, out var f)) yield break;
        Hgm.CacheRemove(file, index);
        yield return StepStatus.After("remove_inode_single_folio");
        foreach (var s in Hgm.PutAll(ctx, [f])) yield return s;
    }

    /// <summary>hugetlb_vmtruncate: i_size becomes <paramref name="hugePages"/>; every page at or
    /// past it is unmapped everywhere and dropped from the page cache.</summary>
    [Kernel("fs/hugetlbfs/inode.c", "hugetlb_vmtruncate")]
    public IEnumerable<StepStatus> HugetlbVmtruncate(ExecContext ctx, HugetlbfsInode file, long hugePages)
    {
        file.ISize = hugePages;
        foreach (long index in file.PageCache.Keys.Where(i => i >= hugePages).ToList())
            foreach (var s in HugetlbfsPunchHole(ctx, file, index)) yield return s;
        yield return StepStatus.After("hugetlb_vmtruncate");
    }

    /// <summary>memory_failure on subpage <paramref name="subpage"/> of huge page
    /// <paramref name="index"/> of <paramref name="file"/>: the folio is marked hwpoisoned
    /// (raw error page recorded), then, as the series does, unmapped from every VMA and removed
    /// from the page cache (hwpoison_user_mappings, hugetlbfs_error_remove_folio); with the
    /// MemoryFailureUnmapsPieceOnly design only the PAGE_SIZE piece holding the error is unmapped
    /// in HGM VMAs, and the folio stays. EFAULT: nothing in the page cache there.</summary>
    [Kernel("mm/memory-failure.c", "memory_failure")]
    public IEnumerable<StepStatus> MemoryFailure(ExecContext ctx, HugetlbfsInode file, long index, long subpage, Ret<Errno> ret)
    {
        ret.Value = Errno.EFAULT;
        if (!file.PageCache.TryGetValue(index, out var f) || subpage < 0 || subpage >= f.NrPages) { yield return StepStatus.After("memory_failure"); yield break; }
        ret.Value = Errno.Ok;
        if (!f.RawHwpPages.Contains(subpage)) f.RawHwpPages.Add(subpage);
        ModifyPageFlags(ctx, Hgm.Page(f, 0), PageFlags.HwPoison, PageFlags.None, "folio_set_hwpoison");
        yield return StepStatus.After("folio_set_hwpoison");
        var mutex = file.FaultMutex(index);
        foreach (var s in SpinLock(ctx, mutex)) yield return s;
        foreach (var s in file.IMmapRwsem.DownWrite(ctx)) yield return s;
        try
        {
            bool pieceOnly = Opt.MemoryFailureUnmapsPieceOnly && file.IMmap.All(v => v.HgmEnabled);
            if (!pieceOnly)
            {
                foreach (var s in HugetlbVmdeleteList(ctx, file, index)) yield return s;
                Note("hgm.memory_failure_whole_folio");
                foreach (var s in RemoveInodeHugepage(ctx, file, index)) yield return s;
                yield break;
            }
            foreach (var v in file.IMmap.ToList())
            {
                if (VaOfIndex(v, index) is not { } va0) continue;
                ulong va = va0 + (ulong)subpage * PageSize;
                var mm = v.Mm.Mm;
                while (Walk.FindLeaf(mm, file.Hstate, va) is { } leaf && leaf.Shift > Arch.PageShift)
                    if (SplitHugetlbPte(ctx, mm, leaf, f) != Errno.Ok) { ret.Value = Errno.ENOMEM; yield break; }
                if (Walk.FindLeaf(mm, file.Hstate, va) is not null)
                    foreach (var s in UnmapHugepageRange(ctx, v, va, va + PageSize)) yield return s;
            }
            Note("hgm.memory_failure_piece_only");
        }
        finally
        {
            file.IMmapRwsem.UpWrite(ctx);
            SpinUnlock(ctx, mutex);
        }
    }


    /// <summary>SplitHugetlbPte (the model's, for the piece-only memory-failure design): the leaf
    /// <paramref name="hpte"/> of an HGM VMA is replaced by a table of leaves one level down that
    /// map the same subpages (one more mapcount and reference for each extra entry).</summary>
    private Errno SplitHugetlbPte(ExecContext ctx, MmStruct mm, HugetlbPte hpte, HugetlbFolio f)
    {
        var pgd = mm.Pgd;
        if (!K.Pgtable.TryAllocPageTablePage(out long pfn)) return Errno.ENOMEM;
        ulong va = pgd.EntryVa(hpte.Table, hpte.Index);
        var old = hpte.Entry;
        long firstSub = old.Pfn - f.HeadPfn, nr = (long)(hpte.Size / PageSize);
        pgd.Set(hpte.Table, hpte.Index, Pte.None);
        K.Tlb.FlushTlbRange(mm, va, va + hpte.Size);
        var lower = pgd.NewTable(pfn, hpte.Level - 1, va);
        long step = (long)(pgd.EntrySize(lower) / PageSize);
        for (int i = 0; i < lower.Entries.Length; i++)
            pgd.Set(lower, i, Pte.MkLeaf(old.Pfn + i * step, old.Writable));
        pgd.Set(hpte.Table, hpte.Index, Pte.MkTable(pfn));
        Hgm.HugetlbRemoveRmap(ctx, f, firstSub, nr);
        for (int i = 0; i < lower.Entries.Length; i++)
        {
            Hgm.HugetlbAddFileRmap(ctx, f, firstSub + i * step, step);
            if (i > 0) Hgm.FolioGet(ctx, f);
        }
        return Errno.Ok;
    }
}
