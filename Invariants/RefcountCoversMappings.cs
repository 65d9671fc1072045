using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// A folio's reference count covers every reference that is held on it: each page-table entry
/// that maps it holds one (the fault's or UFFDIO_CONTINUE's reference, kept by the mapping, and
/// copied by fork), and the page cache holds one while the folio is in it. A refcount below that
/// lets a folio_put free a folio that is still mapped or cached. Source: mm/hugetlb.c
/// hugetlb_no_page / hugetlb_add_to_page_cache, mm/userfaultfd.c (mfill_atomic_install_pte's
/// folio reference), __unmap_hugepage_range's put per cleared entry, remove_inode_hugepages.
/// </summary>
/// <remarks>Incremental as MapcountEqualsPageTableReferences (the folios the step's entry
/// stores touched, counted through the rmap); <see cref="CheckFullScan"/> is the oracle.</remarks>
public sealed class RefcountCoversMappings : IInvariant
{
    public string Name => nameof(RefcountCoversMappings);
    public string Claim => "every HugeTLB folio's refcount is at least its user page-table entries plus one while it is in a page cache";
    public string Source => "mm/hugetlb.c hugetlb_no_page, hugetlb_add_to_page_cache, __unmap_hugepage_range; mm/userfaultfd.c; fs/hugetlbfs/inode.c remove_inode_hugepages";

    public Violation? Check(IKernelView k)
    {
        foreach (var f in HgmReferences.TouchedThisStep(k))
            if (Judge(k, f, HgmReferences.EntriesByRmap(k, f).Count) is { } v) return v;
        return null;
    }

    /// <summary>The oracle: every folio against a scan of every user leaf.</summary>
    public Violation? CheckFullScan(IKernelView k)
    {
        var all = HgmReferences.AllEntriesByScan(k);
        foreach (var f in k.Hugetlb.AllFoliosByPfn())
            if (Judge(k, f, all.TryGetValue(f, out var l) ? l.Count : 0) is { } v) return v;
        return null;
    }

    private Violation? Judge(IKernelView k, HugetlbFolio f, int entries)
    {
        if (f.State == FolioState.Freed || f.VmemmapBusy) return null;
        bool cached = k.Hgm.PageCacheSlot(f) is not null;
        int need = entries + (cached ? 1 : 0);
        if (need == 0) return null;
        int refcount = HgmReferences.Page(k, f, 0).Refcount;
        return refcount >= need ? null
            : new(Name, $"{f}: refcount {refcount}, but {entries} user entries map it{(cached ? " and the page cache holds it" : "")} ({need} references)");
    }
}
