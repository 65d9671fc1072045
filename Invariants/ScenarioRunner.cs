// The runner: applies a scenario step by step to a freshly built engine and evaluates every
// registered invariant after boot and after every step. The first violation reports the step,
// the invariant and its evidence. An exception thrown by the engine (a model bug) is reported
// the same way, as a failure of the pseudo-invariant EngineException, never as a crash.
using PropertySuite.Engine;
using PropertySuite.Engine.Scenario;

namespace PropertySuite.Invariants;

/// <summary>The outcome of one run.</summary>
/// <param name="StepsRun">Steps applied (the failing step included).</param>
/// <param name="Violation">The first violation, or null.</param>
/// <param name="Step">1-based step of the violation (0: right after boot); -1 when none.</param>
/// <param name="EngineError">The model bug, if the engine threw.</param>
/// <param name="OpsApplied">Per verb, how many operations did something (not no-ops).</param>
/// <param name="Reached">Interesting states the kernel noted.</param>
public sealed record RunResult(
    int StepsRun,
    Violation? Violation,
    int Step,
    Exception? EngineError,
    IReadOnlyDictionary<string, int> OpsApplied,
    IReadOnlyDictionary<string, long> Reached)
{
    public const string EngineExceptionName = "EngineException";
    public bool Failed => Violation is not null;
    public string? FailedInvariant => Violation?.Invariant;

    /// <summary>The expectation this run satisfies (for repro files).</summary>
    public Expectation AsExpectation() => Violation is null ? Expectation.None : new(Violation.Invariant, Step);

    public override string ToString() => Violation is null
        ? $"no violation in {StepsRun} steps"
        : $"{Violation.Invariant} violated at step {Step}: {Violation.Evidence}";
}

public static class ScenarioRunner
{
    /// <summary>Runs <paramref name="s"/>. <paramref name="trace"/>, if given, is called after
    /// every step with the step number, the operation and the kernel (for replay --trace);
    /// <paramref name="booted"/> right after boot, before anything is checked or applied (a
    /// tracer takes its first snapshot there). Both must only observe.</summary>
    public static RunResult Run(Scenario s, IReadOnlyList<IInvariant>? invariants = null, Action<int, Op, Kernel>? trace = null, Action<Kernel>? booted = null)
    {
        invariants ??= InvariantRegistry.All;
        var applied = new SortedDictionary<string, int>(StringComparer.Ordinal);
        Kernel k = s.Boot();
        booted?.Invoke(k);
        var rc = new RunContext(k);
        var v = CheckAll(k, invariants);
        if (v is not null) return new RunResult(0, v, 0, null, applied, new SortedDictionary<string, long>(k.Log.Reached));
        for (int i = 0; i < s.Ops.Length; i++)
        {
            var op = s.Ops[i];
            k.BeginStep(i + 1);
            try
            {
                if (Apply(k, rc, op)) applied[op.Verb] = applied.GetValueOrDefault(op.Verb) + 1;
                trace?.Invoke(i + 1, op, k);
                v = CheckAll(k, invariants);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                v = new Violation(RunResult.EngineExceptionName, $"{e.GetType().Name}: {e.Message}");
                return new RunResult(i + 1, v, i + 1, e, applied, new SortedDictionary<string, long>(k.Log.Reached));
            }
            if (v is not null) return new RunResult(i + 1, v, i + 1, null, applied, new SortedDictionary<string, long>(k.Log.Reached));
        }
        return new RunResult(s.Ops.Length, null, -1, null, applied, new SortedDictionary<string, long>(k.Log.Reached));
    }

    private static Violation? CheckAll(Kernel k, IReadOnlyList<IInvariant> invariants)
    {
        foreach (var inv in invariants)
        {
            var v = inv.Check(k);
            if (v is not null) return v;
        }
        return null;
    }

    /// <summary>Applies one operation. Returns false when it was a no-op.</summary>
    public static bool Apply(Kernel k, RunContext rc, Op op)
    {
        switch (op)
        {
            case StepOp step:
                return step.Advance(k) > 0;
            case IrqOp irq:
            {
                var handler = irq.CreateTask(rc);
                if (handler is null) return false;
                k.Sched.RaiseIrq(irq.Cpu, handler);
                if (k.Cpus[irq.Cpu].Idle) k.Sched.RunToCompletionOrBlock(irq.Cpu, handler); // nothing to interrupt: runs at once
                k.Log.Note("irq.raised");
                return true;
            }
            default:
            {
                var task = op.CreateTask(rc);
                if (task is null || !k.Sched.StartTask(op.Cpu, task)) return false;
                if (!op.Start) k.Sched.RunToCompletionOrBlock(op.Cpu, task);
                return true;
            }
        }
    }
}
