// HugeTLB high-granularity mapping: James Houghton's series "hugetlb: introduce HugeTLB
// high-granularity mapping" (linux-mm, v1 of 5 Jan 2023, based on mm-unstable 85b44c25cd1e; the
// mapcount of v2, 18 Feb 2023, as the HgmMapcount.V2 variant). Never merged; its function names
// are the series' (hugetlb_hgm_walk, hugetlb_walk_step, hugetlb_alloc_largest_pte,
// hugetlb_enable_hgm_vma, hugetlb_collapse) and the rest mainline's (mm/hugetlb.c,
// mm/userfaultfd.c, fs/hugetlbfs/inode.c, mm/mmap.c, kernel/fork.c).
//
// What is modelled: user address spaces (Kernel.MmAlloc) with VMAs over hugetlbfs files whose
// page cache holds HugeTLB folios (MAP_SHARED only, as the series); user page tables are the
// engine's radix trees (every table a frame from the allocator, every store through
// PageTable.Set, so the event log and the TLB bookkeeping see it); faults map the natural size
// (PMD for 2M, PUD for 1G) or, below an HGM table, the size of the entry the walk ends at;
// MADV_SPLIT, userfaultfd minor/wp registration, UFFDIO_CONTINUE in PAGE_SIZE-aligned pieces
// (each mapped by the largest entry that fits, hugetlb_alloc_largest_pte), MADV_COLLAPSE back to
// the natural size, munmap / mprotect of part of a VMA with hugetlb_vm_op_split's alignment
// rule, fork (copy_hugetlb_page_range only where the kernel copies: a uffd-wp VMA, since
// vma_needs_copy skips shared file mappings otherwise), hole punch and truncate, memory failure
// on one base page, exit.
//
// References, as the kernel takes them: the page cache holds one reference on each folio it
// holds (hugetlb_add_to_page_cache); every page-table entry mapping any part of a folio holds one
// more (the fault's or UFFDIO_CONTINUE's folio reference, kept by the mapping) and one mapcount
// (hugetlb_add_file_rmap): v1 in folio->_entire_mapcount (first tail page, writable under HVO),
// v2 in _entire_mapcount for a whole-folio entry and in each mapped subpage's _mapcount
// otherwise, written through vmemmap (so HVO's read-only tails fault the write).
//
// Locks (the series' "Synchronization"): faults, UFFDIO_CONTINUE and walks take the hugetlb VMA
// lock for read; MADV_COLLAPSE takes it for write and i_mmap_rwsem for write (as
// huge_pmd_unshare), so wherever hugetlb_walk() is safe an HGM walk is too; unmap, mprotect,
// hole punch and truncate take i_mmap_rwsem and the VMA lock for write. Entry stores are under
// the PTL of their hugetlb_pte: the split PTE-table lock for PTEs, the split PMD lock of the PMD
// table for PMD entries, mm->page_table_lock for PUD entries (huge_pte_lockptr with a shift).
// Page-table pages are freed only after their parent entry is cleared and flush_tlb_range has
// invalidated the mm's TLB and walk caches over them.
//
// Layout: this file holds the shared state (files, mms, page-cache slots, split PTLs) and the
// rmap and reference helpers; the kernel code is in parts by kernel function, each a class
// over this state: HugetlbPteWalk.cs (hugetlb_pte walks), HgmFaults.cs (hugetlb_fault,
// UFFDIO_CONTINUE), HgmVmaOps.cs (VMA splits, MADV_SPLIT, userfaultfd_register),
// HgmCollapse.cs (MADV_COLLAPSE), HgmUnmap.cs (munmap, mprotect, hole punch, truncate, memory
// failure), HgmFork.cs (dup_mmap, exit_mmap).
//
// Departures from the kernel:
// - x86-64 only (the series' scope); contiguous-PTE hstates are refused (EINVAL) at mmap.
// - One mapping per operation call; no mmap_lock (every operation is one task whose VMA-tree
//   changes happen in one step), no MAP_PRIVATE, no reservations, no PMD sharing.
// - munmap/mprotect check both split points before changing anything (the kernel splits the
//   first VMA before it finds the second split invalid; the outcome, EINVAL, is the same).
// - MADV_COLLAPSE collapses a huge page whenever its folio is in the page cache and something is
//   mapped below its natural entry (the whole page is then mapped); nothing mapped: skipped.
// - A fault in a non-hugetlb VMA is not modelled: such VMAs are PROT_NONE (they exist so that
//   HGM operations can be refused on them), so their faults are SIGSEGV (EFAULT).
// - A user fault's SIGBUS/SIGSEGV and VM_FAULT_OOM are returned as EFAULT / ENOMEM; a
//   userfaultfd minor fault handed to userspace as EAGAIN (VM_FAULT_RETRY).
// - Memory failure does not wait for or kill users of the poisoned page; with the
//   MemoryFailureUnmapsPieceOnly design the mapping is split by the model's own
//   SplitHugetlbPte (the series leaves this unimplemented).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Hgm;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>What invariants see of HGM: the files and the user address spaces.</summary>
public interface IHgmView
{
    IReadOnlyList<HugetlbfsInode> Files { get; }
    IReadOnlyList<HugetlbMm> Mms { get; }
    HgmMapcount Mapcount { get; }
    /// <summary>The HGM state of the user mm named <paramref name="mmName"/>, or null.</summary>
    HugetlbMm? MmByName(string mmName);
    /// <summary>folio->mapping and folio->index: the file and huge-page index whose page cache holds the folio, or null.</summary>
    (HugetlbfsInode File, long Index)? PageCacheSlot(HugetlbFolio f);
    /// <summary>TASK_SIZE.</summary>
    ulong UserTop { get; }
    /// <summary>Folios that left a hugetlbfs page cache or whose last reference went in the
    /// current step, with the file and index they were cached at (Slot null: not cached).</summary>
    IReadOnlyList<(HugetlbFolio Folio, (HugetlbfsInode File, long Index)? Slot)> LeftThisStep { get; }
}

