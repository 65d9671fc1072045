using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// No store or atomic read-modify-write ever targets a read-only kernel mapping. HVO maps tail
/// vmemmap PAGE_KERNEL_RO precisely so that such a write oopses; on arm64 an LSE CAS needs write
/// permission even when its comparison fails (Will Deacon). Source: mm/hugetlb_vmemmap.c
/// vmemmap_remap_pte; bd225530a4c7; S000 flush_dcache_page
/// </summary>
public sealed class NoWriteThroughReadOnlyVmemmap() : FaultInvariant(FaultKind.WriteToReadOnly)
{
    public override string Name => nameof(NoWriteThroughReadOnlyVmemmap);
    public override string Claim => "no store or atomic RMW is issued to a kernel address mapped read-only";
    public override string Source => "mm/hugetlb_vmemmap.c vmemmap_remap_pte; bd225530a4c7; S000";
}
