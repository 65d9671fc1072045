// The data shapes of HugeTLB high-granularity mapping (James Houghton's HGM series, v1 of 5 Jan
// 2023 with v2's mapcount as a variant; see Engine/Config/HgmOptions.cs):
//   struct vm_area_struct        VmAreaStruct: [vm_start, vm_end), vm_flags, vm_file, vm_pgoff,
//                                and the hugetlb VMA lock (struct hugetlb_vma_lock, an rwsem)
//   mm->mm_mt (the VMA tree)     HugetlbMm.Vmas, sorted by vm_start
//   struct inode of hugetlbfs    HugetlbfsInode: i_size, the page cache (index → HugetlbFolio),
//                                i_mmap (the VMAs mapping it) and i_mmap_rwsem
//   struct hugetlb_pte           HugetlbPte: an entry at any level with its shift and the PTL
//                                the series says to use (hugetlb_pte.ptl "always holds the PTL")
//   struct rw_semaphore          RwSemaphore (down_read/down_write as task steps)
//
// Departures from the kernel: the VMA tree is a sorted list (mm->mm_mt is a maple tree; only
// its order and non-overlap are modelled); vm_pgoff is counted in base pages as in the kernel;
// rwsems have no writer preference and no lockdep (a waiter retries each step).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Hgm;

/// <summary>vm_flags bits the model uses (include/linux/mm.h; VM_HUGETLB_HGM from the series).</summary>
[Flags]
public enum VmaFlags : uint
{
    None = 0,
    VmRead = 1 << 0,
    VmWrite = 1 << 1,
    VmShared = 1 << 3,
    VmHugetlb = 1 << 22,
    /// <summary>Set by MADV_SPLIT: the VMA may be mapped at high granularity (HGM series patch 6).</summary>
    VmHugetlbHgm = 1 << 23,
    /// <summary>Registered with userfaultfd in minor mode.</summary>
    VmUffdMinor = 1 << 24,
    /// <summary>Registered with userfaultfd in write-protect mode.</summary>
    VmUffdWp = 1 << 25,
}

/// <summary>struct rw_semaphore as a task sees it: readers share, a writer excludes all.</summary>
public sealed class RwSemaphore(string name)
{
    private readonly List<ExecContext> _readers = new();
    public string Name { get; } = name;
    public ExecContext? Writer { get; private set; }
    public IReadOnlyList<ExecContext> Readers => _readers;
    public bool Held => Writer is not null || _readers.Count > 0;

    /// <summary>down_read: one step once no writer holds it; blocks while one does.</summary>
    public IEnumerable<StepStatus> DownRead(ExecContext ctx)
    {
        while (Writer is not null) yield return StepStatus.Blocked;
        _readers.Add(ctx);
        yield return StepStatus.After($"down_read({Name})");
    }

    /// <summary>down_write: one step once nobody holds it.</summary>
    public IEnumerable<StepStatus> DownWrite(ExecContext ctx)
    {
        while (Held) yield return StepStatus.Blocked;
        Writer = ctx;
        yield return StepStatus.After($"down_write({Name})");
    }

    public void UpRead(ExecContext ctx)
    {
        if (!_readers.Remove(ctx)) throw new ModelBugException($"{ctx} up_read({Name}) without holding it");
    }

    public void UpWrite(ExecContext ctx)
    {
        if (Writer != ctx) throw new ModelBugException($"{ctx} up_write({Name}) held by {Writer?.ToString() ?? "nobody"}");
        Writer = null;
    }

    public override string ToString() => Name;
}

/// <summary>A hugetlbfs inode: its hstate, size and page cache, and who maps it.</summary>
public sealed class HugetlbfsInode
{
    private readonly SortedDictionary<long, HugetlbFolio> _pageCache = new();
    private readonly List<VmAreaStruct> _iMmap = new();
    private readonly Dictionary<long, KernelLock> _faultMutexes = new();

    internal HugetlbfsInode(int id, Hstate h, long sizeInHugePages)
    {
        Id = id;
        Hstate = h;
        ISize = sizeInHugePages;
        IMmapRwsem = new RwSemaphore($"hugetlbfs{id}.i_mmap_rwsem");
    }

    public int Id { get; }
    /// <summary>hstate_inode(inode).</summary>
    public Hstate Hstate { get; }
    /// <summary>i_size in huge pages.</summary>
    public long ISize { get; internal set; }
    /// <summary>mapping->i_mmap_rwsem.</summary>
    public RwSemaphore IMmapRwsem { get; }
    /// <summary>The page cache: huge-page index → folio, ascending.</summary>
    public IReadOnlyDictionary<long, HugetlbFolio> PageCache => _pageCache;
    /// <summary>mapping->i_mmap: every VMA mapping this file, in the order they were linked.</summary>
    public IReadOnlyList<VmAreaStruct> IMmap => _iMmap;