/// <summary>HugeTLB high-granularity mapping over user address spaces.</summary>
public sealed class HugetlbHgm : KernelCode, IHgmView
{
    private readonly List<HugetlbfsInode> _files = new();
    internal readonly List<HugetlbMm> MmList = new();
    internal readonly Dictionary<string, HugetlbMm> MmsByName = new(StringComparer.Ordinal);
    // Split page-table locks (ptlock_ptr of a PTE table, pmd_lockptr of a PMD table), by table frame.
    internal readonly Dictionary<long, KernelLock> PtLocks = new();

    internal HugetlbHgm(Kernel k) : base(k)
    {
        Walk = new(k, this);
        Faults = new(k, this);
        VmaOps = new(k, this);
        Collapse = new(k, this);
        Unmap = new(k, this);
        Fork = new(k, this);
    }

    /// <summary>hugetlb_pte walks (HugetlbPteWalk.cs).</summary>
    public HugetlbPteWalk Walk { get; }
    /// <summary>hugetlb_fault, user accesses, UFFDIO_CONTINUE (HgmFaults.cs).</summary>
    public HgmFaults Faults { get; }
    /// <summary>VMA splits, MADV_SPLIT, userfaultfd_register (HgmVmaOps.cs).</summary>
    public HgmVmaOps VmaOps { get; }
    /// <summary>MADV_COLLAPSE (HgmCollapse.cs).</summary>
    public HgmCollapse Collapse { get; }
    /// <summary>munmap, mprotect, hole punch, truncate, memory failure (HgmUnmap.cs).</summary>
    public HgmUnmap Unmap { get; }
    /// <summary>dup_mmap and exit_mmap (HgmFork.cs).</summary>
    public HgmFork Fork { get; }

    internal HgmOptions Opt => K.Variant.Hgm;
    internal HgmBreakage Bad => K.Variant.HgmBreakage;

    public IReadOnlyList<HugetlbfsInode> Files => _files;
    public IReadOnlyList<HugetlbMm> Mms => MmList;
    public HgmMapcount Mapcount => Opt.Mapcount;
    public HugetlbMm? MmByName(string mmName) => MmsByName.GetValueOrDefault(mmName);

