// hugetlb_pte and the walks of the HGM series (mm/hugetlb.c: hugetlb_walk, hugetlb_walk_step,
// hugetlb_hgm_walk, hugetlb_alloc_largest_pte; include/linux/hugetlb.h: huge_pte_lockptr), and a
// walk as a task (follow_hugetlb_page / page_vma_mapped_walk under the hugetlb VMA lock).
// Part of HugetlbHgm (see HugetlbHgm.cs for the series, the locks and the departures).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Hgm;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>HugeTLB page-table walks at any level (the series' hugetlb_pte).</summary>
public sealed class HugetlbPteWalk : HgmPart
{
    internal HugetlbPteWalk(Kernel k, HugetlbHgm hgm) : base(k, hgm) { }

    /// <summary>huge_pte_lockptr(shift, mm, pte): the PTL of an entry of <paramref name="t"/>.</summary>
    [Kernel("include/linux/hugetlb.h", "huge_pte_lockptr")]
    public KernelLock HugePteLockptr(MmStruct mm, PtTable t)
    {
        if (t.Level >= PtLevel.Pud) return mm.PageTableLock;
        if (!Hgm.PtLocks.TryGetValue(t.Pfn, out var l))
            Hgm.PtLocks[t.Pfn] = l = new KernelLock($"{mm.Name}.ptl({t.Level} table {t.Pfn:x})");
        return l;
    }

    private HugetlbPte Hpte(MmStruct mm, PtTable t, int i) => new(t, i, Arch.LevelShift(t.Level), HugePteLockptr(mm, t));

    /// <summary>hugetlb_walk: the entry at the hstate's level for <paramref name="addr"/>, or
    /// null when a table above it is missing (or a leaf above it exists).</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_walk")]
    public HugetlbPte? HugetlbWalk(MmStruct mm, Hstate h, ulong addr)
    {
        var level = Hgm.LevelOfSize(h.Size)!.Value;
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
            if (!K.Pgtable.TryAllocPageTablePage(out long pfn)) { err = Errno.ENOMEM; return null; }
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
            var t = mm.Pgd.WalkAlloc(addr, Hgm.LevelOfSize(h.Size)!.Value, K.Pgtable.TryAllocPageTablePage, out err);
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
        foreach (int shift in Hgm.ForEachHgmShift(h))
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



    /// <summary>A walk of <paramref name="addr"/> as follow_hugetlb_page and page_vma_mapped_walk
    /// do it under the series: hugetlb VMA lock for read, hugetlb_walk, then hugetlb_walk_step
    /// down to the leaf, one kernel-visible step per level. Each step reads the table the
    /// previous one reached: if a concurrent collapse freed it meanwhile, the read is of a freed
    /// page-table page (recorded as a kernel bug).</summary>
    public IEnumerable<StepStatus> HgmWalkTask(ExecContext ctx, HugetlbMm hm, ulong addr, Ret<Errno> ret) =>
        HugetlbHgm.WithMmapLock(ctx, hm, write: false, HgmWalkTaskLocked(ctx, hm, addr, ret));

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
