using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// A struct page says what its frame is. A free frame's struct page is a plain page: not a head,
/// not a tail, refcount 0, mapcount 0, no mapping, no flags but PG_hwpoison (which a freed raw
/// error page keeps in the model). A HugeTLB folio that is settled (free in the pool or in use,
/// no vmemmap update running) has a head with PG_head and the hugetlb type and refcount 0 when free
/// (frozen); every tail links to that head with refcount 0; page[1] records the
/// folio's order; and the tails past the ones the kernel uses for folio-wide fields (page[1],
/// page[2]) carry nothing but the head link and what is per page (_mapcount, and PG_hwpoison, a
/// PF_ANY flag in include/linux/page-flags.h). Checked on the frames whose
/// owner changed this step, on the struct pages whose vmemmap mapping changed this step, and on
/// the folios that settled this step; a vmemmap page that HVO remapped onto the folio's kept
/// page is HvoShape's to judge and is skipped. Sources: mm/page_alloc.c free_pages_prepare,
/// free_page_is_bad / page_expected_state, free_tail_page_prepare, bad_page, prep_compound_page
/// and prep_compound_tail; include/linux/mm_types.h (struct folio's first tail pages).
/// </summary>
public sealed class StructPageMatchesOwner : IInvariant
{
    public string Name => nameof(StructPageMatchesOwner);
    public string Claim => "every free frame's struct page is a plain unreferenced page and every settled HugeTLB folio's struct pages are a head of its order and tails carrying only their head link";
    public string Source => "mm/page_alloc.c free_pages_prepare, page_expected_state, free_tail_page_prepare, bad_page, prep_compound_page";

    /// <summary>Flags a tail may carry of its own: those the page-flags policy marks PF_ANY
    /// (PG_hwpoison marks the raw error page, head or tail).</summary>
    private const PageFlags PerPageFlags = PageFlags.HwPoison;

    /// <summary>Tails past page[0..FolioWideTails] carry only the head link.</summary>
    private const int FolioWideTails = 2;

    public Violation? Check(IKernelView k)
    {
        foreach (var changed in k.Mem.Changed)
            if (CheckRange(k, changed.Start, changed.Count) is { } v) return v;
        ulong vmemmapStart = k.Arch.VmemmapStart, vmemmapEnd = k.Arch.VmemmapEnd;
        foreach (var e in k.StepEvents)
        {
            if (e.Kind != KernelEventKind.EntryStore || e.Mm != "init_mm" || !e.New.IsLeaf || e.Start < vmemmapStart || e.Start >= vmemmapEnd) continue;
            long first = k.Arch.PageToPfn(e.Start), last = k.Arch.PageToPfn(Math.Min(e.End, vmemmapEnd) - 1);
            if (CheckRange(k, first, last - first + 1) is { } v) return v;
        }
        foreach (var h in k.Hugetlb.Hstates)
            foreach (var f in h.TouchedThisStep)
                if (CheckRange(k, f.HeadPfn, f.NrPages) is { } v) return v;
        return null;
    }

    private Violation? CheckRange(IKernelView k, long pfn, long n)
    {
        long end = Math.Min(pfn + n, k.Mem.MaxPfn);
        int s = k.Arch.StructPagesPerVmemmapPage;
        var view = k.PeekView;
        while (pfn < end)
        {
            long pageFirst = pfn - pfn % s, runEnd = Math.Min(end, pageFirst + s);
            if (k.FrameOf(k.Arch.PfnToPage(pageFirst), out _) is not { } frame) { pfn = runEnd; continue; } // no struct pages here (a hole, or a removed section)
            if (k.PeekFrameContent(frame).IsUniform && k.Mem.AllOwnedBy(pfn, runEnd - pfn, FrameOwner.Free))
            {
                if (CheckFree(k, pfn, view.Read(k.Arch.PfnToPage(pfn))) is { } v) return v;
            }
            else
                for (long p = pfn; p < runEnd; p++)
                    if (CheckOne(k, p, frame, view) is { } v) return v;
            pfn = runEnd;
        }
        return null;
    }

