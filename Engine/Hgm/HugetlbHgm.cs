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
    /// current step, with the file and index they were cached at (File null: not cached).</summary>
    IReadOnlyList<(HugetlbFolio Folio, HugetlbfsInode? File, long Index)> LeftThisStep { get; }
}

/// <summary>HugeTLB high-granularity mapping over user address spaces.</summary>
public sealed class HugetlbHgm : KernelCode, IHgmView
{
    private readonly List<HugetlbfsInode> _files = new();
    private readonly List<HugetlbMm> _mms = new();
    private readonly Dictionary<string, HugetlbMm> _byName = new(StringComparer.Ordinal);
    // Split page-table locks (ptlock_ptr of a PTE table, pmd_lockptr of a PMD table), by table frame.
    private readonly Dictionary<long, KernelLock> _ptlocks = new();

    internal HugetlbHgm(Kernel k) : base(k) { }

    private HgmOptions Opt => K.Variant.Hgm;
    private HgmBreakage Bad => K.Variant.HgmBreakage;

    public IReadOnlyList<HugetlbfsInode> Files => _files;
    public IReadOnlyList<HugetlbMm> Mms => _mms;
    public HgmMapcount Mapcount => Opt.Mapcount;
    public HugetlbMm? MmByName(string mmName) => _byName.GetValueOrDefault(mmName);

    // folio->mapping and folio->index of the folios in some hugetlbfs page cache.
    private readonly Dictionary<HugetlbFolio, (HugetlbfsInode File, long Index)> _cacheSlots = new();

    public (HugetlbfsInode File, long Index)? PageCacheSlot(HugetlbFolio f) => _cacheSlots.TryGetValue(f, out var s) ? s : null;

    private void CacheAdd(HugetlbfsInode file, long index, HugetlbFolio f)
    {
        file.CacheAdd(index, f);
        _cacheSlots.Add(f, (file, index));
    }

    private void CacheRemove(HugetlbfsInode file, long index)
    {
        if (file.PageCache.TryGetValue(index, out var f))
        {
            _cacheSlots.Remove(f);
            _leftThisStep.Add((f, file, index));
        }
        file.CacheRemove(index);
    }

    // Folios that left a page cache or were freed in the current step, with the file and index
    // they were cached at (null when not cached): the kernel events after which no user entry
    // may map them. Cleared when a step begins (Kernel.BeginStep).
    private readonly List<(HugetlbFolio Folio, HugetlbfsInode? File, long Index)> _leftThisStep = new();

    public IReadOnlyList<(HugetlbFolio Folio, HugetlbfsInode? File, long Index)> LeftThisStep => _leftThisStep;

    internal void BeginStep() => _leftThisStep.Clear();

    private ulong PageSize => (ulong)Arch.PageSize;

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

    private int NaturalShift(Hstate h) => Arch.LevelShift(LevelOfSize(h.Size) ?? throw new ModelBugException($"hstate {h.Name} has no page-table level"));

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
        _mms.Add(hm);
        _byName[mm.Name] = hm;
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
    private RwSemaphore NewVmaLock(HugetlbMm hm) => new($"{hm.Mm.Name}.hugetlb_vma_lock{_vmaLocks++}");

    /// <summary>The file index (in huge pages) and subpage that <paramref name="va"/> of a
    /// hugetlb VMA maps (linear_page_index split by the hstate).</summary>
    public static (long Index, long Subpage) FileOffset(VmAreaStruct v, ulong va, int pageShift)
    {
        long pages = v.VmPgoff + (long)((va - v.VmStart) >> pageShift);
        long per = v.VmFile!.Hstate.PagesPerHugePage;
        return (pages / per, pages % per);
    }

    // ------------------------------------------------------------------------------------
    // hugetlb_pte and the walks
    // ------------------------------------------------------------------------------------

    /// <summary>huge_pte_lockptr(shift, mm, pte): the PTL of an entry of <paramref name="t"/>.</summary>
    [Kernel("include/linux/hugetlb.h", "huge_pte_lockptr")]
    public KernelLock HugePteLockptr(MmStruct mm, PtTable t)
    {
        if (t.Level >= PtLevel.Pud) return mm.PageTableLock;
        if (!_ptlocks.TryGetValue(t.Pfn, out var l))
            _ptlocks[t.Pfn] = l = new KernelLock($"{mm.Name}.ptl({t.Level} table {t.Pfn:x})");
        return l;
    }

    private HugetlbPte Hpte(MmStruct mm, PtTable t, int i) => new(t, i, Arch.LevelShift(t.Level), HugePteLockptr(mm, t));

    /// <summary>hugetlb_walk: the entry at the hstate's level for <paramref name="addr"/>, or
    /// null when a table above it is missing (or a leaf above it exists).</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_walk")]
    public HugetlbPte? HugetlbWalk(MmStruct mm, Hstate h, ulong addr)
    {
        var level = LevelOfSize(h.Size)!.Value;
        PtTable t = mm.Pgd.Root;
        while (t.Level > level)
        {
            var e = t.Entries[mm.Pgd.Index(addr, t.Level)];
            if (!mm.Pgd.TryGetChild(t, e, out var child)) return null;
            t = child;
        }
        return Hpte(mm, t, mm.Pgd.Index(addr, t.Level));
    }

