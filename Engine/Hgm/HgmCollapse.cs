// MADV_COLLAPSE on a hugetlb range (the series' hugetlb_collapse, mm/hugetlb.c): clear the
// natural entry, flush, free the lower tables, map the whole page again. Part of HugetlbHgm
// (see HugetlbHgm.cs).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Hgm;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>MADV_COLLAPSE.</summary>
public sealed class HgmCollapse : HgmPart
{
    internal HgmCollapse(Kernel k, HugetlbHgm hgm) : base(k, hgm) { }

    /// <summary>MADV_COLLAPSE on a hugetlb range (hugetlb_collapse): every huge page of
    /// [start, end) whose folio is in the page cache and that is mapped below its natural entry
    /// is mapped again by one natural-size entry. Takes the hugetlb VMA lock and i_mmap_rwsem for
    /// write, then per page the natural entry's PTL: clear it, flush the mm's TLB and walk caches
    /// over the page, free the lower tables, set the new entry. EINVAL: unaligned start or a
    /// non-hugetlb VMA; ENOMEM: a hole.</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_collapse")]
    public IEnumerable<StepStatus> HugetlbCollapse(ExecContext ctx, HugetlbMm hm, ulong start, ulong end, Ret<Errno> ret) =>
        HugetlbHgm.WithMmapLock(ctx, hm, write: false, HugetlbCollapseLocked(ctx, hm, start, end, ret));

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
        var (index, _) = HugetlbHgm.FileOffset(v, p, Arch.PageShift);
        if (!file.PageCache.TryGetValue(index, out var f)) yield break;
        if (Walk.HugetlbWalk(mm, h, p) is not { } natural || !natural.Entry.IsTable) yield break;
        // The page-cache lookup's reference (filemap_get_folio), which the new entry keeps.
        if (!Bad.CollapseSkipsFolioGet) Hgm.FolioGet(ctx, f);
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
            Hgm.FreeUserTables(mm, tables, "hugetlb_collapse");
            yield return StepStatus.After("pte_free");
            K.Tlb.FlushTlbRange(mm, p, p + (ulong)h.Size);
            yield return StepStatus.After("flush_tlb_range");
        }
        else
        {
            K.Tlb.FlushTlbRange(mm, p, p + (ulong)h.Size);
            yield return StepStatus.After("flush_tlb_range");
            Hgm.FreeUserTables(mm, tables, "hugetlb_collapse");
            yield return StepStatus.After("pte_free");
        }
        // The removed entries' references go after the flush (none is the last: the page cache
        // holds the folio), before the new entry takes its own.
        foreach (var s in Hgm.PutAll(ctx, puts)) yield return s;
        pgd.Set(natural.Table, natural.Index, Pte.MkLeaf(f.HeadPfn, (v.VmFlags & VmaFlags.VmWrite) != 0));
        Hgm.HugetlbAddFileRmap(ctx, f, 0, f.NrPages);
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
                var f = Hgm.FolioOfLeaf(e) ?? throw new ModelBugException($"{mm.Name}: leaf {e} at {pgd.EntryVa(t, i):x} maps no HugeTLB folio");
                Hgm.HugetlbRemoveRmap(ctx, f, e.Pfn - f.HeadPfn, (long)(pgd.EntrySize(t) / PageSize));
                puts.Add(f);
            }
            else if (pgd.TryGetChild(t, e, out var child)) CollectSubtree(ctx, mm, child, tables, puts);
        }
        tables.Add(t);
    }
}