    // folio->mapping and folio->index of the folios in some hugetlbfs page cache.
    private readonly Dictionary<HugetlbFolio, (HugetlbfsInode File, long Index)> _cacheSlots = new();

    public (HugetlbfsInode File, long Index)? PageCacheSlot(HugetlbFolio f) => _cacheSlots.TryGetValue(f, out var s) ? s : null;

    internal void CacheAdd(HugetlbfsInode file, long index, HugetlbFolio f)
    {
        file.CacheAdd(index, f);
        _cacheSlots.Add(f, (file, index));
    }

    internal void CacheRemove(HugetlbfsInode file, long index)
    {
        if (file.PageCache.TryGetValue(index, out var f))
        {
            _cacheSlots.Remove(f);
            LeftThisStepList.Add((f, (file, index)));
        }
        file.CacheRemove(index);
    }

    // Folios that left a page cache or were freed in the current step, with the file and index
    // they were cached at (null when not cached): the kernel events after which no user entry
    // may map them. Cleared when a step begins (Kernel.BeginStep).
    internal readonly List<(HugetlbFolio Folio, (HugetlbfsInode File, long Index)? Slot)> LeftThisStepList = new();

    public IReadOnlyList<(HugetlbFolio Folio, (HugetlbfsInode File, long Index)? Slot)> LeftThisStep => LeftThisStepList;

    internal void BeginStep() => LeftThisStepList.Clear();

    internal ulong PageSize => (ulong)Arch.PageSize;

    /// <summary>The page-table level whose entries map exactly <paramref name="size"/>, or null.</summary>
    public PtLevel? LevelOfSize(long size)
    {
        foreach (var l in new[] { PtLevel.Pte, PtLevel.Pmd, PtLevel.Pud })
            if ((int)l < Arch.Levels && Arch.LevelSize(l) == size && (l == PtLevel.Pte || Arch.LeafAllowed(l))) return l;
        return null;
    }

    /// <summary>for_each_hgm_shift: the mapping sizes an HGM VMA of hstate <paramref name="h"/>
    /// may use, largest first: the hstate sizes not above huge_page_size(h) that are page-table
    /// level sizes, down to PAGE_SIZE.</summary>
    [Kernel("mm/hugetlb.c", "for_each_hgm_shift")]
    public IReadOnlyList<int> ForEachHgmShift(Hstate h)
    {
        var shifts = K.Hugetlb.Hstates.Where(x => x.Size <= h.Size && LevelOfSize(x.Size) is not null)
            .Select(x => Arch.LevelShift(LevelOfSize(x.Size)!.Value)).Append(Arch.PageShift).Distinct().OrderDescending();
        return [.. shifts];
    }

    internal int NaturalShift(Hstate h) => Arch.LevelShift(LevelOfSize(h.Size) ?? throw new ModelBugException($"hstate {h.Name} has no page-table level"));

    // ------------------------------------------------------------------------------------
    // Files and address spaces
    // ------------------------------------------------------------------------------------

    /// <summary>hugetlb_file_setup / hugetlbfs_create: a hugetlbfs file of
    /// <paramref name="hugePages"/> huge pages of size <paramref name="size"/>; null (EINVAL) when
    /// there is no such hstate or it cannot be mapped by one page-table entry.</summary>
    [Kernel("fs/hugetlbfs/inode.c", "hugetlb_file_setup")]
    public HugetlbfsInode? HugetlbFileSetup(long size, long hugePages, out Errno err)
    {
        var h = K.Hugetlb.SizeToHstate(size);
        err = h is null || LevelOfSize(size) is null || hugePages < 0 ? Errno.EINVAL : Errno.Ok;
        if (err != Errno.Ok) return null;
        var f = new HugetlbfsInode(_files.Count, h!, hugePages);
        _files.Add(f);
        return f;
    }

    /// <summary>mm_alloc: a fresh user address space with an empty VMA tree; null on ENOMEM.</summary>
    public HugetlbMm? MmAlloc()
    {
        var mm = K.MmAlloc();
        if (mm is null) return null;
        var hm = new HugetlbMm(mm);
        MmList.Add(hm);
        MmsByName[mm.Name] = hm;
        return hm;
    }