    /// <summary>hugetlb_walk_step: one level down from <paramref name="hpte"/> toward
    /// <paramref name="addr"/>: the entry of the lower table it points at. With
    /// <paramref name="alloc"/>, a none entry gets a fresh lower table first
    /// (hugetlb_alloc_pmd / hugetlb_alloc_pte). Null: a leaf or (without alloc) none; ENOMEM.</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_walk_step")]
    public HugetlbPte? HugetlbWalkStep(MmStruct mm, HugetlbPte hpte, ulong addr, bool alloc, out Errno err)
    {
        err = Errno.Ok;
        if (hpte.Level == PtLevel.Pte || hpte.PresentLeaf) return null;
        var pgd = mm.Pgd;
        if (hpte.None)
        {
            if (!alloc) return null;
            long pfn = K.Pgtable.AllocPageTablePage();
            if (pfn < 0) { err = Errno.ENOMEM; return null; }
            var lower = pgd.NewTable(pfn, hpte.Level - 1, pgd.EntryVa(hpte.Table, hpte.Index));
            pgd.Set(hpte.Table, hpte.Index, Pte.MkTable(pfn));
            return Hpte(mm, lower, pgd.Index(addr, lower.Level));
        }
        if (!pgd.TryGetChild(hpte.Table, hpte.Entry, out var child))
            throw new ModelBugException($"{mm.Name}: {hpte.Level} entry at {pgd.EntryVa(hpte.Table, hpte.Index):x} is {hpte.Entry}, not a table of this tree");
        return Hpte(mm, child, pgd.Index(addr, child.Level));
    }

    /// <summary>hugetlb_hgm_walk: from the hstate-level entry of <paramref name="addr"/> down to
    /// the entry of shift <paramref name="targetShift"/>, stopping early at a leaf (or, without
    /// <paramref name="alloc"/>, at a none entry). Tables above the hstate level are allocated
    /// (huge_pte_alloc) only with alloc. The entry's address is always the first of its mapping
    /// (the series rounds addresses down to the hugetlb_pte's size).</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_hgm_walk")]
    public HugetlbPte? HugetlbHgmWalk(MmStruct mm, Hstate h, ulong addr, int targetShift, bool alloc, out Errno err)
    {
        err = Errno.Ok;
        HugetlbPte? hpte = HugetlbWalk(mm, h, addr);
        if (hpte is null)
        {
            if (!alloc) return null;
            var t = mm.Pgd.WalkAlloc(addr, LevelOfSize(h.Size)!.Value, K.Pgtable.AllocPageTablePage, out err);
            if (t is null) return null; // ENOMEM, or EBUSY: a leaf above the hstate level (a model bug for hugetlb)
            hpte = Hpte(mm, t, mm.Pgd.Index(addr, t.Level));
        }
        var cur = hpte.Value;
        while (cur.Shift > targetShift)
        {
            var next = HugetlbWalkStep(mm, cur, addr, alloc, out err);
            if (next is null) break;
            cur = next.Value;
        }
        return err == Errno.Ok ? cur : null;
    }

    /// <summary>The leaf mapping <paramref name="addr"/> at any level (a full HGM walk), or null.</summary>
    public HugetlbPte? FindLeaf(MmStruct mm, Hstate h, ulong addr)
    {
        var hpte = HugetlbHgmWalk(mm, h, addr, Arch.PageShift, alloc: false, out _);
        return hpte is { PresentLeaf: true } ? hpte : null;
    }

    /// <summary>hugetlb_alloc_largest_pte: the largest HGM entry that starts at
    /// <paramref name="addr"/> and fits in [addr, end), allocating tables down to it. Returns it
    /// with EEXIST when a leaf already maps addr; EINVAL when no HGM size fits.</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_alloc_largest_pte")]
    public HugetlbPte? HugetlbAllocLargestPte(MmStruct mm, VmAreaStruct v, ulong addr, ulong end, out Errno err)
    {
        var h = v.VmFile!.Hstate;
        foreach (int shift in ForEachHgmShift(h))
        {
            ulong size = 1UL << shift;
            if (addr % size != 0 || addr + size > end) continue;
            var hpte = HugetlbHgmWalk(mm, h, addr, shift, alloc: true, out err);
            if (hpte is null) return null;
            var p = hpte.Value;
            if (p.PresentLeaf) { err = Errno.EEXIST; return p; }
            if (p.Shift == shift && p.None) return p;
            // Something is mapped below this size: try a smaller one.
        }
        err = Errno.EINVAL;
        return null;
    }

    // ------------------------------------------------------------------------------------
    // rmap and references
    // ------------------------------------------------------------------------------------

    private ulong Page(HugetlbFolio f, long subpage) => PfnToPage(f.HeadPfn + subpage);

    private enum Count { Ref, Map, EntireMap }

    private void AddToCount(ExecContext ctx, ulong page, int delta, Count which, string what)
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

    private IEnumerable<StepStatus> PutAll(ExecContext ctx, List<HugetlbFolio> puts)
    {
        foreach (var f in puts)
        {
            if (!FolioPut(ctx, f)) continue;
            var slot = PageCacheSlot(f);
            _leftThisStep.Add((f, slot?.File, slot?.Index ?? -1));
            foreach (var s in K.Hugetlb.FreeHugeFolio(ctx, f)) yield return s;
        }
    }

    private static IEnumerable<StepStatus> WithMmapLock(ExecContext ctx, HugetlbMm hm, bool write, IEnumerable<StepStatus> body)
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

    private HugetlbFolio? FolioOfLeaf(Pte e)
    {
        foreach (var h in K.Hugetlb.Hstates)
            if (h.TryGetFolio(e.Pfn & ~(h.PagesPerHugePage - 1), out var f)) return f;
        return null;
    }

