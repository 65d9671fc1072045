using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// Every hstate's pool counters, recounted from the folios. free_huge_pages is the number of
/// folios on the free lists, and each of them is frozen (refcount 0), carries HPG_freed and the
/// hugetlb page type in its head struct page and owns its frames; no other folio of the hstate
/// carries HPG_freed (the flag is set by enqueue_hugetlb_folio and cleared by dequeue and
/// remove_hugetlb_folio, so it says "on a free list" independently of the list). nr_huge_pages is
/// the free-list folios plus the in-use folios (hugepage_activelist), each of them with the
/// hugetlb page type and owning its frames. surplus_huge_pages lies in [0, nr_huge_pages], and the
/// persistent pool nr_huge_pages − surplus_huge_pages never falls below max_huge_pages (what the
/// last write of nr_hugepages settled on) while no resize runs: outside set_max_huge_pages
/// (h->resize_lock) a persistent page leaves the pool only by a dissolve, which lowers
/// max_huge_pages with it, and a surplus page leaves it only with the surplus decrement
/// (free_huge_folio, remove_hugetlb_folio(adjust_surplus)), so a surplus folio freed without
/// its decrement shows as a persistent page gone. Counters and lists change together under
/// hugetlb_lock, so this holds after every step. Left out: resv_huge_pages (the model takes no
/// reservations: every fault allocates unreserved, so HugePages_Rsvd is 0 and the rule free ≥
/// resv holds trivially). Sources: mm/hugetlb.c enqueue_hugetlb_folio,
/// dequeue_hugetlb_folio_node_exact, remove_hugetlb_folio, add_hugetlb_folio,
/// __prep_account_new_huge_page, free_huge_folio, dissolve_free_hugetlb_folio, set_max_huge_pages,
/// hugetlb_report_meminfo (HugePages_Total/Free/Rsvd/Surp);
/// Documentation/admin-guide/mm/hugetlbpage.rst (surplus: pages above nr_hugepages).
/// </summary>
public sealed class HugetlbPoolAccounting : IInvariant
{
    public string Name => nameof(HugetlbPoolAccounting);
    public string Claim => "nr_huge_pages and free_huge_pages of every hstate recount from its folios' lists and head flags, surplus_huge_pages lies in [0, nr], and outside a resize the persistent pool is at least max_huge_pages";
    public string Source => "mm/hugetlb.c enqueue/dequeue/remove/add_hugetlb_folio, free_huge_folio, dissolve_free_hugetlb_folio, set_max_huge_pages, hugetlb_report_meminfo; hugetlbpage.rst";

    public Violation? Check(IKernelView k)
    {
        var v = k.PeekView;
        foreach (var h in k.Hugetlb.Hstates)
        {
            long onFreeList = 0, inUse = 0;
            foreach (var f in h.Freelist)
            {
                onFreeList++;
                if (f.State != FolioState.Free) return new(Name, $"hstate {h.Name}: {f} is on the free list");
                if (!k.Mem.AllOwnedBy(f.HeadPfn, f.NrPages, FrameOwner.HugetlbFolio))
                    return new(Name, $"hstate {h.Name}: free {f} does not own its frames (frame {f.HeadPfn:x} is owned {k.Mem.OwnerOf(f.HeadPfn)})");
                var head = v.Read(k.Hugetlb.FolioPage(f));
                if (head.Refcount != 0) return new(Name, $"hstate {h.Name}: free {f} has refcount {head.Refcount}, not frozen");
                if ((head.Flags & PageFlags.HugetlbFreed) == 0) return new(Name, $"hstate {h.Name}: {f} is on the free list without HPG_freed: head {head}");
                if ((head.Flags & PageFlags.Hugetlb) == 0) return new(Name, $"hstate {h.Name}: {f} is on the free list without the hugetlb page type: head {head}");
            }
            foreach (var f in h.Folios)
            {
                if (f.State == FolioState.Active)
                {
                    inUse++;
                    if (!k.Mem.AllOwnedBy(f.HeadPfn, f.NrPages, FrameOwner.HugetlbFolio))
                        return new(Name, $"hstate {h.Name}: in-use {f} does not own its frames (frame {f.HeadPfn:x} is owned {k.Mem.OwnerOf(f.HeadPfn)})");
                    if (f.VmemmapBusy) continue;
                    var head = v.Read(k.Hugetlb.FolioPage(f));
                    if ((head.Flags & PageFlags.HugetlbFreed) != 0) return new(Name, $"hstate {h.Name}: in-use {f} carries HPG_freed: head {head}");
                    if ((head.Flags & PageFlags.Hugetlb) == 0) return new(Name, $"hstate {h.Name}: in-use {f} has no hugetlb page type: head {head}");
                }
                else if (f.State != FolioState.Free && !f.VmemmapBusy && f.State != FolioState.Allocating
                         && k.Mem.AllOwnedBy(f.HeadPfn, 1, FrameOwner.HugetlbFolio)
                         && (v.Read(k.Hugetlb.FolioPage(f)).Flags & PageFlags.HugetlbFreed) != 0)
                    return new(Name, $"hstate {h.Name}: {f} is out of the pool but carries HPG_freed");
            }
            if (h.FreeHugePages != onFreeList)
                return new(Name, $"hstate {h.Name}: free_huge_pages is {h.FreeHugePages} but {onFreeList} folios are on the free list");
            if (h.NrHugePages != onFreeList + inUse)
                return new(Name, $"hstate {h.Name}: nr_huge_pages is {h.NrHugePages} but the pool holds {onFreeList + inUse} folios ({onFreeList} free, {inUse} in use)");
            if (h.SurplusHugePages < 0 || h.SurplusHugePages > h.NrHugePages)
                return new(Name, $"hstate {h.Name}: surplus_huge_pages {h.SurplusHugePages} outside [0, nr_huge_pages = {h.NrHugePages}]");
            if (h.ResizesRunning == 0 && h.PersistentHugePages < h.MaxHugePages)
                return new(Name, $"hstate {h.Name}: the persistent pool nr_huge_pages - surplus_huge_pages = {h.NrHugePages} - {h.SurplusHugePages} = {h.PersistentHugePages} is below max_huge_pages {h.MaxHugePages} with no resize running: a persistent page left the pool uncounted, or surplus_huge_pages counts a page that left");
        }
        return null;
    }
}
