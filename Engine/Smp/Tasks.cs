// CPUs, execution contexts, tasks, spinlocks and RCU.
//
// A task is a kernel code path split into steps: each step performs one kernel-visible action
// (read an entry, take a lock, clear an entry, flush, write a struct page, ...). Tasks are C#
// iterators; `yield return StepStatus.After("xa_load")` ends a step and names the kernel action
// it stops after, `yield return Blocked` means the step could not proceed (a lock is held, a
// grace period has not ended) and will be retried. A scenario steps CPUs in any order, which is
// how interleavings are generated and shrunk; it can step a CPU by a count or to a named action.
//
// Each CPU runs a stack of contexts: a task context at the bottom and interrupt handlers above
// it. Only the top context runs; an interrupted context resumes when the handler finishes. This
// is what makes an IRQ-context self-deadlock observable: the handler waits for a lock that the
// context below it holds, and that context cannot run until the handler returns.
//
// Departures from the kernel: preemption is not modelled (a CPU's task runs until it finishes
// or blocks, except for interrupts); RCU is the non-preemptible flavour: a reader is a context
// between rcu_read_lock and rcu_read_unlock.
namespace PropertySuite.Engine.Smp;

/// <summary>
/// What one step of a task did: it made progress, after the kernel action it names (the kernel
/// function or primitive it stops after, e.g. "xa_load", "folio_try_get_rcu",
/// "spin_lock(hugetlb_lock)"), or it blocked and will be retried. Task bodies end each step with
/// <c>yield return StepStatus.After("...")</c>; the step that ends a task (its body returns) is
/// named <see cref="ReturnAction"/> by the engine. Equality compares the kind only, so
/// <c>st == StepStatus.Progress</c> holds for every step that made progress, named or not.
/// </summary>
public readonly struct StepStatus : IEquatable<StepStatus>
{
    /// <summary>The action of the step that ends a task: its body returned.</summary>
    public const string ReturnAction = "return";

    private readonly bool _blocked;

    /// <summary>The kernel action the step stops after; null for an unnamed step or a blocked one.</summary>
    public string? Action { get; }

    private StepStatus(bool blocked, string? action)
    {
        _blocked = blocked;
        Action = action;
    }

    /// <summary>Progress without a name (tests' bodies; engine bodies name their steps).</summary>
    public static readonly StepStatus Progress = default;
    /// <summary>The step could not proceed (a lock is held, a grace period has not ended).</summary>
    public static readonly StepStatus Blocked = new(blocked: true, action: null);
    /// <summary>The step that ended a task.</summary>
    public static readonly StepStatus Return = new(blocked: false, ReturnAction);

    /// <summary>Progress, after <paramref name="action"/> (a kernel function or primitive, as the kernel names it).</summary>
    public static StepStatus After(string action) => new(blocked: false, action);

    public bool IsBlocked => _blocked;
    public bool IsProgress => !_blocked;

    public bool Equals(StepStatus other) => _blocked == other._blocked;
    public override bool Equals(object? obj) => obj is StepStatus s && Equals(s);
    public override int GetHashCode() => _blocked ? 1 : 0;
    public static bool operator ==(StepStatus a, StepStatus b) => a.Equals(b);
    public static bool operator !=(StepStatus a, StepStatus b) => !a.Equals(b);

    public override string ToString() => _blocked ? "Blocked" : Action is null ? "Progress" : $"Progress after {Action}";
}

/// <summary>A lock of the kernel: init_mm.page_table_lock, mem_hotplug_lock, hugetlb_lock.</summary>
public sealed class KernelLock(string name)
{
    public string Name { get; } = name;
    public ExecContext? Holder { get; internal set; }
    /// <summary>The action of the step that takes it: "spin_lock(NAME)".</summary>
    public StepStatus Taken { get; } = StepStatus.After($"spin_lock({name})");
    public override string ToString() => Name;
}

/// <summary>One execution context on a CPU: a task, or an interrupt handler running above one.</summary>
public sealed class ExecContext
{
    internal IEnumerator<StepStatus>? Body;

    public KernelTask Task { get; }
    public int CpuId { get; }
    public bool InIrq { get; }
    /// <summary>Depth in the CPU's context stack (0 = task context).</summary>
    public int Depth { get; }
    public int RcuDepth { get; internal set; }
    /// <summary>Grace-period sequence at which the current outermost RCU reader section began;
    /// null outside any section.</summary>
    public long? RcuReaderGpSeq { get; internal set; }
    /// <summary>The outermost read-side section this context is inside, or null.</summary>
    internal RcuReadSection? RcuSection { get; set; }
    public List<KernelLock> Held { get; } = new();
    /// <summary>A struct-page pointer this context took without a reference (a speculative
    /// lookup's xa_load, a PFN walker's pfn_to_page) and still uses, or null: what a race
    /// against HVO is about, shown by `replay --trace`.</summary>
    public HeldPagePointer? PagePointer { get; internal set; }
    public KernelLock? WaitingFor { get; internal set; }
    /// <summary>Deadlocked: this context can never run again (its CPU is hung).</summary>
    public bool Hung { get; internal set; }


    internal ExecContext(KernelTask task, int cpu, bool inIrq, int depth)
    {
        Task = task;
        CpuId = cpu;
        InIrq = inIrq;
        Depth = depth;
    }

