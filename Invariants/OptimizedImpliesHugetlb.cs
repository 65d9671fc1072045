using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// A folio whose vmemmap is optimized is always identified as a HugeTLB folio: the hugetlb flag is
/// set before the vmemmap is optimized and cleared only after it has been restored. Otherwise there
/// is a window in which core mm sees an ordinary compound page whose tail struct pages are
/// read-only aliases, and memory-failure handling writes them. Source: d8f5f7e445f0 ("hugetlb: set
/// hugetlb page flag before optimizing vmemmap"); bd225530a4c7 / mm/hugetlb.c
/// remove_hugetlb_folio ("We can only clear the hugetlb flag after allocating vmemmap pages");
/// Enforced by the order of init_new_hugetlb_folio before
/// hugetlb_vmemmap_optimize_folio, and by __update_and_free_hugetlb_folio.
/// </summary>
public sealed class OptimizedImpliesHugetlb : IInvariant
{
    public string Name => nameof(OptimizedImpliesHugetlb);
    public string Claim => "every folio whose head says vmemmap-optimized also has the hugetlb flag";
    public string Source => "d8f5f7e445f0; bd225530a4c7; mm/hugetlb.c remove_hugetlb_folio";

    public Violation? Check(IKernelView k)
    {
        var v = k.PeekView;
        foreach (var f in k.Hugetlb.AllFoliosByPfn())
        {
            ulong head = k.Hugetlb.FolioPage(f);
            if (k.PageFlags.FolioTestHugetlbVmemmapOptimized(v, head) && !k.PageFlags.FolioTestHugetlb(v, head))
                return new(Name, $"{f}: vmemmap optimized but the hugetlb flag is clear (head struct page {v.Read(head)})");
        }
        return null;
    }
}
