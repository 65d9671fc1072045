using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// Every struct page's _refcount equals the references its holders account for. The holders are
/// counted from their own records (IKernelView.RefHolders): the page cache holds one reference
/// per page in a file's xarray (filemap_add_folio takes it, truncate's folio_put drops it); a
/// vm_struct holds one per backing page (one per compound head with __GFP_COMP backing); a task
/// whose folio_try_get_rcu / get_page_unless_zero succeeded holds one until it puts the page; a
/// free page is held by nobody and has refcount 0. The counter is read only to be compared. A lost
/// put_page leaves a count above its holders (and the page is never freed: a leak every book
/// balances, because the page stays owned and cached or mapped); an extra put leaves one below
/// (a use-after-free waiting for the next put). Judged: frames their owner's holder declares, frames
/// owned by the page cache, and free frames. Not judged: HugeTLB folios (their fault, mapping
/// and hugetlbfs page-cache references are bounded by RefcountCoversMappings; a task's
/// speculative reference on one, legal on a reused head, is not judged either), page tables
/// (not counted by the model), vmemmap and kernel pages, and a vmalloc-owned frame no live area
/// lists (an area being built or torn down in this step's task; FrameConservation counts those).
/// Incremental: the frames whose holders changed this step (a reference taken or put, a page
/// added to or removed from a file, a task ended holding a reference) and the frames whose
/// owner changed; <see cref="CheckFullScan"/> judges every frame of the kinds above and is the
/// oracle. Sources: include/linux/page_ref.h (page_ref_add_unless, page_ref_dec_and_test),
/// include/linux/mm.h (get_page_unless_zero, folio_try_get, put_page / folio_put), mm/filemap.c
/// (filemap_add_folio: "the page cache holds a reference"; __filemap_remove_folio and
/// folio_put in truncate_inode_pages), mm/vmalloc.c (vm_struct.pages, __vunmap's put),
/// mm/page_alloc.c free_pages_prepare / page_expected_state (a free page has refcount 0).
/// </summary>
public sealed class RefcountAudit : IInvariant
{
    public string Name => nameof(RefcountAudit);
    public string Claim => "every page-cache, vmalloc and free page's refcount equals the references its holders (page cache, vm areas, tasks holding a speculative reference) declare";
    public string Source => "include/linux/page_ref.h, include/linux/mm.h get_page_unless_zero / folio_put, mm/filemap.c filemap_add_folio, mm/vmalloc.c, mm/page_alloc.c free_pages_prepare";

    public Violation? Check(IKernelView k)
    {
        var frames = new SortedSet<long>();
        foreach (var h in k.RefHolders)
            foreach (long p in h.ChangedThisStep) frames.Add(p);
        if (frames.Count == 0 && k.Mem.Changed.Count == 0) return null;
        // Per step, each judged frame asks every holder about itself (IRefHolder.RefsOn), so the
        // cost follows what the step changed, not how many pages the holders hold.
        Declared Ask(long pfn)
        {
            int refs = 0;
            uint by = 0;
            foreach (var h in k.RefHolders)
                if (h.RefsOn(pfn) is var n and > 0) { refs += n; by |= 1u << (int)h.Owner; }
            return new Declared(refs, by);
        }
        foreach (long p in frames)
            if (Judge(k, p, Ask) is { } v) return v;
        foreach (var changed in k.Mem.Changed)
            if (JudgeRange(k, changed.Start, changed.Count, Ask) is { } v) return v;
        return null;
    }

    /// <summary>The oracle: every declared frame, every page-cache frame and every free frame.</summary>
    public Violation? CheckFullScan(IKernelView k)
    {
        var declared = Declarations(k);
        Declared Ask(long pfn) => declared.GetValueOrDefault(pfn);
        foreach (long p in declared.Keys.Order())
            if (Judge(k, p, Ask) is { } v) return v;
        if (k.Filemap is { } fm)
            foreach (long p in fm.LivePfns)
                if (Judge(k, p, Ask) is { } v) return v;
        foreach (var b in k.Mem.Buddy.AllBlocks())
            if (JudgeRange(k, b.Pfn, b.Pages, Ask) is { } v) return v;
        return null;
    }

    /// <summary>Per frame: the references declared, and which owners' holders declared them
    /// (one bit per FrameOwner). No text: the reasons are asked for only when a count disagrees.</summary>
    private static Dictionary<long, Declared> Declarations(IKernelView k)
    {
        var d = new Dictionary<long, Declared>();
        foreach (var h in k.RefHolders)
        {
            uint bit = 1u << (int)h.Owner;
            h.Declare((pfn, refs) =>
            {
                d.TryGetValue(pfn, out var e);
                d[pfn] = new Declared(e.Refs + refs, e.By | bit);
            });
        }
        return d;
    }

    private readonly record struct Declared(int Refs, uint By)
    {
        public bool DeclaredBy(FrameOwner owner) => (By & (1u << (int)owner)) != 0;
    }

    /// <summary>Judges [pfn, pfn+n): a run of free frames whose struct pages all share one vmemmap
    /// page's uniform contents is judged by one read.</summary>
    private Violation? JudgeRange(IKernelView k, long pfn, long n, Func<long, Declared> declared)
    {
        long end = Math.Min(pfn + n, k.Mem.MaxPfn);
        int s = k.Arch.StructPagesPerVmemmapPage;
        while (pfn < end)
        {
            long runEnd = Math.Min(end, pfn - pfn % s + s);
            bool uniformFree = k.FrameOf(k.Arch.PfnToPage(pfn), out _) is { } frame && k.PeekFrameContent(frame).IsUniform && k.Mem.AllOwnedBy(pfn, runEnd - pfn, FrameOwner.Free);
            for (long p = pfn; p < runEnd; p++)
            {
                if (uniformFree && p != pfn && declared(p).Refs == 0) continue;
                if (Judge(k, p, declared) is { } v) return v;
            }
            pfn = runEnd;
        }
        return null;
    }

    private Violation? Judge(IKernelView k, long p, Func<long, Declared> declared)
    {
        if (p < 0 || p >= k.Mem.MaxPfn) return null;
        var owner = k.Mem.OwnerOf(p);
        if (owner is FrameOwner.Absent or FrameOwner.Offline) return null; // no struct page in use to audit
        var d = declared(p);
        bool has = d.By != 0;
        // Audited: free frames, page-cache frames, and frames their owner's holder declares (a
        // vmalloc frame no live area lists, or a HugeTLB folio, has references nobody declares).
        if (owner is not (FrameOwner.Free or FrameOwner.PageCache) && !(has && d.DeclaredBy(owner))) return null;
        if (!k.PeekStructPage(k.Arch.PfnToPage(p), out var sp)) return null;
        int refcount = sp.Refcount;
        if (refcount == d.Refs) return null;
        var why = k.RefHolders.SelectMany(h => h.Why(p).Select(w => $"{h.Who}: {w}")).ToList();
        string holders = why.Count > 0 ? string.Join("; ", why) : "no holder";
        string leaked = string.Join("; ", k.SpeculativeRefs.Where(h => h.Pfn == p && h.Task.Done).Select(h => $"a reference {h} was never put"));
        return new(Name, $"{owner} frame {p:x} has refcount {refcount} but its holders account for {d.Refs} ({holders}){(leaked.Length > 0 ? ": " + leaked : "")}");
    }
}