    public override string ToString()
    {
        // Task names are operation lines, which may start with their own "cpuN: " prefix.
        string name = Task.Name.StartsWith($"cpu{CpuId}: ", StringComparison.Ordinal) ? Task.Name[(Task.Name.IndexOf(' ') + 1)..] : Task.Name;
        return $"cpu{CpuId}{(InIrq ? " irq" : "")} {name}";
    }
}

/// <summary>A multi-step kernel code path.</summary>
public abstract class KernelTask
{
    public int Id { get; internal set; }
    /// <summary>One-line description, e.g. "spec_lookup f1".</summary>
    public abstract string Name { get; }
    public bool Done { get; internal set; }

    /// <summary>The steps. Runs in <paramref name="ctx"/>; each yield ends one step.</summary>
    protected internal abstract IEnumerable<StepStatus> Run(Kernel k, ExecContext ctx);
}

/// <summary>A task built from a delegate, for one-shot operations and tests.</summary>
public sealed class LambdaTask(string name, Func<Kernel, ExecContext, IEnumerable<StepStatus>> body) : KernelTask
{
    public override string Name { get; } = name;
    protected internal override IEnumerable<StepStatus> Run(Kernel k, ExecContext ctx) => body(k, ctx);
}

/// <summary>A CPU: its TLB and its stack of execution contexts.</summary>
public sealed class Cpu : ICpuView
{
    private readonly List<ExecContext> _stack = new();
    private readonly Queue<KernelTask> _pendingIrqs = new();

    public int Id { get; }
    public Tlb Tlb { get; }
    public IReadOnlyList<ExecContext> Contexts => _stack;
    ITlbView ICpuView.Tlb => Tlb;
    public ExecContext? Top => _stack.Count == 0 ? null : _stack[^1];
    public bool Idle => _stack.Count == 0;
    public int PendingIrqs => _pendingIrqs.Count;

    internal Cpu(int id, Tlb tlb)
    {
        Id = id;
        Tlb = tlb;
    }

    internal ExecContext Push(KernelTask task, bool irq)
    {
        var ctx = new ExecContext(task, Id, irq, _stack.Count);
        _stack.Add(ctx);
        return ctx;
    }

    internal void Pop(ExecContext ctx)
    {
        if (_stack.Count == 0 || _stack[^1] != ctx) throw new Mm.ModelBugException($"cpu{Id}: context {ctx} is not on top");
        _stack.RemoveAt(_stack.Count - 1);
    }

    internal void QueueIrq(KernelTask handler) => _pendingIrqs.Enqueue(handler);
    internal bool TryDequeueIrq(out KernelTask handler) => _pendingIrqs.TryDequeue(out handler!);

    /// <summary>The context that took this CPU's last step (null before the first).</summary>
    public ExecContext? LastStepContext { get; private set; }
    /// <summary>What this CPU's last step did, with the action it performed.</summary>
    public StepStatus LastStep { get; private set; }

    /// <summary>Called after every step this CPU takes, with the context and what it did (for
    /// tracing and tests; it must only observe).</summary>
    public Action<ExecContext, StepStatus>? OnStep { get; set; }

    /// <summary>Records that <paramref name="ctx"/> took a step that did <paramref name="st"/>.</summary>
    internal StepStatus Took(ExecContext ctx, StepStatus st)
    {
        LastStepContext = ctx;
        LastStep = st;
        OnStep?.Invoke(ctx, st);
        return st;
    }
}

/// <summary>
/// Stepping a CPU towards a point of its task rather than by a number of steps (the repro
/// language's `step cpuN to ACTION` and `step cpuN until done`), so a schedule names the kernel
/// action it stops after and survives a change in how many steps a path takes.
/// </summary>
public static class CpuStepping
{
    /// <summary>Most steps one call takes (the same bound as a counted `step cpuN K`).</summary>
    public const int MaxSteps = 10_000;

    /// <summary>
    /// Advances <paramref name="cpu"/> one step at a time until the context on top when the call
    /// starts (the target) has taken a step that performs <paramref name="action"/> (when it is
    /// not null), the target has finished, or a step blocked; at most <paramref name="maxSteps"/>
    /// steps. A blocked step ends the call whichever context took it: only this CPU runs
    /// meanwhile, so nothing could release what it waits for. An interrupt handler delivered
    /// meanwhile runs above the target exactly as under counted stepping; its steps count
    /// towards the bound but never match <paramref name="action"/>, and when it returns the
    /// target goes on. Returns the number of steps taken (0: the CPU was idle).
    /// </summary>
    public static int StepUntil(Kernel k, int cpu, string? action, int maxSteps = MaxSteps)
    {
        var c = k.Cpus[cpu];
        var target = c.Top;
        if (target is null) return 0;
        int n = 0;
        while (n < maxSteps)
        {
            if (k.Sched.StepCpu(cpu) is not { } st) break;
            n++;
            if (st.IsBlocked || target.Task.Done) break;
            if (action is not null && c.LastStepContext == target && st.Action == action) break;
        }
        return n;
    }
}

/// <summary>A struct-page pointer held without a reference: the struct page's address, the
/// step at which it was taken, how it was taken, and the compound head it resolved to then.</summary>
public sealed record HeldPagePointer(ulong Page, long Step, string Source, ulong HeadThen);
