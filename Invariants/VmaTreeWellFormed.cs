using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// Every mm's VMA tree is well formed: VMAs are sorted, non-empty, page aligned and do not
/// overlap; a hugetlb VMA starts and ends on a multiple of its huge page size and maps the file
/// from a huge-page-aligned offset (hugetlb_vm_op_split refuses any other split, and
/// hugetlbfs_file_mmap any other offset), has its hugetlb VMA lock, and is on its file's i_mmap
/// exactly once, which lists no VMA that is not in a live mm's tree. Source: mm/mmap.c
/// (__split_vma, the maple tree's ordering), mm/hugetlb.c hugetlb_vm_op_split,
/// hugetlb_vma_lock_alloc, fs/hugetlbfs/inode.c hugetlbfs_file_mmap, mm/rmap.c (i_mmap).
/// </summary>
public sealed class VmaTreeWellFormed : IInvariant
{
    public string Name => nameof(VmaTreeWellFormed);
    public string Claim => "VMAs are sorted, disjoint and page aligned; hugetlb VMAs are huge-page aligned, locked, and on their file's i_mmap exactly once";
    public string Source => "mm/mmap.c __split_vma; mm/hugetlb.c hugetlb_vm_op_split, hugetlb_vma_lock_alloc; fs/hugetlbfs/inode.c hugetlbfs_file_mmap";

    public Violation? Check(IKernelView k)
    {
        ulong page = (ulong)k.Arch.PageSize;
        foreach (var hm in k.Hgm.Mms)
        {
            ulong prevEnd = 0;
            foreach (var v in hm.Vmas)
            {
                if (v.VmStart >= v.VmEnd || v.VmStart % page != 0 || v.VmEnd % page != 0)
                    return new(Name, $"{v} is empty or not page aligned");
                if (v.VmStart < prevEnd) return new(Name, $"{v} overlaps or is out of order with the VMA ending at {prevEnd:x}");
                prevEnd = v.VmEnd;
                if (!v.IsVmHugetlbPage) continue;
                if (v.VmFile is not { } file || v.VmaLock is null) return new(Name, $"hugetlb {v} has no file or no hugetlb VMA lock");
                ulong hsize = (ulong)file.Hstate.Size;
                if (v.VmStart % hsize != 0 || v.VmEnd % hsize != 0 || (ulong)v.VmPgoff * page % hsize != 0)
                    return new(Name, $"hugetlb {v} is not aligned to its huge page size {file.Hstate.Name} (split at {(v.VmStart % hsize != 0 ? v.VmStart : v.VmEnd):x})");
                int onList = file.IMmap.Count(x => ReferenceEquals(x, v));
                if (onList != 1) return new(Name, $"{v} is on the i_mmap of {file} {onList} times");
            }
        }
        foreach (var file in k.Hgm.Files)
            foreach (var v in file.IMmap)
                if (v.Mm.Exited || !v.Mm.Vmas.Contains(v))
                    return new(Name, $"the i_mmap of {file} lists {v}, which is not in {(v.Mm.Exited ? "a live" : "its")} mm's VMA tree");
        return null;
    }
}
