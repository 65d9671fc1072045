// VMA-tree changes of the HGM series: the split rule (hugetlb_vm_op_split, mm/hugetlb.c),
// __split_vma (mm/mmap.c), MADV_SPLIT (hugetlb_enable_hgm_vma) and userfaultfd_register
// (fs/userfaultfd.c). Part of HugetlbHgm (see HugetlbHgm.cs).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Hgm;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>VMA splits, MADV_SPLIT and userfaultfd registration.</summary>
public sealed class HgmVmaOps : HgmPart
{
    internal HgmVmaOps(Kernel k, HugetlbHgm hgm) : base(k, hgm) { }

    /// <summary>The VMAs exactly covering [start, end), splitting at the ends (the split rule of
    /// hugetlb_vm_op_split). EINVAL: unaligned split or a non-hugetlb VMA where
    /// <paramref name="hugetlbOnly"/>; ENOMEM: a hole in the range (madvise's and mprotect's error).</summary>
    internal List<VmAreaStruct>? RangeVmas(HugetlbMm hm, ulong start, ulong end, bool hugetlbOnly, out Errno err)
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
        var upper = new VmAreaStruct(hm, addr, v.VmEnd, v.VmFlags, v.VmFile, v.VmPgoff + (long)((addr - v.VmStart) / PageSize), v.VmFile is null ? null : Hgm.NewVmaLock(hm));
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
}
