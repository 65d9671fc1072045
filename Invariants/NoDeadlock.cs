using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// No context ever waits for a lock that cannot be released: neither one held by a context it
/// interrupted on the same CPU, nor a waits-for cycle. Source: S001 (Catalin Marinas, Will
/// Deacon: the vmemmap fault handler spinning on init_mm.page_table_lock from IRQ context);
/// Documentation/locking/lockdep-design.rst.
/// </summary>
public sealed class NoDeadlock() : FaultInvariant(FaultKind.Deadlock)
{
    public override string Name => nameof(NoDeadlock);
    public override string Claim => "no context waits for a lock held by a context it interrupted, or in a waits-for cycle";
    public override string Source => "S001";
}
