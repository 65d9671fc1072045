// CPUs, execution contexts, tasks, spinlocks and RCU.
//
// A task is a kernel code path split into steps: each step performs one kernel-visible action
// (read an entry, take a lock, clear an entry, flush, write a struct page, ...). Tasks are C#
// iterators; `yield return Progress` ends a step, `yield return Blocked` means the step could not
// proceed (a lock is held, a grace period has not ended) and will be retried. A scenario steps
// CPUs in any order, which is how interleavings are generated and shrunk.
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

public enum StepStatus { Progress, Blocked }

/// <summary>A lock of the kernel: init_mm.page_table_lock, mem_hotplug_lock, hugetlb_lock.</summary>
public sealed class KernelLock(string name)
{
    public string Name { get; } = name;
    public ExecContext? Holder { get; internal set; }
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
    /// <summary>Grace-period sequence at which the current outermost RCU reader section began.</summary>
    public long RcuReaderSince { get; internal set; } = -1;
    public List<KernelLock> Held { get; } = new();
    public KernelLock? WaitingFor { get; internal set; }
    /// <summary>Deadlocked: this context can never run again (its CPU is hung).</summary>
    public bool Hung { get; internal set; }

    public bool IrqsDisabled { get; internal set; }

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
    /// <summary>Irqs are masked while any context on this CPU has them disabled.</summary>
    public bool IrqsDisabled => _stack.Any(c => c.IrqsDisabled);

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
}
