// Invariants over the kernel-level failures the engine records instead of performing: a store
// through a read-only mapping, a self or ABBA deadlock, an in-place arm64 change that needs
// break-before-make, a kernel oops or BUG. Each is one claim; they share the lookup.
using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>Base for invariants that report the first recorded fault of one kind.</summary>
public abstract class FaultInvariant(FaultKind kind) : IInvariant
{
    public abstract string Name { get; }
    public abstract string Claim { get; }
    public abstract string Source { get; }

    public Violation? Check(Kernel k)
    {
        foreach (var f in k.Faults)
            if (f.Kind == kind) return new(Name, f.ToString());
        return null;
    }
}

/// <summary>
/// No store or atomic read-modify-write ever targets a read-only kernel mapping. HVO maps tail
/// vmemmap PAGE_KERNEL_RO precisely so that such a write oopses; on arm64 an LSE CAS needs write
/// permission even when its comparison fails (Will Deacon). Source: mm/hugetlb_vmemmap.c
/// vmemmap_remap_pte; bd225530a4c7; S000 flush_dcache_page; KERNEL-MODEL.md INV-9.
/// </summary>
public sealed class NoWriteThroughReadOnlyVmemmap() : FaultInvariant(FaultKind.WriteToReadOnly)
{
    public override string Name => nameof(NoWriteThroughReadOnlyVmemmap);
    public override string Claim => "no store or atomic RMW is issued to a kernel address mapped read-only";
    public override string Source => "mm/hugetlb_vmemmap.c vmemmap_remap_pte; bd225530a4c7; S000; KERNEL-MODEL.md INV-9";
}

/// <summary>
/// No context ever waits for a lock that cannot be released: neither one held by a context it
/// interrupted on the same CPU, nor a waits-for cycle. Source: S001 (Catalin Marinas, Will
/// Deacon: the vmemmap fault handler spinning on init_mm.page_table_lock from IRQ context);
/// KERNEL-MODEL.md INV-18.
/// </summary>
public sealed class NoDeadlock() : FaultInvariant(FaultKind.Deadlock)
{
    public override string Name => nameof(NoDeadlock);
    public override string Claim => "no context waits for a lock held by a context it interrupted, or in a waits-for cycle";
    public override string Source => "S001; KERNEL-MODEL.md §4.3, INV-18";
}

/// <summary>
/// arm64: a live valid entry never changes its output address or block size in place; such a
/// change needs invalid → TLBI → new entry (break-before-make), except block splits under
/// BBML2_NOABORT. Source: 060a2c92d1b6; Arm ARM D8.16; KERNEL-MODEL.md §4.1, INV-5.
/// </summary>
public sealed class BreakBeforeMake() : FaultInvariant(FaultKind.BreakBeforeMake)
{
    public override string Name => nameof(BreakBeforeMake);
    public override string Claim => "on arm64 no live valid entry changes output address or block size in place";
    public override string Source => "060a2c92d1b6; S001; KERNEL-MODEL.md §4.1, INV-5";
}

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

    public Violation? Check(Kernel k)
    {
        foreach (var f in k.Faults)
            if (f.Kind is FaultKind.TranslationFault or FaultKind.KernelBug) return new(Name, f.ToString());
        return null;
    }
}

/// <summary>
/// synchronize_rcu() returns only after every reader that was inside an RCU read-side section
/// when it began has left it. Source: Documentation/RCU/whatisRCU.rst; bd225530a4c7 relies on it;
/// KERNEL-MODEL.md INV-19.
/// </summary>
public sealed class RcuGracePeriodWaitsForReaders : IInvariant
{
    public string Name => nameof(RcuGracePeriodWaitsForReaders);
    public string Claim => "a grace period never ends while a reader that began before it is still inside";
    public string Source => "Documentation/RCU/whatisRCU.rst; bd225530a4c7; KERNEL-MODEL.md INV-19";

    public Violation? Check(Kernel k)
    {
        foreach (var (seq, who, still) in k.Rcu.Completed)
            if (still.Count > 0)
                return new(Name, $"grace period {seq} ({who}) ended while {string.Join(", ", still)} {(still.Count == 1 ? "was" : "were")} still inside a read-side section begun before it");
        return null;
    }
}
