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
/// <remarks>Reads each user mm's incrementally kept index of leaf frames (PageTable.LeafFrames),
/// one check per run of frames.</remarks>
public sealed class UserLeafMapsLiveFolio : IInvariant
{
    public string Name => nameof(UserLeafMapsLiveFolio);
    public string Claim => "every frame a user leaf maps belongs to an in-use HugeTLB folio held by a hugetlbfs page cache";
    public string Source => "fs/hugetlbfs/inode.c hugetlbfs_punch_hole, remove_inode_hugepages, hugetlb_vmdelete_list; mm/hugetlb.c __unmap_hugepage_range, free_huge_folio";

    public Violation? Check(IKernelView k)
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
