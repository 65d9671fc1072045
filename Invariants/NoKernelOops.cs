using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// No kernel oops: no access to an unmapped kernel address without a handler, and no BUG_ON /
/// VM_WARN_ON of the modelled code fires (for example restore on a folio that is not hugetlb,
/// or a task returning with a lock held). Source: the WARN/BUG sites of the modelled functions.
/// </summary>
public sealed class NoKernelOops : IInvariant
{
    public string Name => nameof(NoKernelOops);
    public string Claim => "no kernel access faults on an unmapped address and no modelled BUG/WARN fires";
    public string Source => "BUG_ON/VM_WARN_ON sites in mm/hugetlb_vmemmap.c, mm/hugetlb.c; kernel fault handling";

    public Violation? Check(IKernelView k)
    {
        foreach (var f in k.Faults)
            if (f.Kind is FaultKind.TranslationFault or FaultKind.KernelBug) return new(Name, f.ToString());
        return null;
    }
}
