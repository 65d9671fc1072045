using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// Every hstate's counters match its folios: nr_huge_pages counts the folios in the pool (free or
/// in use), free_huge_pages the folios on the free list — each of them frozen (refcount 0) — and
/// surplus_huge_pages lies between 0 and nr_huge_pages. Counters and lists change together under
/// hugetlb_lock, so the match holds after every step. Source: mm/hugetlb.c
/// (__prep_account_new_huge_page, enqueue/dequeue_hugetlb_folio, remove_hugetlb_folio,
/// add_hugetlb_folio, adjust_pool_surplus); Documentation/admin-guide/mm/hugetlbpage.rst;
/// Documentation/admin-guide/mm/hugetlbpage.rst.
/// </summary>
public sealed class HugetlbPoolAccounting : IInvariant
{
    public string Name => nameof(HugetlbPoolAccounting);
    public string Claim => "nr_huge_pages, free_huge_pages and surplus_huge_pages of every hstate match its folios and free list";
    public string Source => "mm/hugetlb.c pool accounting under hugetlb_lock; hugetlbpage.rst";

    public Violation? Check(IKernelView k)
    {
        var v = k.PeekView;
        foreach (var h in k.Hugetlb.Hstates)
        {
            long inPool = 0, free = 0;
            foreach (var f in h.Folios)
            {
                if (f.State is FolioState.Free or FolioState.Active) inPool++;
                if (f.State == FolioState.Free) free++;
            }
            if (h.NrHugePages != inPool)
                return new(Name, $"hstate {h.Name}: nr_huge_pages is {h.NrHugePages} but {inPool} folios are in the pool");
            if (h.FreeHugePages != free || h.Freelist.Count != free)
                return new(Name, $"hstate {h.Name}: free_huge_pages is {h.FreeHugePages}, the free list holds {h.Freelist.Count}, {free} folios are free");
            if (h.SurplusHugePages < 0 || h.SurplusHugePages > h.NrHugePages)
                return new(Name, $"hstate {h.Name}: surplus_huge_pages {h.SurplusHugePages} outside [0, nr_huge_pages = {h.NrHugePages}]");
            foreach (var f in h.Freelist)
            {
                if (f.State != FolioState.Free) return new(Name, $"hstate {h.Name}: {f} is on the free list");
                int rc = k.PageFlags.FolioRefCount(v, k.Hugetlb.FolioPage(f));
                if (rc != 0) return new(Name, $"hstate {h.Name}: free {f} has refcount {rc}, not frozen");
            }
        }
        return null;
    }
}
