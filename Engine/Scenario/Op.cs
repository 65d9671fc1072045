// Operations: the steps of a scenario. One immutable record per operation; its ToString() is its
// line in the repro language, and OpCatalog parses that line back.
//
// Every operation is total: one whose handle does not exist (a shrinker deleted the step that
// bound it) or whose CPU is busy is a no-op, so any sub-sequence of a scenario stays runnable.
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Scenario;

/// <summary>Base of every operation line: `[cpuN:] [start] [h =] verb args`.</summary>
public abstract record Op
{
    /// <summary>The CPU the operation runs on (`cpuN:` prefix; omitted for cpu0).</summary>
    public int Cpu { get; init; }
    /// <summary>`start`: push as a task and let `step` lines advance it, instead of running it
    /// to completion (or until it blocks) at once.</summary>
    public bool Start { get; init; }
    /// <summary>Handle the result is bound to (`v1 = ...`), or null.</summary>
    public string? Bind { get; init; }

    /// <summary>The operation's keyword, named after the kernel function it stands for.</summary>
    public abstract string Verb { get; }

    /// <summary>The argument text after the verb (may be empty).</summary>
    public abstract string Args();

    /// <summary>Builds the kernel task that performs the operation, or null for a no-op (a
    /// missing handle, or nothing to do in the current state).</summary>
    public abstract KernelTask? CreateTask(RunContext rc);

    /// <summary>Simpler versions of this operation, for the shrinker (finite, simplest first).</summary>
    public virtual IEnumerable<Op> ShrinkArgs() => [];

    /// <summary>Handles this operation reads.</summary>
    public virtual IEnumerable<string> Uses => [];

    /// <summary>Whether the operation's task holds, across its steps, a struct page it found by
    /// PFN rather than through a reference it owns (compaction's scanners, memory_failure,
    /// /proc/kpageflags). Nothing in the kernel keeps such a memmap mapped: an offline and a
    /// remove of its section that both complete while the task runs free it under the task,
    /// a race the kernel accepts (Engine/Hotplug/PfnToOnlinePage.cs). Generation does not draw
    /// a remove while such a task runs.</summary>
    public virtual bool WalksByPfn => false;

    public sealed override string ToString()
    {
        var sb = new System.Text.StringBuilder();
        // `step` and `irq` name their CPU as an argument; a prefix would say it twice.
        if (Cpu != 0 && this is not StepOp and not IrqOp) sb.Append("cpu").Append(Cpu).Append(": ");
        if (Start) sb.Append("start ");
        if (Bind is not null) sb.Append(Bind).Append(" = ");
        sb.Append(Verb);
        string args = Args();
        if (args.Length > 0) sb.Append(' ').Append(args);
        return sb.ToString();
    }

    /// <summary>Shrink candidates common to every op: run on cpu0, run instead of start.</summary>
    public IEnumerable<Op> ShrinkCommon()
    {
        if (Cpu != 0) yield return this with { Cpu = 0 };
        if (Start) yield return this with { Start = false };
    }
}

/// <summary>How far a `step` line advances its CPU.</summary>
public enum StepUntil
{
    /// <summary>`step cpuN [K]`: K steps (1 when omitted), whatever they do.</summary>
    Count,
    /// <summary>`step cpuN to ACTION`: until the context on top has taken the step that performs
    /// ACTION (see <see cref="CpuStepping.StepUntil"/>).</summary>
    Action,
    /// <summary>`step cpuN until done`: until the context on top finishes or blocks.</summary>
    Done,
}

/// <summary>
/// `step cpuN [K]`, `step cpuN to ACTION`, `step cpuN until done`: advance CPU N, part of the
/// CPU schedule. A count takes exactly K steps (a blocked context retries; an idle CPU does
/// nothing). The named forms refer to the context on top of the CPU when the line starts: `to
/// ACTION` stops right after that context's step named ACTION (StepStatus.After), `until done`
/// when it has finished; both stop early when it finishes or a step blocks, and after
/// <see cref="CpuStepping.MaxSteps"/> steps. An interrupt handler delivered meanwhile runs as
/// under a count, and its steps never match ACTION. A line whose CPU is idle is a no-op.
/// </summary>
public sealed record StepOp(int Count = 1) : Op
{
    /// <summary>Which form of the line this is.</summary>
    public StepUntil Until { get; init; }
    /// <summary>The action of `to ACTION` (null for the other forms).</summary>
    public string? ToAction { get; init; }

    /// <summary>`step cpuN to ACTION`.</summary>
    public static StepOp To(int cpu, string action) => new() { Cpu = cpu, Until = StepUntil.Action, ToAction = action };
    /// <summary>`step cpuN until done`.</summary>
    public static StepOp UntilDone(int cpu) => new() { Cpu = cpu, Until = StepUntil.Done };

    public override string Verb => "step";
    public override string Args() => Until switch
    {
        StepUntil.Action => $"cpu{Cpu} to {ToAction}",
        StepUntil.Done => $"cpu{Cpu} until done",
        _ => $"cpu{Cpu}" + (Count != 1 ? $" {Count}" : ""),
    };
    public override KernelTask? CreateTask(RunContext rc) => null;

    /// <summary>Advances the CPU as the line says; returns the number of steps taken.</summary>
    public int Advance(Kernel k)
    {
        ArgumentNullException.ThrowIfNull(k);
        if (Until == StepUntil.Action) return CpuStepping.StepUntil(k, Cpu, ToAction);
        if (Until == StepUntil.Done) return CpuStepping.StepUntil(k, Cpu, action: null);
        int n = 0;
        for (int i = 0; i < Count; i++)
            if (k.Sched.StepCpu(Cpu) is not null) n++;
        return n;
    }

    /// <summary>A count shrinks to fewer steps; `to ACTION` to `until done` (no argument); `until
    /// done` is simplest.</summary>
    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Until == StepUntil.Action) yield return UntilDone(Cpu);
        if (Until != StepUntil.Count) yield break;
        if (Count > 1) yield return this with { Count = 1 };
        if (Count > 2) yield return this with { Count = Count / 2 };
    }
}

/// <summary>`irq cpuN verb args`: raise an interrupt on CPU N whose handler performs the inner
/// operation (for example a struct-page read from an IRQ handler).</summary>
public sealed record IrqOp(Op Handler) : Op
{
    public override string Verb => "irq";
    public override string Args() => $"cpu{Cpu} {Handler}";
    public override KernelTask? CreateTask(RunContext rc) => Handler.CreateTask(rc);
    public override IEnumerable<Op> ShrinkArgs() => Handler.ShrinkArgs().Select(h => this with { Handler = h });
    public override IEnumerable<string> Uses => Handler.Uses;
}

/// <summary>Handles bound during a run and the engine they refer into.</summary>
public sealed class RunContext(Kernel kernel)
{
    private readonly Dictionary<string, object> _handles = new(StringComparer.Ordinal);

    public Kernel Kernel { get; } = kernel;

    public void BindHandle(string? name, object value)
    {
        if (name is not null) _handles[name] = value;
    }

    public void Unbind(string name) => _handles.Remove(name);

    public bool TryGet<T>(string name, out T value) where T : class
    {
        if (_handles.TryGetValue(name, out var o) && o is T t) { value = t; return true; }
        value = null!;
        return false;
    }

    public IEnumerable<KeyValuePair<string, object>> Handles => _handles.OrderBy(kv => kv.Key, StringComparer.Ordinal);
}
