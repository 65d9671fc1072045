// Address-space life cycle: dup_mmap (kernel/fork.c) with copy_hugetlb_page_range
// (mm/hugetlb.c), and exit_mmap (mm/mmap.c). Part of HugetlbHgm (see HugetlbHgm.cs).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Hgm;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>fork and exit.</summary>
public sealed class HgmFork : HgmPart
{
    internal HgmFork(Kernel k, HugetlbHgm hgm) : base(k, hgm) { }

    /// <summary>dup_mmap for a child of <paramref name="parent"/>: a new mm with a copy of every
    /// VMA (linked into its file's i_mmap, its own VMA lock, userfaultfd minor registration not
    /// inherited). copy_page_range copies the entries only where vma_needs_copy says so: for
    /// these shared file mappings, a uffd-wp VMA (the registration is taken to ask for
    /// UFFD_FEATURE_EVENT_FORK, so the child keeps it); elsewhere the child faults pages in.
    /// ENOMEM: no mm or no page-table page.</summary>
    [Kernel("kernel/fork.c", "dup_mmap")]
    public IEnumerable<StepStatus> DupMmap(ExecContext ctx, HugetlbMm parent, Ret<HugetlbMm?> child, Ret<Errno> ret) =>
        HugetlbHgm.WithMmapLock(ctx, parent, write: true, DupMmapLocked(ctx, parent, child, ret));

    private IEnumerable<StepStatus> DupMmapLocked(ExecContext ctx, HugetlbMm parent, Ret<HugetlbMm?> child, Ret<Errno> ret)
    {
        child.Value = null;
        ret.Value = Errno.ENOMEM;
        if (parent.Exited) { ret.Value = Errno.EINVAL; yield return StepStatus.After("dup_mmap"); yield break; }
        var c = Hgm.MmAlloc();
        if (c is null) { yield return StepStatus.After("mm_alloc"); yield break; }
        child.Value = c;
        ret.Value = Errno.Ok;
        foreach (var v in parent.Vmas.ToList())
        {
            var nv = new VmAreaStruct(c, v.VmStart, v.VmEnd, v.VmFlags & ~VmaFlags.VmUffdMinor, v.VmFile, v.VmPgoff, v.VmFile is null ? null : Hgm.NewVmaLock(c));
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
            var t = dst.Pgd.WalkAlloc(va, w.Level, K.Pgtable.TryAllocPageTablePage, out var err);
            if (t is null) return err;
            var f = Hgm.FolioOfLeaf(w.Entry) ?? throw new ModelBugException($"{src.Name}: leaf {w.Entry} at {va:x} maps no HugeTLB folio");
            dst.Pgd.Set(t, dst.Pgd.Index(va, t.Level), w.Entry);
            Hgm.HugetlbAddFileRmap(ctx, f, w.Entry.Pfn - f.HeadPfn, (long)(src.Pgd.EntrySize(w.Table) / PageSize));
            Hgm.FolioGet(ctx, f);
        }
        return Errno.Ok;
    }

    /// <summary>exit_mmap: unmap every VMA, free every page table but the root, flush_tlb_mm,
    /// then the mm is dropped (mmdrop → pgd_free).</summary>
    [Kernel("mm/mmap.c", "exit_mmap")]
    public IEnumerable<StepStatus> ExitMmap(ExecContext ctx, HugetlbMm hm) =>
        HugetlbHgm.WithMmapLock(ctx, hm, write: true, ExitMmapLocked(ctx, hm));

    private IEnumerable<StepStatus> ExitMmapLocked(ExecContext ctx, HugetlbMm hm)
    {
        if (hm.Exited) yield break;
        foreach (var v in hm.Vmas.ToList())
            foreach (var s in Hgm.Unmap.UnmapVma(ctx, v)) yield return s;
        Hgm.Unmap.FreePgtables(hm, 0, Hgm.UserTop);
        K.Tlb.FlushTlbMm(hm.Mm);
        hm.Exited = true;
        Hgm.MmList.Remove(hm);
        Hgm.MmsByName.Remove(hm.Mm.Name);
        K.Mmdrop(hm.Mm);
        yield return StepStatus.After("mmdrop");
    }
}
