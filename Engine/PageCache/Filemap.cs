// The page cache and speculative references: mm/filemap.c (filemap_add_folio, filemap_get_entry,
// truncate_inode_pages via delete_from_page_cache), include/linux/page_ref.h (page_ref_add_unless,
// folio_ref_try_add_rcu), include/linux/mm.h (get_page_unless_zero, folio_put), and a PFN walker in
// the style of compaction's isolate_migratepages_block.
//
// Pinned to the v6.10 code (bd225530a4c7, "mm/hugetlb_vmemmap: fix race with speculative PFN
// walkers"), with the earlier primitive and Muchun Song's proposal (S001) as variants.
//
// A page-cache folio is reached through a struct-page pointer — a vmemmap virtual address — and
// every refcount operation goes through vmemmap. So after HVO remaps the vmemmap page behind a
// stale pointer, the same pointer reads (and tries to write) whatever the new mapping shows:
// the real head through a fake-head alias, or a real tail.
//
// Departures: files hold order-0 folios only; the xarray is a sorted map index → pointer; no
// LRU lists (PG_lru is set while a page is in the cache); folio_put frees to the buddy directly.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.PageCache;

/// <summary>struct address_space of one file: its xarray of folio pointers.</summary>
public sealed class AddressSpace(int id)
{
    public int Id { get; } = id;
    /// <summary>i_pages: index → struct page pointer (vmemmap VA).</summary>
    public XArray IPages { get; } = new();
    public override string ToString() => $"file{Id}";
}

/// <summary>One refcount increment through a struct-page pointer, with what the pointer was at
/// that moment: compound_head(page) as the kernel computes it over vmemmap.</summary>
public sealed record RefAdd(long Step, int Cpu, ulong Page, ulong GenuineHead, string Who)
{
    public bool ThroughHead => GenuineHead == Page;
}

/// <summary>Page-cache state of one kernel.</summary>
public sealed class Filemap : IFilemapView
{
    private readonly Kernel _k;
    private readonly List<AddressSpace> _files = new();

    /// <summary>PFNs of page-cache folios not yet freed (in a file, or held by a reference).</summary>
    public SortedSet<long> LivePfns { get; } = new();

    /// <summary>Every successful refcount increment made through a struct-page pointer by a
    /// speculative path, in order (evidence for NoTailRefcountGain).</summary>
    public List<RefAdd> RefAdds { get; } = new();
    IReadOnlyList<RefAdd> IFilemapView.RefAdds => RefAdds;
    IReadOnlyCollection<long> IFilemapView.LivePfns => LivePfns;

    public IReadOnlyList<AddressSpace> Files => _files;

    /// <summary>PFNs of pages added to or removed from a file in the current step (the page
    /// cache's references on them changed; RefcountAudit judges them).</summary>
    public List<long> CacheChangedThisStep { get; } = new();

    public Filemap(Kernel k)
    {
        _k = k;
        k.FrameAccountants.Add((FrameOwner.PageCache, "page-cache folios not yet freed", () => LivePfns.Count));
    }

    public AddressSpace NewFile()
    {
        var f = new AddressSpace(_files.Count);
        _files.Add(f);
        return f;
    }

    /// <summary>filemap_add_folio for indices [0, n) of a new file: allocate, initialise the
    /// struct page through vmemmap (refcount 1 for the cache, PG_lru, mapping, index), store
    /// the pointer in the xarray. Stops at ENOMEM (the pages added so far stay).</summary>
    public Errno FilemapAddFolios(ExecContext ctx, AddressSpace f, int n)
    {
        for (int i = 0; i < n; i++)
        {
            if (!_k.Mem.TryAllocPages(0, FrameOwner.PageCache, out long pfn)) { _k.Log.Note("filemap.enomem"); return Errno.ENOMEM; }
            LivePfns.Add(pfn);
            ulong page = _k.Arch.PfnToPage(pfn);
            var sp = new StructPage { Refcount = 1, Flags = PageFlags.Lru, Mapping = f.Id + 1, Index = i };
            _k.Mmu.WriteStructPage(ctx, page, sp, "filemap_add_folio");
            f.IPages[i] = page;
            CacheChangedThisStep.Add(pfn);
        }
        return Errno.Ok;
    }

    /// <summary>xa_load.</summary>
    public static ulong XaLoad(AddressSpace f, long index) => f.IPages.TryGetValue(index, out var p) ? p : 0;

    /// <summary>truncate_inode_pages: for every page, delete it from the cache (clear PG_lru,
    /// mapping) and drop the cache's reference.</summary>
    public void TruncateInodePages(ExecContext ctx, AddressSpace f)
    {
        foreach (var (index, page) in f.IPages.ToList())
        {
            f.IPages.Remove(index);
            CacheChangedThisStep.Add(_k.Arch.PageToPfn(page));
            if (_k.Mmu.ReadStructPage(ctx, page, out var sp))
            {
                sp.Flags &= ~PageFlags.Lru;
                sp.Mapping = 0;
                _k.Mmu.WriteStructPage(ctx, page, sp, "__filemap_remove_folio");
            }
            FolioPut(ctx, page, "truncate");
        }
    }

    /// <summary>folio_put: decrement through the pointer; at zero, free the folio the pointer
    /// names (pfn of the pointer) to the buddy. If the pointer aliases something that is not a
    /// page-cache page, the free is a bad free (recorded by PhysMem).</summary>
    public void FolioPut(ExecContext ctx, ulong page, string who)
    {
        if (!_k.Mmu.ReadStructPage(ctx, page, out var sp)) return;
        if (sp.Refcount <= 0)
        {
            _k.Log.RecordFault(FaultKind.KernelBug, ctx, page, $"{who}: folio_put on struct page of pfn {_k.Arch.PageToPfn(page):x} with refcount {sp.Refcount} (VM_BUG_ON_PAGE)");
            return;
        }
        sp.Refcount--;
        if (!_k.Mmu.WriteStructPage(ctx, page, sp, who)) return;
        _k.SpeculativeRefs.Release(ctx, _k.Arch.PageToPfn(page));
        if (sp.Refcount != 0) return;
        long pfn = _k.Arch.PageToPfn(page);
        if (LivePfns.Remove(pfn))
        {
            _k.Mmu.WriteStructPage(ctx, page, default, "free_pages_prepare");
            _k.Mem.FreePages(pfn, 0, FrameOwner.PageCache, who);
            if (_k.Variant.Broken.TruncateFreesTwice && who == "truncate") _k.Mem.FreeOnePageUnchecked(pfn, 0);
            _k.Log.Note("filemap.folio_freed");
        }
        else
        {
            // The count reached zero through a pointer that is not a live page-cache folio.
            _k.Mem.FreePages(pfn, 0, FrameOwner.PageCache, $"{who} (pointer to pfn {pfn:x} is not a page-cache folio)");
        }
    }
}