    private Violation? CheckOne(IKernelView k, long p, long frame, VmemmapView view)
    {
        var owner = k.Mem.OwnerOf(p);
        if (owner == FrameOwner.Free) return CheckFree(k, p, view.Read(k.Arch.PfnToPage(p)));
        if (owner != FrameOwner.HugetlbFolio || FolioOf(k, p) is not { } f) return null;
        if (f.State is not (FolioState.Free or FolioState.Active) || f.VmemmapBusy) return null;
        long idx = p - f.HeadPfn;
        int s = k.Arch.StructPagesPerVmemmapPage;
        if (idx >= s && RemappedOntoKeptPage(k, f, idx / s, frame)) return null;
        var sp = view.Read(k.Arch.PfnToPage(p));
        ulong headPage = k.Arch.PfnToPage(f.HeadPfn);
        string? wrong = null;
        if (idx == 0)
        {
            if ((sp.Flags & PageFlags.Head) == 0 || sp.IsTail) wrong = "the head has no PG_head or is a tail";
            else if ((sp.Flags & PageFlags.Hugetlb) == 0) wrong = "the head has no hugetlb page type";
            else if (f.State == FolioState.Free && sp.Refcount != 0) wrong = $"a free pool folio's head has refcount {sp.Refcount}, not 0 (frozen)";
        }
        else if (!sp.IsTail || sp.CompoundHead != (headPage | 1)) wrong = $"subpage {idx} does not link to the head ({sp.CompoundHead:x})";
        else if (sp.Refcount != 0) wrong = $"tail subpage {idx} has refcount {sp.Refcount}";
        else if (idx == 1 && sp.Order != f.Hstate.Order) wrong = $"page[1] records order {sp.Order}, the folio has order {f.Hstate.Order}";
        else if (idx > FolioWideTails && ((sp.Flags & ~PerPageFlags) != 0 || sp.Private != 0 || sp.Mapping != 0 || sp.Index != 0 || sp.Order != 0))
            wrong = $"tail subpage {idx} carries more than its head link";
        return wrong is null ? null : new(Name, $"{f}: {wrong}: struct page of pfn {p:x} is {sp}");
    }

    private Violation? CheckFree(IKernelView k, long p, StructPage sp)
    {
        string? wrong =
            (sp.Flags & PageFlags.Head) != 0 ? "has PG_head"
            : sp.IsTail || sp.CompoundHead != 0 ? "is still a tail"
            : sp.Refcount != 0 ? $"has refcount {sp.Refcount}"
            : sp.Mapcount != 0 ? $"has mapcount {sp.Mapcount}"
            : sp.Mapping != 0 ? "still has a mapping"
            : (sp.Flags & ~PageFlags.HwPoison) != 0 ? $"still has flags {sp.Flags & ~PageFlags.HwPoison}"
            : null;
        return wrong is null ? null : new(Name, $"free frame {p:x}'s struct page {wrong}: {sp} (bad_page at free_pages_prepare)");
    }

    private static HugetlbFolio? FolioOf(IKernelView k, long p)
    {
        foreach (var h in k.Hugetlb.Hstates)
            if (h.TryGetFolio(p & ~(h.PagesPerHugePage - 1), out var f)) return f;
        return null;
    }

    /// <summary>Whether the vmemmap page in <paramref name="frame"/> is an HVO alias of one of the
    /// folio's first two vmemmap pages (the kept pages of either scheme).</summary>
    private static bool RemappedOntoKeptPage(IKernelView k, HugetlbFolio f, long vmemmapPage, long frame)
    {
        int s = k.Arch.StructPagesPerVmemmapPage;
        for (int i = 0; i < 2 && (i + 1) * s <= f.NrPages; i++)
            if (i != vmemmapPage && k.FrameOf(k.Arch.PfnToPage(f.HeadPfn + i * s), out _) == frame) return true;
        return false;
    }
}