    // ------------------------------------------------------------------------------------
    // Faults
    // ------------------------------------------------------------------------------------

    /// <summary>hugetlb_fault (and hugetlb_no_page) for a user access to <paramref name="addr"/>:
    /// allocate the folio and add it to the page cache if missing, then map the natural size,
    /// or below an HGM table the size of the entry the walk ends at. A page already in the page
    /// cache of a VMA registered in minor mode is a minor fault for userspace (EAGAIN; with
    /// MADV_SPLIT its address is reported rounded to PAGE_SIZE, else to the huge page size).</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_fault")]
    public IEnumerable<StepStatus> HugetlbFault(ExecContext ctx, HugetlbMm hm, ulong addr, bool write, Ret<Errno> ret) =>
        WithMmapLock(ctx, hm, write: false, HugetlbFaultLocked(ctx, hm, addr, write, ret));

    private IEnumerable<StepStatus> HugetlbFaultLocked(ExecContext ctx, HugetlbMm hm, ulong addr, bool write, Ret<Errno> ret)
    {
        var v = hm.VmaLookup(addr);
        ret.Value = Errno.EFAULT;
        if (v is null || !v.IsVmHugetlbPage || (write && (v.VmFlags & VmaFlags.VmWrite) == 0))
        {
            Note("hgm.fault_sigsegv");
            yield return StepStatus.After("find_vma");
            yield break;
        }
        var file = v.VmFile!;
        var h = file.Hstate;
        foreach (var s in v.VmaLock!.DownRead(ctx)) yield return s;
        KernelLock? mutex = null;
        try
        {
            var (index, subpage) = FileOffset(v, addr, Arch.PageShift);
            foreach (var s in SpinLock(ctx, file.FaultMutex(index))) yield return s;
            mutex = file.FaultMutex(index);
            if (FindLeaf(hm.Mm, h, addr) is not null) { ret.Value = Errno.Ok; Note("hgm.fault_spurious"); yield break; }
            if (index >= file.ISize) { Note("hgm.fault_sigbus"); yield break; }
            bool fresh = false;
            if (!file.PageCache.TryGetValue(index, out var f))
            {
                var got = new Ret<HugetlbFolio?>();
                foreach (var s in K.Hugetlb.AllocHugetlbFolio(ctx, h, got, null)) yield return s;
                if (got.Value is null) { ret.Value = Errno.ENOMEM; Note("hgm.fault_oom"); yield break; }
                f = got.Value;
                f.UserReference = false; // the mapping, not a `hugetlb_free` handle, holds this reference
                // hugetlb_add_to_page_cache: the page cache takes its own reference.
                CacheAdd(file, index, f);
                FolioGet(ctx, f);
                fresh = true;
                yield return StepStatus.After("hugetlb_add_to_page_cache");
            }
            else if ((v.VmFlags & VmaFlags.VmUffdMinor) != 0)
            {
                // handle_userfault(vmf, VM_UFFD_MINOR)
                ret.Value = Errno.EAGAIN;
                Note(v.HgmEnabled ? "hgm.uffd_minor_fault_page_size" : "hgm.uffd_minor_fault_huge_size");
                yield break;
            }
            var hpte = HugetlbHgmWalk(hm.Mm, h, addr, Arch.PageShift, alloc: false, out _)
                ?? HugetlbHgmWalk(hm.Mm, h, addr, NaturalShift(h), alloc: true, out ret.Value);
            if (hpte is not { None: true } p)
            {
                if (fresh) { CacheRemove(file, index); foreach (var s in PutAll(ctx, [f, f])) yield return s; }
                if (ret.Value == Errno.Ok) ret.Value = Errno.ENOMEM;
                yield break;
            }
            foreach (var s in SpinLock(ctx, p.Ptl)) yield return s;
            ulong va = hm.Mm.Pgd.EntryVa(p.Table, p.Index);
            long first = FileOffset(v, va, Arch.PageShift).Subpage;
            long nr = (long)(p.Size / PageSize);
            hm.Mm.Pgd.Set(p.Table, p.Index, Pte.MkLeaf(f.HeadPfn + first, (v.VmFlags & VmaFlags.VmWrite) != 0));
            HugetlbAddFileRmap(ctx, f, first, nr);
            if (!fresh) FolioGet(ctx, f); // a fresh folio's allocation reference becomes the mapping's
            SpinUnlock(ctx, p.Ptl);
            ret.Value = Errno.Ok;
            Note(nr == f.NrPages ? "hgm.fault_natural" : "hgm.fault_hgm");
            yield return StepStatus.After("set_huge_pte_at");
        }
        finally
        {
            if (mutex is not null) SpinUnlock(ctx, mutex);
            v.VmaLock!.UpRead(ctx);
        }
    }

    /// <summary>A user load or store at <paramref name="addr"/>: through the TLB or a hardware
    /// walk of the mm's page table; a miss (or a store to a read-only entry) is a page fault.</summary>
    public IEnumerable<StepStatus> UserAccess(ExecContext ctx, HugetlbMm hm, ulong addr, bool write, Ret<Errno> ret)
    {
        var mm = hm.Mm;
        bool cached = K.Cpus[ctx.CpuId].Tlb.TryLookup(addr, out var te, mm.Asid);
        var walk = mm.Pgd.Walk(addr);
        if ((cached && (te.Writable || !write)) || (!cached && walk.IsLeaf && (walk.Entry.Writable || !write)))
        {
            ret.Value = Translate(ctx, mm, addr, write) ? Errno.Ok : Errno.EFAULT;
            yield return StepStatus.After(write ? "user_store" : "user_load");
            yield break;
        }
        foreach (var s in HugetlbFault(ctx, hm, addr, write, ret)) yield return s;
    }

