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

/// <summary>A run in progress: a booted kernel checked after boot, then one operation at a time
/// applied and checked, up to the first violation. <see cref="ScenarioRunner.Run"/> drives it
/// over a whole scenario; the generator drives it while it draws the scenario, so that a
/// generated scenario runs once.</summary>
public sealed class ScenarioExecution
{
    private readonly IReadOnlyList<IInvariant> _invariants;
    private readonly SortedDictionary<string, int> _applied = new(StringComparer.Ordinal);
    private RunResult? _failure;

    /// <summary>Starts a run on the freshly booted <paramref name="kernel"/> and checks every
    /// invariant right after boot (a violation there is step 0).</summary>
    public ScenarioExecution(Kernel kernel, IReadOnlyList<IInvariant>? invariants = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        Kernel = kernel;
        Handles = new RunContext(kernel);
        _invariants = invariants ?? InvariantRegistry.All;
        if (ScenarioRunner.CheckAll(kernel, _invariants) is { } v) _failure = Result(v, 0, null);
    }

    public Kernel Kernel { get; }

    /// <summary>The handles the operations so far have bound.</summary>
    public RunContext Handles { get; }

    /// <summary>Operations applied so far (the failing one included).</summary>
    public int StepsRun { get; private set; }

    /// <summary>Whether an invariant is violated (or the engine threw): no further step runs.</summary>
    public bool Failed => _failure is not null;

    /// <summary>Applies the next operation and checks every invariant. <paramref name="trace"/>,
    /// if given, observes the kernel after the operation, before the check. Returns false once
    /// the run has failed (then, or before).</summary>
    public bool Step(Op op, Action<int, Op, Kernel>? trace = null)
    {
        ArgumentNullException.ThrowIfNull(op);
        if (_failure is not null) return false;
        int step = ++StepsRun;
        Kernel.BeginStep(step);
        Violation? v;
        try
        {
            if (ScenarioRunner.Apply(Kernel, Handles, op)) _applied[op.Verb] = _applied.GetValueOrDefault(op.Verb) + 1;
            trace?.Invoke(step, op, Kernel);
            v = ScenarioRunner.CheckAll(Kernel, _invariants);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _failure = Result(new Violation(RunResult.EngineExceptionName, $"{e.GetType().Name}: {e.Message}"), step, e);
            return false;
        }
        if (v is null) return true;
        _failure = Result(v, step, null);
        return false;
    }

    /// <summary>The outcome so far: the first violation, or none in the steps run.</summary>
    public RunResult Outcome => _failure ?? Result(null, -1, null);

    private RunResult Result(Violation? v, int step, Exception? error) =>
        new(StepsRun, v, step, error, new SortedDictionary<string, int>(_applied, StringComparer.Ordinal), new SortedDictionary<string, long>(Kernel.Log.Reached));
}

public static class ScenarioRunner
{
    /// <summary>Runs <paramref name="s"/>. <paramref name="trace"/>, if given, is called after
    /// every step with the step number, the operation and the kernel (for replay --trace);
    /// <paramref name="booted"/> right after boot, before anything is checked or applied (a
    /// tracer takes its first snapshot there). Both must only observe.</summary>
    public static RunResult Run(Scenario s, IReadOnlyList<IInvariant>? invariants = null, Action<int, Op, Kernel>? trace = null, Action<Kernel>? booted = null)
    {
        ArgumentNullException.ThrowIfNull(s);
        Kernel k = s.Boot();
        booted?.Invoke(k);
        var run = new ScenarioExecution(k, invariants);
        foreach (var op in s.Ops)
            if (!run.Step(op, trace)) break;
        return run.Outcome;
    }

    internal static Violation? CheckAll(Kernel k, IReadOnlyList<IInvariant> invariants)
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
