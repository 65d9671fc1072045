using PropertySuite.Engine;
using PropertySuite.Engine.Config;

namespace PropertySuite.Invariants;

/// <summary>
/// A folio's mapcount equals the page-table entries that map it: rmap counts every mapping so
/// that folio_mapped(), page_mapcount() and the unmap paths (try_to_unmap stops when the
/// mapcount reaches zero) can trust it. For a HugeTLB folio under HGM's v1 semantics,
/// folio->_entire_mapcount equals the number of user page-table entries, at any level and in
/// every mm, that map any part of it ("the total number of page table references": 512 for a 2M
/// folio mapped by 512 PTEs); under v2 it counts the whole-folio entries and each subpage's
/// _mapcount counts the smaller entries that map that subpage. Source: include/linux/rmap.h
/// hugetlb_add_file_rmap / hugetlb_remove_rmap, mm/hugetlb.c; the HGM series' cover letter
/// ("Mapcount") for v1 and its v2 changelog ("more THP-like") for v2.
/// </summary>
/// <remarks>Incremental: after each step only the folios whose mappings the step's entry
/// stores changed (HgmReferences.TouchedThisStep) are recounted, through the rmap, so the cost
/// of a step does not grow with the number of mapped folios. A mapcount written without any
/// entry store, or an entry in an mm the file's i_mmap does not list, is seen only by
/// <see cref="CheckFullScan"/>, the oracle, which counts every user leaf of every folio.</remarks>
public sealed class MapcountEqualsPageTableReferences : IInvariant
{
    public string Name => nameof(MapcountEqualsPageTableReferences);
    public string Claim => "every HugeTLB folio's mapcount (v1: entire; v2: entire and per subpage) equals the user page-table entries mapping it";
    public string Source => "include/linux/rmap.h hugetlb_add_file_rmap, hugetlb_remove_rmap; HGM series v1 cover letter (Mapcount), v2 changelog";

    public Violation? Check(IKernelView k)
    {
        foreach (var f in HgmReferences.TouchedThisStep(k))
            if (Judge(k, f, HgmReferences.EntriesByRmap(k, f)) is { } v) return v;
        return null;
    }

    /// <summary>The oracle: every folio of every hstate against a scan of every user leaf.</summary>
    public Violation? CheckFullScan(IKernelView k)
    {
        var all = HgmReferences.AllEntriesByScan(k);
        foreach (var f in k.Hugetlb.AllFoliosByPfn())
            if (Judge(k, f, all.TryGetValue(f, out var l) ? l : []) is { } v) return v;
        return null;
    }

    private Violation? Judge(IKernelView k, HugetlbFolio f, List<FolioEntry> entries)
    {
        if (f.State == FolioState.Freed || f.VmemmapBusy) return null;
        long whole = entries.Count(e => e.Size == (ulong)f.Hstate.Size);
        int entire = HgmReferences.Page(k, f, 1).EntireMapcount;
        if (k.Hgm.Mapcount == HgmMapcount.V1)
            return entire == entries.Count ? null
                : new(Name, $"{f}: _entire_mapcount {entire}, but {entries.Count} user entries map it{Sample(entries)}");
        if (entire != whole)
            return new(Name, $"{f}: _entire_mapcount {entire}, but {whole} whole-folio entries map it{Sample(entries)}");
        var per = new Dictionary<long, int>();
        foreach (var e in entries)
        {
            if (e.Size == (ulong)f.Hstate.Size) continue;
            long n = (long)(e.Size >> k.Arch.PageShift);
            for (long p = e.FirstSubpage; p < e.FirstSubpage + n; p++) per[p] = per.GetValueOrDefault(p) + 1;
        }
        // Subpages no entry maps must have _mapcount 0; read only those an entry maps, and the
        // others where it is cheap (a folio no smaller entry maps has nothing to check there).
        long limit = per.Count == 0 ? 0 : f.NrPages;
        for (long p = 0; p < limit; p++)
        {
            int want = per.GetValueOrDefault(p);
            int have = HgmReferences.Page(k, f, p).Mapcount;
            if (have != want)
                return new(Name, $"{f}: subpage {p} has _mapcount {have}, but {want} user entries smaller than the folio map it{Sample(entries)}");
        }
        return null;
    }

    private static string Sample(List<FolioEntry> entries) =>
        entries.Count == 0 ? "" : $" (e.g. {entries[0].Mm} [{entries[0].Va:x}, {entries[0].Va + entries[0].Size:x}) → subpage {entries[0].FirstSubpage})";
}