    private bool Translate(ExecContext ctx, MmStruct mm, ulong addr, bool write) => K.Mmu.Translate(ctx, mm, addr, write, out _, out _);

    // ------------------------------------------------------------------------------------
    // madvise, userfaultfd
    // ------------------------------------------------------------------------------------

    /// <summary>The VMAs exactly covering [start, end), splitting at the ends (the split rule of
    /// hugetlb_vm_op_split). EINVAL: unaligned split or a non-hugetlb VMA where
    /// <paramref name="hugetlbOnly"/>; ENOMEM: a hole in the range (madvise's and mprotect's error).</summary>
    private List<VmAreaStruct>? RangeVmas(HugetlbMm hm, ulong start, ulong end, bool hugetlbOnly, out Errno err)
    {
        err = Errno.Ok;
        if (hm.Exited || start % PageSize != 0 || end <= start) { err = Errno.EINVAL; return null; }
        var vmas = hm.Intersecting(start, end);
        ulong at = start;
        foreach (var v in vmas)
        {
            if (v.VmStart > at) { err = Errno.ENOMEM; return null; }
            at = v.VmEnd;
            if (hugetlbOnly && !v.IsVmHugetlbPage) { err = Errno.EINVAL; return null; }
        }
        if (at < end) { err = Errno.ENOMEM; return null; }
        foreach (ulong split in new[] { start, end })
        {
            var v = hm.VmaLookup(split);
            if (v is not null && v.VmStart != split && HugetlbVmOpSplit(v, split) != Errno.Ok) { err = Errno.EINVAL; return null; }
        }
        SplitVma(hm, start);
        SplitVma(hm, end);
        return hm.Intersecting(start, end);
    }

    /// <summary>hugetlb_vm_op_split: a hugetlb VMA may be split only at a multiple of its huge
    /// page size (EINVAL otherwise).</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_vm_op_split")]
    public Errno HugetlbVmOpSplit(VmAreaStruct v, ulong addr)
    {
        if (!v.IsVmHugetlbPage || Bad.SplitIgnoresHugeAlignment) return Errno.Ok;
        return addr % (ulong)v.VmFile!.Hstate.Size == 0 ? Errno.Ok : Errno.EINVAL;
    }

    /// <summary>__split_vma at <paramref name="addr"/> (already allowed): the upper part becomes a
    /// new VMA with its own hugetlb VMA lock (hugetlb_vm_op_open allocates one).</summary>
    [Kernel("mm/mmap.c", "__split_vma")]
    public void SplitVma(HugetlbMm hm, ulong addr)
    {
        var v = hm.VmaLookup(addr);
        if (v is null || v.VmStart == addr) return;
        var upper = new VmAreaStruct(hm, addr, v.VmEnd, v.VmFlags, v.VmFile, v.VmPgoff + (long)((addr - v.VmStart) / PageSize), v.VmFile is null ? null : NewVmaLock(hm));
        v.VmEnd = addr;
        hm.Insert(upper);
        v.VmFile?.Link(upper);
    }

    /// <summary>MADV_SPLIT → hugetlb_enable_hgm_vma: sets VM_HUGETLB_HGM on the VMAs of the
    /// range. It changes the userfaultfd API (minor faults reported at PAGE_SIZE, UFFDIO_CONTINUE
    /// in PAGE_SIZE pieces); it does not split any mapping. EINVAL: not a MAP_SHARED hugetlb
    /// VMA, or not x86-64 (hugetlb_hgm_eligible); ENOMEM: a hole.</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_enable_hgm_vma")]
    public Errno HugetlbEnableHgmVma(HugetlbMm hm, ulong start, ulong end)
    {
        if (Arch.Arch != Config.Arch.X86_64) return Errno.EINVAL;
        var vmas = RangeVmas(hm, start, end, hugetlbOnly: true, out var err);
        if (vmas is null) return err;
        if (vmas.Any(v => (v.VmFlags & VmaFlags.VmShared) == 0)) return Errno.EINVAL;
        foreach (var v in vmas) v.VmFlags |= VmaFlags.VmHugetlbHgm;
        return Errno.Ok;
    }

    /// <summary>userfaultfd_register (UFFDIO_REGISTER) in minor or write-protect mode. EINVAL: a
    /// range not aligned to the VMA's huge page size, or a VMA that cannot take the mode
    /// (vma_can_userfault: minor mode needs hugetlb or shmem); ENOMEM: a hole.</summary>
    [Kernel("fs/userfaultfd.c", "userfaultfd_register")]
    public Errno UserfaultfdRegister(HugetlbMm hm, ulong start, ulong end, bool minor)
    {
        foreach (var v in hm.Intersecting(start, end))
            if (v.IsVmHugetlbPage && (start % (ulong)v.VmFile!.Hstate.Size != 0 || end % (ulong)v.VmFile.Hstate.Size != 0)) return Errno.EINVAL;
        var vmas = RangeVmas(hm, start, end, hugetlbOnly: true, out var err);
        if (vmas is null) return err;
        foreach (var v in vmas) v.VmFlags |= minor ? VmaFlags.VmUffdMinor : VmaFlags.VmUffdWp;
        return Errno.Ok;
    }

