using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// No reference is ever added through a struct page that is not, at that moment, its own
/// compound head: an increment through a tail, or through a fake head (a vmemmap alias of the
/// real head left by HVO), lands on someone else's refcount. Even a transient gain that is
/// dropped again counts (Matthew Wilcox, S001: "fine, but really only by coincidence"), because
/// nothing ties the drop to the folio that was raised. The kernel's own get paths (try_get_page,
/// folio_get) go through compound_head(); page_ref_add_unless since bd225530a4c7 refuses fake
/// heads and zero counts. Source: S001; bd225530a4c7
/// </summary>
public sealed class NoTailRefcountGain : IInvariant
{
    public string Name => nameof(NoTailRefcountGain);
    public string Claim => "every refcount increment through a struct-page pointer lands on a page that is its own compound head";
    public string Source => "S001 (Matthew Wilcox, Muchun Song); bd225530a4c7";

    public Violation? Check(IKernelView k)
    {
        if (k.Filemap is not { } filemap) return null;
        foreach (var add in filemap.RefAdds)
            if (!add.ThroughHead)
                return new(Name, $"{add.Who} on cpu{add.Cpu} at step {add.Step} added a reference through struct page {add.Page:x} (pfn {k.Arch.PageToPfn(add.Page):x}), whose compound head is {add.GenuineHead:x} (pfn {k.Arch.PageToPfn(add.GenuineHead):x})");
        return null;
    }
}
