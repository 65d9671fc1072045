// The shared lookup of the invariants over the kernel-level failures the engine records
// instead of performing (a store through a read-only mapping, a deadlock, an in-place arm64
// change that needs break-before-make): each reports the first recorded fault of its kind.
using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>Base for invariants that report the first recorded fault of one kind.</summary>
public abstract class FaultInvariant(FaultKind kind) : IInvariant
{
    public abstract string Name { get; }
    public abstract string Claim { get; }
    public abstract string Source { get; }

    public Violation? Check(IKernelView k)
    {
        foreach (var f in k.Faults)
            if (f.Kind == kind) return new(Name, f.ToString());
        return null;
    }
}