    /// <summary>do_mmap with MAP_FIXED_NOREPLACE of [addr, addr + len) in <paramref name="hm"/>:
    /// MAP_SHARED of <paramref name="file"/> at page offset <paramref name="pgoff"/>, or (file
    /// null) an anonymous PROT_NONE VMA. EINVAL: unaligned (a hugetlbfs mapping must be aligned
    /// to its huge page size, hugetlb_get_unmapped_area / hugetlbfs_file_mmap), empty or
    /// outside the user half; EEXIST: overlaps a VMA.</summary>
    [Kernel("mm/mmap.c", "do_mmap")]
    public Errno DoMmap(HugetlbMm hm, HugetlbfsInode? file, ulong addr, ulong len, long pgoff, bool writable)
    {
        if (hm.Exited) return Errno.EINVAL;
        ulong align = file is null ? PageSize : (ulong)file.Hstate.Size;
        if (len == 0 || addr % align != 0 || len % align != 0 || (ulong)pgoff * PageSize % align != 0) return Errno.EINVAL;
        if (addr + len < addr || addr + len > UserTop) return Errno.EINVAL;
        if (hm.Intersecting(addr, addr + len).Count > 0) return Errno.EEXIST;
        var flags = file is null ? VmaFlags.None
            : VmaFlags.VmRead | VmaFlags.VmShared | VmaFlags.VmHugetlb | (writable ? VmaFlags.VmWrite : VmaFlags.None);
        var v = new VmAreaStruct(hm, addr, addr + len, flags, file, pgoff, file is null ? null : NewVmaLock(hm));
        hm.Insert(v);
        file?.Link(v);
        return Errno.Ok;
    }

    /// <summary>TASK_SIZE: the top of the user half (the half of the VA space below the kernel's).</summary>
    public ulong UserTop => 1UL << (Arch.VaBits - 1);

    private int _vmaLocks;
    internal RwSemaphore NewVmaLock(HugetlbMm hm) => new($"{hm.Mm.Name}.hugetlb_vma_lock{_vmaLocks++}");

    /// <summary>The file index (in huge pages) and subpage that <paramref name="va"/> of a
    /// hugetlb VMA maps (linear_page_index split by the hstate).</summary>
    public static (long Index, long Subpage) FileOffset(VmAreaStruct v, ulong va, int pageShift)
    {
        long pages = v.VmPgoff + (long)((va - v.VmStart) >> pageShift);
        long per = v.VmFile!.Hstate.PagesPerHugePage;
        return (pages / per, pages % per);
    }


    // ------------------------------------------------------------------------------------
    // rmap and references
    // ------------------------------------------------------------------------------------

    internal ulong Page(HugetlbFolio f, long subpage) => PfnToPage(f.HeadPfn + subpage);

    internal enum Count { Ref, Map, EntireMap }

    internal void AddToCount(ExecContext ctx, ulong page, int delta, Count which, string what)
    {
        if (!ReadStructPage(ctx, page, out var sp)) return;
        if (which == Count.Ref) sp.Refcount += delta;
        else if (which == Count.Map) sp.Mapcount += delta;
        else sp.EntireMapcount += delta;
        WriteStructPage(ctx, page, sp, what);
    }

    /// <summary>hugetlb_add_file_rmap for an entry mapping <paramref name="nrPages"/> subpages
    /// from <paramref name="subpage"/> (v1: _entire_mapcount; v2: THP-like, see the header).</summary>
    [Kernel("include/linux/rmap.h", "hugetlb_add_file_rmap")]
    public void HugetlbAddFileRmap(ExecContext ctx, HugetlbFolio f, long subpage, long nrPages) => Rmap(ctx, f, subpage, nrPages, +1, "hugetlb_add_file_rmap");

    /// <summary>hugetlb_remove_rmap: undoes <see cref="HugetlbAddFileRmap"/> for one entry.</summary>
    [Kernel("include/linux/rmap.h", "hugetlb_remove_rmap")]
    public void HugetlbRemoveRmap(ExecContext ctx, HugetlbFolio f, long subpage, long nrPages) => Rmap(ctx, f, subpage, nrPages, -1, "hugetlb_remove_rmap");

