using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// No user leaf maps memory that is free: every frame a user page-table leaf maps belongs to a
/// HugeTLB folio that is in use (not on the hstate's free list, not back in the buddy) and is in
/// the page cache of a hugetlbfs file. This is NoLeafMapsFreeFrame for user address spaces: a
/// leaf to a folio that was freed (or handed to another user) lets user space read and write it.
/// Source: the unmap-before-free order of fs/hugetlbfs/inode.c hugetlbfs_punch_hole /
/// remove_inode_hugepages and hugetlb_vmdelete_list, mm/hugetlb.c __unmap_hugepage_range and
/// free_huge_folio.
/// </summary>
/// <remarks>Incremental: a leaf can come to map such memory only by being stored (every leaf
/// stored in the step is judged) or by its folio leaving the page cache or losing its last
/// reference while mapped (every folio that did so in the step, IHgmView.LeftThisStep, is
/// looked up through its file's i_mmap). An entry in an mm the i_mmap does not list is seen
/// only by <see cref="CheckFullScan"/>, the oracle over every user leaf.</remarks>
public sealed class UserLeafMapsLiveFolio : IInvariant
{
    public string Name => nameof(UserLeafMapsLiveFolio);
    public string Claim => "every frame a user leaf maps belongs to an in-use HugeTLB folio held by a hugetlbfs page cache";
    public string Source => "fs/hugetlbfs/inode.c hugetlbfs_punch_hole, remove_inode_hugepages, hugetlb_vmdelete_list; mm/hugetlb.c __unmap_hugepage_range, free_huge_folio";

    public Violation? Check(IKernelView k)
    {
        foreach (var e in k.StepEvents)
        {
            if (e.Kind != KernelEventKind.EntryStore || e.Mm == "init_mm" || !e.New.IsLeaf) continue;
            if (k.Mms.FirstOrDefault(m => m.Name == e.Mm) is not { } mm) continue;
            var w = mm.Pgd.Walk(e.Start);
            if (!w.IsLeaf || w.Entry != e.New) continue; // replaced later in the step
            long n = (long)((e.End - e.Start) >> k.Arch.PageShift);
            for (long p = e.New.Pfn; p < e.New.Pfn + n;)
            {
                var (why, next) = Judge(k, p);
                if (why is not null) return new(Name, $"{mm.Name}: {w.Level} leaf at {e.Start:x} maps frame {p:x}, {why}");
                p = next;
            }
        }
        foreach (var (f, slot) in k.Hgm.LeftThisStep)
        {
            if (slot is not { } cached || Judge(k, f.HeadPfn).Why is null) continue;
            var (file, index) = cached;
            foreach (var v in file.IMmap)
            {
                long off = index * file.Hstate.PagesPerHugePage - v.VmPgoff;
                if (off < 0) continue;
                ulong va = v.VmStart + ((ulong)off << k.Arch.PageShift);
                if (va >= v.VmEnd) continue;
                var pgd = v.Mm.Mm.Pgd;
                foreach (var w in pgd.Leaves(va, Math.Min(v.VmEnd, va + (ulong)file.Hstate.Size)))
                    if (w.Entry.Pfn >= f.HeadPfn && w.Entry.Pfn < f.HeadPfn + f.NrPages)
                        return new(Name, $"{v.Mm.Mm.Name}: {w.Level} leaf at {pgd.EntryVa(w.Table, w.Index):x} maps frame {w.Entry.Pfn:x}, {Judge(k, w.Entry.Pfn).Why}");
            }
        }
        return null;
    }

    /// <summary>Why frame <paramref name="pfn"/> may not be mapped by a user leaf (null: it may),
    /// and the first frame past its folio.</summary>
    private static (string? Why, long Next) Judge(IKernelView k, long pfn)
    {
        var owner = k.Mem.OwnerOf(pfn);
        var f = owner == FrameOwner.HugetlbFolio ? HgmReferences.FolioOfPfn(k, pfn) : null;
        if (f is null) return ($"owned {owner}, in no HugeTLB folio", pfn + 1);
        string? why = f.State != FolioState.Active ? $"of {f}, not in use"
            : k.Hgm.PageCacheSlot(f) is null ? $"of {f}, in no page cache" : null;
        return (why, f.HeadPfn + f.NrPages);
    }

    /// <summary>The oracle: every user leaf's frames, through each mm's leaf-frame index.</summary>
    public Violation? CheckFullScan(IKernelView k)
    {
        foreach (var mm in k.Mms)
        {
            if (mm.Name == "init_mm") continue;
            foreach (var (pfn, count) in mm.Pgd.LeafFrames(0, k.Hgm.UserTop).Runs)
            {
                for (long p = pfn; p < pfn + count;)
                {
                    var owner = k.Mem.OwnerOf(p);
                    var f = owner == FrameOwner.HugetlbFolio ? HgmReferences.FolioOfPfn(k, p) : null;
                    string? why = f is null ? $"owned {owner}, in no HugeTLB folio"
                        : f.State != FolioState.Active ? $"of {f}, not in use"
                        : k.Hgm.PageCacheSlot(f) is null ? $"of {f}, in no page cache" : null;
                    if (why is not null) return new(Name, $"{mm.Name}: {Where(k, mm, p)} maps frame {p:x}, {why}");
                    p = f!.HeadPfn + f.NrPages;
                }
            }
        }
        return null;
    }

    private static string Where(IKernelView k, IMmView mm, long pfn)
    {
        foreach (var w in mm.Pgd.Leaves(0, k.Hgm.UserTop))
        {
            long n = (long)(mm.Pgd.EntrySize(w.Table) >> k.Arch.PageShift);
            if (pfn >= w.Entry.Pfn && pfn < w.Entry.Pfn + n) return $"{w.Level} leaf at {mm.Pgd.EntryVa(w.Table, w.Index):x}";
        }
        return "a leaf";
    }
}
