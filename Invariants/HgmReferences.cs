// Shared by the HGM invariants (MapcountEqualsPageTableReferences, RefcountCoversMappings,
// HugetlbPteShape, UserLeafMapsLiveFolio): which HugeTLB folios the current step may have
// changed the mappings of, and the user page-table entries that map a folio, found the way the
// kernel's rmap finds them (the file's i_mmap, then a walk of each VMA's range of the page).
// Pure functions of the view; no state between calls.
using PropertySuite.Engine;
using PropertySuite.Engine.Hgm;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>One user page-table leaf mapping part of a folio.</summary>
public readonly record struct FolioEntry(string Mm, ulong Va, ulong Size, long FirstSubpage);

public static class HgmReferences
{
    /// <summary>The folio whose frames include <paramref name="pfn"/>, or null.</summary>
    public static HugetlbFolio? FolioOfPfn(IKernelView k, long pfn)
    {
        foreach (var h in k.Hugetlb.Hstates)
            if (h.TryGetFolio(pfn & ~(h.PagesPerHugePage - 1), out var f) && pfn - f.HeadPfn < f.NrPages) return f;
        return null;
    }

    /// <summary>The folios whose user mappings the current step's entry stores may have changed:
    /// those the old and new leaves map, and those in the page cache under any range of a user
    /// mm whose table entry changed (a cleared table unmaps everything below it). In order of
    /// first appearance.</summary>
    public static List<HugetlbFolio> TouchedThisStep(IKernelView k)
    {
        var seen = new HashSet<HugetlbFolio>();
        var list = new List<HugetlbFolio>();
        void Add(HugetlbFolio? f)
        {
            if (f is not null && seen.Add(f)) list.Add(f);
        }
        foreach (var e in k.StepEvents)
        {
            if (e.Kind != KernelEventKind.EntryStore || e.Mm == "init_mm") continue;
            if (e.Old.IsLeaf) Add(FolioOfPfn(k, e.Old.Pfn));
            if (e.New.IsLeaf) Add(FolioOfPfn(k, e.New.Pfn));
            if (e.Old.IsTable && k.Hgm.MmByName(e.Mm!) is { } hm)
                foreach (var v in hm.Intersecting(e.Start, e.End))
                {
                    if (v.VmFile is not { } file) continue;
                    ulong s = Math.Max(e.Start, v.VmStart), end = Math.Min(e.End, v.VmEnd);
                    long per = file.Hstate.PagesPerHugePage;
                    long first = (v.VmPgoff + (long)((s - v.VmStart) >> k.Arch.PageShift)) / per;
                    long last = (v.VmPgoff + (long)((end - 1 - v.VmStart) >> k.Arch.PageShift)) / per;
                    for (long i = first; i <= last; i++)
                        if (file.PageCache.TryGetValue(i, out var f)) Add(f);
                }
        }
        return list;
    }

    /// <summary>Every user leaf that maps part of <paramref name="f"/>, found through the rmap:
    /// the VMAs on the i_mmap of the file whose page cache holds it, each walked over its range
    /// of that huge page. A folio in no page cache has no rmap: none are found.</summary>
    public static List<FolioEntry> EntriesByRmap(IKernelView k, HugetlbFolio f)
    {
        var found = new List<FolioEntry>();
        if (k.Hgm.PageCacheSlot(f) is not { } slot) return found;
        var (file, index) = slot;
        long per = file.Hstate.PagesPerHugePage;
        foreach (var v in file.IMmap)
        {
            long off = index * per - v.VmPgoff;
            if (off < 0) continue;
            ulong va = v.VmStart + ((ulong)off << k.Arch.PageShift);
            if (va >= v.VmEnd) continue;
            AddLeaves(k, v.Mm.Mm, f, va, Math.Min(v.VmEnd, va + (ulong)file.Hstate.Size), found);
        }
        return found;
    }

    /// <summary>The full-scan oracle of <see cref="EntriesByRmap"/>: every leaf of every user mm
    /// that maps part of <paramref name="f"/>, by a walk of the whole user half.</summary>
    public static Dictionary<HugetlbFolio, List<FolioEntry>> AllEntriesByScan(IKernelView k)
    {
        var all = new Dictionary<HugetlbFolio, List<FolioEntry>>();
        foreach (var mm in k.Mms)
        {
            if (mm.Name == "init_mm") continue;
            var pgd = mm.Pgd;
            foreach (var w in pgd.Leaves(0, k.Hgm.UserTop))
            {
                if (FolioOfPfn(k, w.Entry.Pfn) is not { } f) continue;
                if (!all.TryGetValue(f, out var l)) all[f] = l = new();
                l.Add(new FolioEntry(mm.Name, pgd.EntryVa(w.Table, w.Index), pgd.EntrySize(w.Table), w.Entry.Pfn - f.HeadPfn));
            }
        }
        return all;
    }

    private static void AddLeaves(IKernelView k, Engine.Mm.MmStruct mm, HugetlbFolio f, ulong start, ulong end, List<FolioEntry> acc)
    {
        var pgd = mm.Pgd;
        foreach (var w in pgd.Leaves(start, end))
            if (w.Entry.Pfn >= f.HeadPfn && w.Entry.Pfn < f.HeadPfn + f.NrPages)
                acc.Add(new FolioEntry(mm.Name, pgd.EntryVa(w.Table, w.Index), pgd.EntrySize(w.Table), w.Entry.Pfn - f.HeadPfn));
    }

    /// <summary>The folio's struct page <paramref name="subpage"/> as init_mm maps it (no TLB, nothing recorded).</summary>
    public static StructPage Page(IKernelView k, HugetlbFolio f, long subpage) => k.PeekView.Read(k.Arch.PfnToPage(f.HeadPfn + subpage));
}