    /// <summary>hugetlb_fault_mutex_table[hugetlb_fault_mutex_hash(mapping, index)]: serialises
    /// faults, UFFDIO_CONTINUE and page-cache removal of one huge page (one mutex per index
    /// here, no hash collisions).</summary>
    public KernelLock FaultMutex(long index)
    {
        if (!_faultMutexes.TryGetValue(index, out var l)) _faultMutexes[index] = l = new KernelLock($"hugetlbfs{Id}.fault_mutex[{index}]");
        return l;
    }

    internal void CacheAdd(long index, HugetlbFolio f) => _pageCache.Add(index, f);
    internal bool CacheRemove(long index) => _pageCache.Remove(index);
    internal void Link(VmAreaStruct v) => _iMmap.Add(v);
    internal void Unlink(VmAreaStruct v)
    {
        if (!_iMmap.Remove(v)) throw new ModelBugException($"{v} is not on the i_mmap of hugetlbfs{Id}");
    }

    public override string ToString() => $"hugetlbfs{Id} ({Hstate.Name}, {ISize} pages)";
}

/// <summary>struct vm_area_struct.</summary>
public sealed class VmAreaStruct
{
    internal VmAreaStruct(HugetlbMm mm, ulong start, ulong end, VmaFlags flags, HugetlbfsInode? file, long pgoff, RwSemaphore? vmaLock)
    {
        Mm = mm;
        VmStart = start;
        VmEnd = end;
        VmFlags = flags;
        VmFile = file;
        VmPgoff = pgoff;
        VmaLock = vmaLock;
    }

    public HugetlbMm Mm { get; }
    public ulong VmStart { get; internal set; }
    public ulong VmEnd { get; internal set; }
    public VmaFlags VmFlags { get; internal set; }
    /// <summary>The file mapped (null: anonymous).</summary>
    public HugetlbfsInode? VmFile { get; }
    /// <summary>vm_pgoff: file offset of vm_start, in base pages.</summary>
    public long VmPgoff { get; internal set; }
    /// <summary>vma->vm_private_data's hugetlb_vma_lock (shared hugetlb VMAs only).</summary>
    public RwSemaphore? VmaLock { get; internal set; }

    public bool IsVmHugetlbPage => (VmFlags & VmaFlags.VmHugetlb) != 0;
    /// <summary>hugetlb_hgm_enabled(vma).</summary>
    public bool HgmEnabled => (VmFlags & VmaFlags.VmHugetlbHgm) != 0;

    public override string ToString() => $"{Mm.Mm.Name} vma [{VmStart:x}, {VmEnd:x}) {VmFlags}{(VmFile is null ? "" : $" {VmFile.Id}@{VmPgoff:x}")}";
}

/// <summary>The part of an mm_struct HGM needs besides its page table: the VMA tree.</summary>
public sealed class HugetlbMm
{
    private readonly List<VmAreaStruct> _vmas = new();

    internal HugetlbMm(MmStruct mm)
    {
        Mm = mm;
        MmapLock = new RwSemaphore($"{mm.Name}.mmap_lock");
    }

    public MmStruct Mm { get; }
    /// <summary>mm->mmap_lock: write for changes of the VMA tree, read for faults and walks.</summary>
    public RwSemaphore MmapLock { get; }
    /// <summary>The VMAs, sorted by vm_start.</summary>
    public IReadOnlyList<VmAreaStruct> Vmas => _vmas;
    /// <summary>exit_mmap has run: the address space is gone.</summary>
    public bool Exited { get; internal set; }

    /// <summary>find_vma_intersection's cousin: the VMA containing <paramref name="addr"/>, or null (vma_lookup).</summary>
    public VmAreaStruct? VmaLookup(ulong addr)
    {
        foreach (var v in _vmas)
            if (addr >= v.VmStart && addr < v.VmEnd) return v;
        return null;
    }

    /// <summary>The VMAs intersecting [start, end), in address order.</summary>
    public List<VmAreaStruct> Intersecting(ulong start, ulong end) => _vmas.Where(v => v.VmStart < end && start < v.VmEnd).ToList();

    internal void Insert(VmAreaStruct v)
    {
        int i = 0;
        while (i < _vmas.Count && _vmas[i].VmStart < v.VmStart) i++;
        _vmas.Insert(i, v);
    }

    internal void Remove(VmAreaStruct v)
    {
        if (!_vmas.Remove(v)) throw new ModelBugException($"{v} is not in {Mm.Name}'s VMA tree");
    }

    public override string ToString() => Mm.Name;
}

/// <summary>struct hugetlb_pte: a page-table entry at any level, its size and the lock to use.</summary>
/// <param name="Table">The table holding the entry.</param>
/// <param name="Index">The entry's index in it.</param>
/// <param name="Shift">log2 of the size the entry maps (hugetlb_pte_shift).</param>
/// <param name="Ptl">The page-table lock for this entry (hugetlb_pte.ptl).</param>
public readonly record struct HugetlbPte(PtTable Table, int Index, int Shift, KernelLock Ptl)
{
    public ulong Size => 1UL << Shift;
    public Pte Entry => Table.Entries[Index];
    public PtLevel Level => Table.Level;
    /// <summary>hugetlb_pte_present_leaf.</summary>
    public bool PresentLeaf => Entry.IsLeaf;
    public bool None => Entry.IsNone;
}