    private void Rmap(ExecContext ctx, HugetlbFolio f, long subpage, long nrPages, int delta, string what)
    {
        if (Opt.Mapcount == HgmMapcount.V1 || nrPages == f.NrPages)
        {
            AddToCount(ctx, Page(f, 1), delta, Count.EntireMap, what + ": folio->_entire_mapcount");
            return;
        }
        for (long p = subpage; p < subpage + nrPages && p < f.NrPages; p++)
            AddToCount(ctx, Page(f, p), delta, Count.Map, what + $": page[{p}]._mapcount");
    }

    /// <summary>folio_get.</summary>
    [Kernel("include/linux/mm.h", "folio_get")]
    public void FolioGet(ExecContext ctx, HugetlbFolio f) => AddToCount(ctx, Page(f, 0), +1, Count.Ref, "folio_get");

    /// <summary>folio_put without the free: true when the reference was the last (the caller
    /// then runs free_huge_folio).</summary>
    [Kernel("include/linux/mm.h", "folio_put")]
    public bool FolioPut(ExecContext ctx, HugetlbFolio f)
    {
        AddToCount(ctx, Page(f, 0), -1, Count.Ref, "folio_put");
        return FolioRefCount(View(ctx), Page(f, 0)) == 0;
    }

    internal IEnumerable<StepStatus> PutAll(ExecContext ctx, List<HugetlbFolio> puts)
    {
        foreach (var f in puts)
        {
            if (!FolioPut(ctx, f)) continue;
            LeftThisStepList.Add((f, PageCacheSlot(f)));
            foreach (var s in K.Hugetlb.FreeHugeFolio(ctx, f)) yield return s;
        }
    }

    internal static IEnumerable<StepStatus> WithMmapLock(ExecContext ctx, HugetlbMm hm, bool write, IEnumerable<StepStatus> body)
    {
        foreach (var s in write ? hm.MmapLock.DownWrite(ctx) : hm.MmapLock.DownRead(ctx)) yield return s;
        try
        {
            foreach (var s in body) yield return s;
        }
        finally
        {
            if (write) hm.MmapLock.UpWrite(ctx);
            else hm.MmapLock.UpRead(ctx);
        }
    }

    /// <summary>A VMA-tree change that is one step of kernel code (madvise, userfaultfd_register,
    /// mmap of an alias) made under mm->mmap_lock for write.</summary>
    public IEnumerable<StepStatus> UnderMmapWriteLock(ExecContext ctx, HugetlbMm hm, Func<Errno> change, Ret<Errno> ret, string action) =>
        WithMmapLock(ctx, hm, write: true, Once(change, ret, action));

    private static IEnumerable<StepStatus> Once(Func<Errno> change, Ret<Errno> ret, string action)
    {
        ret.Value = change();
        yield return StepStatus.After(action);
    }

    internal HugetlbFolio? FolioOfLeaf(Pte e)
    {
        foreach (var h in K.Hugetlb.Hstates)
            if (h.TryGetFolio(e.Pfn & ~(h.PagesPerHugePage - 1), out var f)) return f;
        return null;
    }

    /// <summary>pte_free / pmd_free of tables already unlinked and flushed: the frames go back to the buddy.</summary>
    internal void FreeUserTables(MmStruct mm, List<PtTable> tables, string who)
    {
        foreach (var t in tables)
        {
            mm.Pgd.ForgetTable(t);
            PtLocks.Remove(t.Pfn);
            Mem.FreePages(t.Pfn, 0, FrameOwner.PageTable, who);
        }
    }

}

/// <summary>A part of <see cref="HugetlbHgm"/>: kernel code of the HGM series over the shared
/// HGM state (files, mms, page-cache slots, split PTLs, rmap and references).</summary>
public abstract class HgmPart : KernelCode
{
    private protected readonly HugetlbHgm Hgm;

    private protected HgmPart(Kernel k, HugetlbHgm hgm) : base(k) => Hgm = hgm;

    private protected HgmOptions Opt => Hgm.Opt;
    private protected HgmBreakage Bad => Hgm.Bad;
    private protected ulong PageSize => (ulong)Arch.PageSize;
    private protected HugetlbPteWalk Walk => Hgm.Walk;
}