    /// <summary>UFFDIO_CONTINUE of [start, start + len) (mfill_atomic_hugetlb with
    /// MFILL_ATOMIC_CONTINUE): maps pages already in the page cache, each piece by the largest
    /// entry that fits. ENOENT: no VMA, a VMA not registered in minor mode, or a range past the
    /// VMA's end; EINVAL: not aligned to PAGE_SIZE (HGM VMA) or to the huge page size; EFAULT:
    /// the page is not in the page cache; EEXIST: already mapped; ENOMEM.</summary>
    [Kernel("mm/userfaultfd.c", "mfill_atomic_hugetlb")]
    public IEnumerable<StepStatus> MfillAtomicHugetlb(ExecContext ctx, HugetlbMm hm, ulong start, ulong len, Ret<Errno> ret) =>
        WithMmapLock(ctx, hm, write: false, MfillAtomicHugetlbLocked(ctx, hm, start, len, ret));

    private IEnumerable<StepStatus> MfillAtomicHugetlbLocked(ExecContext ctx, HugetlbMm hm, ulong start, ulong len, Ret<Errno> ret)
    {
        var v = hm.Exited ? null : hm.VmaLookup(start);
        ret.Value = Errno.ENOENT;
        if (v is null || start + len < start || start + len > v.VmEnd || (v.VmFlags & VmaFlags.VmUffdMinor) == 0)
        {
            yield return StepStatus.After("find_dst_vma");
            yield break;
        }
        ulong gran = v.HgmEnabled ? PageSize : (ulong)v.VmFile!.Hstate.Size;
        if (len == 0 || start % gran != 0 || len % gran != 0) { ret.Value = Errno.EINVAL; yield return StepStatus.After("find_dst_vma"); yield break; }
        var file = v.VmFile!;
        foreach (var s in v.VmaLock!.DownRead(ctx)) yield return s;
        KernelLock? held = null;
        try
        {
            ulong end = start + len;
            ret.Value = Errno.Ok;
            for (ulong addr = start; addr < end;)
            {
                var (index, subpage) = FileOffset(v, addr, Arch.PageShift);
                var mutex = file.FaultMutex(index);
                foreach (var s in SpinLock(ctx, mutex)) yield return s;
                held = mutex;
                if (!file.PageCache.TryGetValue(index, out var f)) { ret.Value = Errno.EFAULT; yield break; }
                // A piece never crosses a huge page: clip the range at the end of this one.
                ulong pageEnd = Math.Min(end, addr - (ulong)subpage * PageSize + (ulong)file.Hstate.Size);
                var hpte = HugetlbAllocLargestPte(hm.Mm, v, addr, pageEnd, out var err);
                if (hpte is not { } p || err != Errno.Ok) { ret.Value = err; yield break; }
                foreach (var s in SpinLock(ctx, p.Ptl)) yield return s;
                long nr = (long)(p.Size / PageSize);
                long mapped = Bad.ContinueMapsNextSubpage ? subpage + 1 : subpage;
                hm.Mm.Pgd.Set(p.Table, p.Index, Pte.MkLeaf(f.HeadPfn + mapped, (v.VmFlags & VmaFlags.VmWrite) != 0));
                if (!Bad.ContinueSkipsMapcount) HugetlbAddFileRmap(ctx, f, subpage, nr);
                FolioGet(ctx, f);
                SpinUnlock(ctx, p.Ptl);
                SpinUnlock(ctx, mutex);
                held = null;
                Note(nr == f.NrPages ? "hgm.continue_natural" : "hgm.continue_hgm");
                yield return StepStatus.After("hugetlb_mfill_atomic_pte");
                addr += p.Size;
            }
        }
        finally
        {
            if (held is not null) SpinUnlock(ctx, held);
            v.VmaLock!.UpRead(ctx);
        }
    }

    /// <summary>MADV_COLLAPSE on a hugetlb range (hugetlb_collapse): every huge page of
    /// [start, end) whose folio is in the page cache and that is mapped below its natural entry
    /// is mapped again by one natural-size entry. Takes the hugetlb VMA lock and i_mmap_rwsem for
    /// write, then per page the natural entry's PTL: clear it, flush the mm's TLB and walk caches
    /// over the page, free the lower tables, set the new entry. EINVAL: unaligned start or a
    /// non-hugetlb VMA; ENOMEM: a hole.</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_collapse")]
    public IEnumerable<StepStatus> HugetlbCollapse(ExecContext ctx, HugetlbMm hm, ulong start, ulong end, Ret<Errno> ret) =>
        WithMmapLock(ctx, hm, write: false, HugetlbCollapseLocked(ctx, hm, start, end, ret));

    private IEnumerable<StepStatus> HugetlbCollapseLocked(ExecContext ctx, HugetlbMm hm, ulong start, ulong end, Ret<Errno> ret)
    {
        ret.Value = Errno.Ok;
        if (hm.Exited || start % PageSize != 0 || end <= start) { ret.Value = Errno.EINVAL; yield return StepStatus.After("madvise_collapse"); yield break; }
        var vmas = hm.Intersecting(start, end);
        ulong at = start;
        foreach (var v in vmas)
        {
            if (v.VmStart > at) { ret.Value = Errno.ENOMEM; break; }
            if (!v.IsVmHugetlbPage) { ret.Value = Errno.EINVAL; break; }
            at = v.VmEnd;
        }
        if (ret.Value == Errno.Ok && at < end) ret.Value = Errno.ENOMEM;
        if (ret.Value != Errno.Ok) { yield return StepStatus.After("madvise_collapse"); yield break; }
        foreach (var v in vmas)
        {
            var file = v.VmFile!;
            ulong hsize = (ulong)file.Hstate.Size;
            ulong s0 = Math.Max(start, v.VmStart), e0 = Math.Min(end, v.VmEnd);
            ulong first = (s0 + hsize - 1) / hsize * hsize, last = e0 / hsize * hsize;
            if (first >= last) continue;
            bool locked = !Bad.CollapseSkipsVmaLock;
            if (locked)
            {
                foreach (var s in v.VmaLock!.DownWrite(ctx)) yield return s;
                foreach (var s in file.IMmapRwsem.DownWrite(ctx)) yield return s;
            }
            try
            {
                for (ulong p = first; p < last; p += hsize)
                    foreach (var s in CollapseOne(ctx, hm, v, p, ret)) yield return s;
            }
            finally
            {
                if (locked)
                {
                    file.IMmapRwsem.UpWrite(ctx);
                    v.VmaLock!.UpWrite(ctx);
                }
            }
            if (ret.Value != Errno.Ok) yield break;
        }
    }

