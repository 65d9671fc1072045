// mm/memory-failure.c, v6.10-v6.12, the part that decides how a poisoned PFN is handled and
// which struct pages that writes: memory_failure → try_memory_failure_hugetlb →
// get_huge_page_for_memory_failure (a hugetlb folio: PG_hwpoison on the head, the raw page on the
// folio's raw_hwp list, a free folio dissolved) or, for anything else, TestSetPageHWPoison on the
// raw page itself. That last store is the hazard d8f5f7e445f0 closed: a folio whose vmemmap is optimized but
// that does not (yet) carry the hugetlb flag is handled as an ordinary compound page, and the
// store lands on a tail struct page that HVO mapped read-only.
//
// Departures from the kernel: mf_mutex, the refcount dance of get_hwpoison_page, unmapping user
// mappings, killing processes and taking the raw page off the buddy are not modelled.
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>mm/memory-failure.c: what memory_failure does to a poisoned PFN's struct pages.</summary>
public sealed class Hwpoison : KernelCode
{
    internal Hwpoison(Kernel k) : base(k) { }

    private Hugetlb Hugetlb => K.Hugetlb;
    private KernelLock HugetlbLock => K.Hugetlb.HugetlbLock;

    /// <summary>memory_failure(pfn): returns 0, EBUSY (a hugetlb folio in use or already poisoned
    /// there), or what dissolving a free folio returned.</summary>
    [Kernel("mm/memory-failure.c", "memory_failure")]
    public IEnumerable<StepStatus> MemoryFailure(ExecContext ctx, long pfn, Ret<Errno> result)
    {
        var v = View(ctx);
        ulong page = PfnToPage(pfn);
        result.Value = Errno.Ok;
        // try_memory_failure_hugetlb → get_huge_page_for_memory_failure, under hugetlb_lock.
        foreach (var s in SpinLock(ctx, HugetlbLock)) yield return s;
        ulong headPage = CompoundHead(v, page);
        bool hugetlb = FolioTestHugetlb(v, headPage);
        HugetlbFolio? folio = hugetlb ? Hugetlb.FolioByHeadPfn(PageToPfn(headPage)) : null;
        if (hugetlb && folio is not null)
        {
            // hugetlb_update_hwpoison: folio_test_set_hwpoison + the raw page on the raw_hwp list.
            long idx = pfn - folio.HeadPfn;
            bool already = folio.RawHwpPages.Contains(idx);
            if (!already) folio.RawHwpPages.Add(idx);
            ModifyPageFlags(ctx, headPage, PageFlags.HwPoison, PageFlags.None, "folio_set_hwpoison");
            bool free = FolioRefCount(v, headPage) == 0 && folio.State == FolioState.Free;
            SpinUnlock(ctx, HugetlbLock);
            Note("mf.hugetlb");
            yield return StepStatus.After("get_huge_page_for_memory_failure");
            if (already) { result.Value = Errno.EBUSY; yield break; }
            if (free)
            {
                // page_handle_poison → __page_handle_poison → dissolve_free_hugetlb_folio.
                foreach (var s in Hugetlb.DissolveFreeHugetlbFolio(ctx, folio, result)) yield return s;
            }
            else result.Value = Errno.EBUSY; // in use: handled when its last user unmaps it
            yield break;
        }
        SpinUnlock(ctx, HugetlbLock);
        yield return StepStatus.After("get_huge_page_for_memory_failure");
        // Not hugetlb: TestSetPageHWPoison(p) on the raw page.
        ModifyPageFlags(ctx, page, PageFlags.HwPoison, PageFlags.None, "memory_failure: TestSetPageHWPoison");
        Note(PageCompound(v, page) ? "mf.compound_page" : "mf.page");
        yield return StepStatus.After("TestSetPageHWPoison");
    }
}
