using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// Every backing page of a live vm area is an independent order-0 page, whatever order it was
/// allocated at: a reference of its own (refcount 1, or more while a PFN walker such as
/// compaction holds a speculative get_page_unless_zero it will drop), not a compound head or
/// tail, no order, and fresh fields (no page
/// flags, no private, no mapping, no mapcount), so that a caller who takes one page of the area
/// (vmalloc_to_page, then remap_vmalloc_range's refcount, fb_deferred_io's -&gt;lru and
/// -&gt;mapping, swap's -&gt;private) handles that page alone. Source: mm/vmalloc.c
/// vm_area_alloc_pages (split_page since 3b8000ae185c "mm/vmalloc: huge vmalloc backing pages
/// should be split rather than compound"); mm/page_alloc.c split_page; the 2026 fixes clearing
/// page-&gt;private of split tail pages.
/// </summary>
public sealed class BackingPagesIndependent : IInvariant
{
    public string Name => nameof(BackingPagesIndependent);
    public string Claim => "every backing page of a live vm area is an order-0 page with a reference of its own, no compound metadata and fresh fields";
    public string Source => "mm/vmalloc.c vm_area_alloc_pages; mm/page_alloc.c split_page; 3b8000ae185c";

    public Violation? Check(IKernelView k)
    {
        foreach (var a in k.Vmalloc.LiveAreas)
        {
            if ((a.Flags & VmFlags.VmUninitialized) != 0) continue; // still being built by its task
            ulong cachedPage = ulong.MaxValue;
            VmemmapFrameContent? content = null;
            foreach (long pfn in a.Pages)
            {
                ulong sp = k.Arch.PfnToPage(pfn);
                ulong vmemmapPage = sp & ~(ulong)(k.Arch.PageSize - 1);
                if (vmemmapPage != cachedPage)
                {
                    if (k.FrameOf(vmemmapPage, out _) is not { } frame) return new(Name, $"the struct page of pfn {pfn:x} (page of {VmallocMappingsExact.Describe(a)}) is not mapped in vmemmap");
                    content = k.PeekFrameContent(frame);
                    cachedPage = vmemmapPage;
                }
                var p = content!.Read((int)((sp - vmemmapPage) / Engine.Config.ArchConfig.StructPageSize));
                // PG_hwpoison is exempt: the model gives a freed raw error page back to the buddy
                // (Engine/Hugetlb/MemoryFailure.cs: taking it off the buddy is not modelled), so a
                // later allocation may receive it; the kernel would never hand it out.
                if (p.Refcount < 1 || p.CompoundHead != 0 || (p.Flags & PageFlags.Head) != 0 || p.Order != 0
                    || (p.Flags & ~PageFlags.HwPoison) != PageFlags.None || p.Private != 0 || p.Mapping != 0 || p.Mapcount != 0)
                    return new(Name, $"backing page pfn {pfn:x} of {VmallocMappingsExact.Describe(a)} is {p}, not an independent order-0 page (a reference of its own, no compound head, fresh fields)");
            }
        }
        return null;
    }
}