    private IEnumerable<StepStatus> CollapseOne(ExecContext ctx, HugetlbMm hm, VmAreaStruct v, ulong p, Ret<Errno> ret)
    {
        var mm = hm.Mm;
        var file = v.VmFile!;
        var h = file.Hstate;
        var (index, _) = FileOffset(v, p, Arch.PageShift);
        if (!file.PageCache.TryGetValue(index, out var f)) yield break;
        if (HugetlbWalk(mm, h, p) is not { } natural || !natural.Entry.IsTable) yield break;
        foreach (var s in SpinLock(ctx, natural.Ptl)) yield return s;
        var pgd = mm.Pgd;
        if (!pgd.TryGetChild(natural.Table, natural.Entry, out var lower))
            throw new ModelBugException($"{mm.Name}: collapse at {p:x}: {natural.Entry} is not a table of this tree");
        var tables = new List<PtTable>();
        var puts = new List<HugetlbFolio>();
        CollectSubtree(ctx, mm, lower, tables, puts);
        pgd.Set(natural.Table, natural.Index, Pte.None);
        yield return StepStatus.After("huge_ptep_clear_flush");
        if (Bad.CollapseFreesTablesBeforeFlush)
        {
            FreeUserTables(mm, tables, "hugetlb_collapse");
            yield return StepStatus.After("pte_free");
            K.Tlb.FlushTlbRange(mm, p, p + (ulong)h.Size);
            yield return StepStatus.After("flush_tlb_range");
        }
        else
        {
            K.Tlb.FlushTlbRange(mm, p, p + (ulong)h.Size);
            yield return StepStatus.After("flush_tlb_range");
            FreeUserTables(mm, tables, "hugetlb_collapse");
            yield return StepStatus.After("pte_free");
        }
        // The removed entries' references go after the flush (none is the last: the page cache
        // holds the folio), before the new entry takes its own.
        foreach (var s in PutAll(ctx, puts)) yield return s;
        pgd.Set(natural.Table, natural.Index, Pte.MkLeaf(f.HeadPfn, (v.VmFlags & VmaFlags.VmWrite) != 0));
        HugetlbAddFileRmap(ctx, f, 0, f.NrPages);
        if (!Bad.CollapseSkipsFolioGet) FolioGet(ctx, f);
        SpinUnlock(ctx, natural.Ptl);
        Note("hgm.collapsed");
        yield return StepStatus.After("set_huge_pte_at");
    }

    /// <summary>The tables of the subtree under <paramref name="t"/> (bottom-up) and, for every
    /// leaf in it, its rmap removed and its reference queued for a put after the flush.</summary>
    private void CollectSubtree(ExecContext ctx, MmStruct mm, PtTable t, List<PtTable> tables, List<HugetlbFolio> puts)
    {
        var pgd = mm.Pgd;
        for (int i = 0; i < t.Entries.Length; i++)
        {
            var e = t.Entries[i];
            if (e.IsLeaf)
            {
                var f = FolioOfLeaf(e) ?? throw new ModelBugException($"{mm.Name}: leaf {e} at {pgd.EntryVa(t, i):x} maps no HugeTLB folio");
                HugetlbRemoveRmap(ctx, f, e.Pfn - f.HeadPfn, (long)(pgd.EntrySize(t) / PageSize));
                puts.Add(f);
            }
            else if (pgd.TryGetChild(t, e, out var child)) CollectSubtree(ctx, mm, child, tables, puts);
        }
        tables.Add(t);
    }

    /// <summary>pte_free / pmd_free of tables already unlinked and flushed: the frames go back to the buddy.</summary>
    private void FreeUserTables(MmStruct mm, List<PtTable> tables, string who)
    {
        foreach (var t in tables)
        {
            mm.Pgd.ForgetTable(t);
            _ptlocks.Remove(t.Pfn);
            Mem.FreePages(t.Pfn, 0, FrameOwner.PageTable, who);
        }
    }

    /// <summary>SplitHugetlbPte (the model's, for the piece-only memory-failure design): the leaf
    /// <paramref name="hpte"/> of an HGM VMA is replaced by a table of leaves one level down that
    /// map the same subpages (one more mapcount and reference for each extra entry).</summary>
    private Errno SplitHugetlbPte(ExecContext ctx, MmStruct mm, HugetlbPte hpte, HugetlbFolio f)
    {
        var pgd = mm.Pgd;
        long pfn = K.Pgtable.AllocPageTablePage();
        if (pfn < 0) return Errno.ENOMEM;
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
        HugetlbRemoveRmap(ctx, f, firstSub, nr);
        for (int i = 0; i < lower.Entries.Length; i++)
        {
            HugetlbAddFileRmap(ctx, f, firstSub + i * step, step);
            if (i > 0) FolioGet(ctx, f);
        }
        return Errno.Ok;
    }

