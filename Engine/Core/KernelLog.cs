// What the kernel prints rather than what it does: oopses, BUG/WARN sites, hangs (the fault
// log an invariant reports), and the states a run reached (for generation statistics).
//
// Faults are recorded, not thrown: a kernel-level failure is an outcome of the scenario, and
// the run goes on so that invariants can judge what follows it.
namespace PropertySuite.Engine;

/// <summary>What went wrong at kernel level (an oops, a hang), recorded instead of thrown.</summary>
public enum FaultKind
{
    /// <summary>A store or atomic RMW to a read-only kernel mapping (a kernel oops).</summary>
    WriteToReadOnly,
    /// <summary>A kernel access to an unmapped address with no handler to fix it (an oops).</summary>
    TranslationFault,
    /// <summary>A context waits for a lock that can never be released (self or ABBA deadlock).</summary>
    Deadlock,
    /// <summary>arm64: a live valid entry changed output address or block size in place.</summary>
    BreakBeforeMake,
    /// <summary>A kernel BUG_ON / VM_BUG_ON / VM_WARN_ON that the modelled code contains.</summary>
    KernelBug,
    /// <summary>An access through a TLB entry cached before the frame it maps was freed: a use
    /// of freed (perhaps reused) memory.</summary>
    UseAfterFree,
}

/// <summary>One recorded kernel-level failure, with the step it happened at.</summary>
public sealed record KernelFault(FaultKind Kind, long Step, int? Cpu, ulong Va, string Detail)
{
    public override string ToString() => $"{Kind} at step {Step} on {KernelEvent.CpuName(Cpu)} va {Va:x}: {Detail}";
}

/// <summary>The kernel log: faults in order, and the interesting states reached.</summary>
public sealed class KernelLog
{
    /// <summary>Kernel-level failures, in order. Invariants report them.</summary>
    public List<KernelFault> Faults { get; } = new();

    /// <summary>Number of scenario steps taken so far (the step a fault is reported at).</summary>
    public long StepCount { get; set; }

    /// <summary>Counts of interesting states reached (e.g. "hvo.rollback", "alloc.enomem"), for
    /// generation statistics. Keys are sorted when reported.</summary>
    public Dictionary<string, long> Reached { get; } = new(StringComparer.Ordinal);

    /// <summary>Notes that an interesting state was reached.</summary>
    public void Note(string state) => Reached[state] = Reached.GetValueOrDefault(state) + 1;

    public void RecordFault(FaultKind kind, Smp.ExecContext? ctx, ulong va, string detail) =>
        Faults.Add(new KernelFault(kind, StepCount, ctx?.CpuId, va, detail));
}