    // ------------------------------------------------------------------------------------
    // Unmapping: munmap, truncate, hole punch, memory failure, exit
    // ------------------------------------------------------------------------------------

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
            var lk = HugePteLockptr(mm, w.Table);
            foreach (var s in SpinLock(ctx, lk, stepWhenTaken: false)) yield return s;
            var f = FolioOfLeaf(w.Entry) ?? throw new ModelBugException($"{mm.Name}: leaf {w.Entry} at {pgd.EntryVa(w.Table, w.Index):x} maps no HugeTLB folio");
            pgd.Set(w.Table, w.Index, Pte.None);
            HugetlbRemoveRmap(ctx, f, w.Entry.Pfn - f.HeadPfn, (long)(pgd.EntrySize(w.Table) / PageSize));
            puts.Add(f);
            SpinUnlock(ctx, lk);
        }
        if (puts.Count > 0) yield return StepStatus.After("huge_ptep_get_and_clear");
        K.Tlb.FlushTlbRange(mm, start, end);
        yield return StepStatus.After("flush_tlb_range");
        foreach (var s in PutAll(ctx, puts)) yield return s;
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
        FreeUserTables(mm, tables, "free_pgtables");
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
        WithMmapLock(ctx, hm, write: true, DoVmiMunmapLocked(ctx, hm, start, len, ret));

    private IEnumerable<StepStatus> DoVmiMunmapLocked(ExecContext ctx, HugetlbMm hm, ulong start, ulong len, Ret<Errno> ret)
    {
        ulong end = start + (len + PageSize - 1) / PageSize * PageSize;
        ret.Value = Errno.Ok;
        if (hm.Exited || start % PageSize != 0 || len == 0 || end < start || end > UserTop) ret.Value = Errno.EINVAL;
        else
            foreach (ulong split in new[] { start, end })
                if (hm.VmaLookup(split) is { } sv && sv.VmStart != split && HugetlbVmOpSplit(sv, split) != Errno.Ok) ret.Value = Errno.EINVAL;
        if (ret.Value != Errno.Ok) { yield return StepStatus.After("do_vmi_munmap"); yield break; }
        SplitVma(hm, start);
        SplitVma(hm, end);
        foreach (var v in hm.Intersecting(start, end))
            foreach (var s in UnmapVma(ctx, v)) yield return s;
        var (floor, ceiling) = Gap(hm, start, end);
        FreePgtables(hm, floor, ceiling);
        yield return StepStatus.After("free_pgtables");
    }

    private IEnumerable<StepStatus> UnmapVma(ExecContext ctx, VmAreaStruct v)
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
        ulong floor = 0, ceiling = UserTop;
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
        WithMmapLock(ctx, hm, write: true, HugetlbChangeProtectionLocked(ctx, hm, start, len, writable, ret));

    private IEnumerable<StepStatus> HugetlbChangeProtectionLocked(ExecContext ctx, HugetlbMm hm, ulong start, ulong len, bool writable, Ret<Errno> ret)
    {
        var vmas = RangeVmas(hm, start, start + len, hugetlbOnly: true, out var err);
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
                    var lk = HugePteLockptr(mm, w.Table);
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
        CacheRemove(file, index);
        yield return StepStatus.After("remove_inode_single_folio");
        foreach (var s in PutAll(ctx, [f])) yield return s;
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
        ModifyPageFlags(ctx, Page(f, 0), PageFlags.HwPoison, PageFlags.None, "folio_set_hwpoison");
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
                while (FindLeaf(mm, file.Hstate, va) is { } leaf && leaf.Shift > Arch.PageShift)
                    if (SplitHugetlbPte(ctx, mm, leaf, f) != Errno.Ok) { ret.Value = Errno.ENOMEM; yield break; }
                if (FindLeaf(mm, file.Hstate, va) is not null)
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

    /// <summary>dup_mmap for a child of <paramref name="parent"/>: a new mm with a copy of every
    /// VMA (linked into its file's i_mmap, its own VMA lock, userfaultfd minor registration not
    /// inherited). copy_page_range copies the entries only where vma_needs_copy says so: for
    /// these shared file mappings, a uffd-wp VMA (the registration is taken to ask for
    /// UFFD_FEATURE_EVENT_FORK, so the child keeps it); elsewhere the child faults pages in.
    /// ENOMEM: no mm or no page-table page.</summary>
    [Kernel("kernel/fork.c", "dup_mmap")]
    public IEnumerable<StepStatus> DupMmap(ExecContext ctx, HugetlbMm parent, Ret<HugetlbMm?> child, Ret<Errno> ret) =>
        WithMmapLock(ctx, parent, write: true, DupMmapLocked(ctx, parent, child, ret));

    private IEnumerable<StepStatus> DupMmapLocked(ExecContext ctx, HugetlbMm parent, Ret<HugetlbMm?> child, Ret<Errno> ret)
    {
        child.Value = null;
        ret.Value = Errno.ENOMEM;
        if (parent.Exited) { ret.Value = Errno.EINVAL; yield return StepStatus.After("dup_mmap"); yield break; }
        var c = MmAlloc();
        if (c is null) { yield return StepStatus.After("mm_alloc"); yield break; }
        child.Value = c;
        ret.Value = Errno.Ok;
        foreach (var v in parent.Vmas.ToList())
        {
            var nv = new VmAreaStruct(c, v.VmStart, v.VmEnd, v.VmFlags & ~VmaFlags.VmUffdMinor, v.VmFile, v.VmPgoff, v.VmFile is null ? null : NewVmaLock(c));
            c.Insert(nv);
            v.VmFile?.Link(nv);
            if ((v.VmFlags & VmaFlags.VmUffdWp) == 0 || v.VmFile is null) continue;
            foreach (var s in v.VmaLock!.DownRead(ctx)) yield return s;
            try
            {
                ret.Value = CopyHugetlbPageRange(ctx, c.Mm, parent.Mm, v);
                yield return StepStatus.After("copy_hugetlb_page_range");
            }
            finally { v.VmaLock!.UpRead(ctx); }
            if (ret.Value != Errno.Ok) yield break;
        }
    }

    /// <summary>copy_hugetlb_page_range: every hugetlb_pte leaf of <paramref name="v"/> in the
    /// parent is copied to the child at the same level (so the same granularity), with its
    /// rmap and reference.</summary>
    [Kernel("mm/hugetlb.c", "copy_hugetlb_page_range")]
    public Errno CopyHugetlbPageRange(ExecContext ctx, MmStruct dst, MmStruct src, VmAreaStruct v)
    {
        foreach (var w in src.Pgd.Leaves(v.VmStart, v.VmEnd).ToList())
        {
            ulong va = src.Pgd.EntryVa(w.Table, w.Index);
            var t = dst.Pgd.WalkAlloc(va, w.Level, K.Pgtable.AllocPageTablePage, out var err);
            if (t is null) return err;
            var f = FolioOfLeaf(w.Entry) ?? throw new ModelBugException($"{src.Name}: leaf {w.Entry} at {va:x} maps no HugeTLB folio");
            dst.Pgd.Set(t, dst.Pgd.Index(va, t.Level), w.Entry);
            HugetlbAddFileRmap(ctx, f, w.Entry.Pfn - f.HeadPfn, (long)(src.Pgd.EntrySize(w.Table) / PageSize));
            FolioGet(ctx, f);
        }
        return Errno.Ok;
    }

    /// <summary>exit_mmap: unmap every VMA, free every page table but the root, flush_tlb_mm,
    /// then the mm is dropped (mmdrop → pgd_free).</summary>
    [Kernel("mm/mmap.c", "exit_mmap")]
    public IEnumerable<StepStatus> ExitMmap(ExecContext ctx, HugetlbMm hm) =>
        WithMmapLock(ctx, hm, write: true, ExitMmapLocked(ctx, hm));

    private IEnumerable<StepStatus> ExitMmapLocked(ExecContext ctx, HugetlbMm hm)
    {
        if (hm.Exited) yield break;
        foreach (var v in hm.Vmas.ToList())
            foreach (var s in UnmapVma(ctx, v)) yield return s;
        FreePgtables(hm, 0, UserTop);
        K.Tlb.FlushTlbMm(hm.Mm);
        hm.Exited = true;
        _mms.Remove(hm);
        _byName.Remove(hm.Mm.Name);
        K.Mmdrop(hm.Mm);
        yield return StepStatus.After("mmdrop");
    }

    /// <summary>A walk of <paramref name="addr"/> as follow_hugetlb_page and page_vma_mapped_walk
    /// do it under the series: hugetlb VMA lock for read, hugetlb_walk, then hugetlb_walk_step
    /// down to the leaf, one kernel-visible step per level. Each step reads the table the
    /// previous one reached: if a concurrent collapse freed it meanwhile, the read is of a freed
    /// page-table page (recorded as a kernel bug).</summary>
    public IEnumerable<StepStatus> HgmWalkTask(ExecContext ctx, HugetlbMm hm, ulong addr, Ret<Errno> ret) =>
        WithMmapLock(ctx, hm, write: false, HgmWalkTaskLocked(ctx, hm, addr, ret));

    private IEnumerable<StepStatus> HgmWalkTaskLocked(ExecContext ctx, HugetlbMm hm, ulong addr, Ret<Errno> ret)
    {
        var v = hm.Exited ? null : hm.VmaLookup(addr);
        ret.Value = Errno.EFAULT;
        if (v is null || !v.IsVmHugetlbPage) { yield return StepStatus.After("find_vma"); yield break; }
        var mm = hm.Mm;
        foreach (var s in v.VmaLock!.DownRead(ctx)) yield return s;
        try
        {
            var hpte = HugetlbWalk(mm, v.VmFile!.Hstate, addr);
            yield return StepStatus.After("hugetlb_walk");
            while (hpte is { } p)
            {
                if (!mm.Pgd.TryGetTable(p.Table.Pfn, out var live) || !ReferenceEquals(live, p.Table))
                {
                    RecordFault(FaultKind.KernelBug, ctx, addr, $"hugetlb_walk_step at {addr:x} reads {p.Level} table {p.Table.Pfn:x} of {mm.Name}, freed meanwhile (frame now {Mem.OwnerOf(p.Table.Pfn)})");
                    yield break;
                }
                if (p.PresentLeaf || p.None) { ret.Value = p.PresentLeaf ? Errno.Ok : Errno.EFAULT; yield break; }
                hpte = HugetlbWalkStep(mm, p, addr, alloc: false, out _);
                yield return StepStatus.After("hugetlb_walk_step");
            }
        }
        finally { v.VmaLock!.UpRead(ctx); }
    }
}
