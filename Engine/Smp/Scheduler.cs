// The scheduler of the model: CPUs with their context stacks, tasks started on them, interrupts
// raised on them, and the step function that advances one CPU by one kernel-visible action
// (kernel/sched/core.c and kernel/irq in the roles a scenario needs; see Tasks.cs for what a
// task and a step are).
//
// Departures from the kernel: no preemption and no run queues; a CPU runs the top context of its
// stack until the scenario steps another CPU. Interrupts are never masked: the one lock the
// kernel takes with spin_lock_irq here, hugetlb_lock, is never taken by an interrupt handler of
// the model, so masking would change no outcome; a mechanism that takes a lock in IRQ context
// must add local_irq_save to this scheduler first.
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine.Smp;

public sealed class Scheduler
{
    /// <summary>TLB entries per CPU before the oldest is evicted.</summary>
    public const int TlbCapacity = 64;

    private readonly Kernel _k;
    private readonly KernelLog _log;
    private readonly List<KernelTask> _liveTasks = new();
    private int _nextTaskId = 1;

    public Cpu[] Cpus { get; }
    /// <summary>The context currently executing a step, or null outside any task.</summary>
    public ExecContext? Current { get; private set; }
    public IReadOnlyList<KernelTask> LiveTasks => _liveTasks;

    internal Scheduler(Kernel k, KernelLog log, int cpus, IReadOnlyList<ulong> tlbLeafSizes)
    {
        _k = k;
        _log = log;
        Cpus = Enumerable.Range(0, cpus).Select(i => new Cpu(i, new Tlb(TlbCapacity, tlbLeafSizes))).ToArray();
    }

    /// <summary>Starts <paramref name="task"/> on an idle CPU. Returns false if the CPU is busy.</summary>
    public bool StartTask(int cpu, KernelTask task)
    {
        var c = Cpus[cpu];
        if (!c.Idle) return false;
        task.Id = _nextTaskId++;
        var ctx = c.Push(task, irq: false);
        ctx.Body = task.Run(_k, ctx).GetEnumerator();
        _liveTasks.Add(task);
        return true;
    }

    /// <summary>Raises an interrupt on <paramref name="cpu"/>; the handler runs above whatever
    /// runs there, at the CPU's next step, unless interrupts are disabled (then it waits).</summary>
    public void RaiseIrq(int cpu, KernelTask handler)
    {
        handler.Id = _nextTaskId++;
        _liveTasks.Add(handler);
        Cpus[cpu].QueueIrq(handler);
    }

    /// <summary>Advances one step on <paramref name="cpu"/>: delivers a pending interrupt if
    /// allowed, else steps the top context. Returns what happened (null: the CPU is idle), with
    /// the action the step performed (also on <see cref="Cpu.LastStep"/>); the step that ends a
    /// task is named <see cref="StepStatus.ReturnAction"/>.</summary>
    public StepStatus? StepCpu(int cpu)
    {
        var c = Cpus[cpu];
        if (c.PendingIrqs > 0 && c.TryDequeueIrq(out var handler))
        {
            var hctx = c.Push(handler, irq: true);
            hctx.Body = handler.Run(_k, hctx).GetEnumerator();
        }
        var top = c.Top;
        if (top is null) return null;
        if (top.Hung) return c.Took(top, StepStatus.Blocked);
        Current = top;
        try
        {
            if (top.Body!.MoveNext()) return c.Took(top, top.Body.Current);
            FinishContext(c, top);
            return c.Took(top, StepStatus.Return);
        }
        finally
        {
            Current = null;
        }
    }

    /// <summary>Runs the task on top of <paramref name="cpu"/> until it finishes or blocks.
    /// Returns true if it finished. Bounded: a task that makes progress forever is a model bug.</summary>
    public bool RunToCompletionOrBlock(int cpu, KernelTask task, int maxSteps = 1_000_000)
    {
        for (int i = 0; i < maxSteps; i++)
        {
            if (task.Done) return true;
            var st = StepCpu(cpu);
            if (st is null) return task.Done;
            if (st == StepStatus.Blocked) { _log.Note("task.blocked"); return false; }
        }
        throw new ModelBugException($"task {task.Name} on cpu{cpu} did not finish in {maxSteps} steps");
    }

    /// <summary>Told of every context that ends, so RCU closes its read-side section.</summary>
    internal Action<ExecContext>? RcuAbandon { get; set; }

    private void FinishContext(Cpu c, ExecContext ctx)
    {
        if (ctx.Held.Count > 0)
            _log.RecordFault(FaultKind.KernelBug, ctx, 0, $"{ctx.Task.Name} returned holding {string.Join(", ", ctx.Held)}");
        if (ctx.RcuDepth > 0)
            _log.RecordFault(FaultKind.KernelBug, ctx, 0, $"{ctx.Task.Name} returned inside an RCU read-side section");
        foreach (var l in ctx.Held) l.Holder = null;
        ctx.Held.Clear();
        if (RcuAbandon is { } abandon) abandon(ctx);
        ctx.RcuDepth = 0;
        ctx.Task.Done = true;
        _liveTasks.Remove(ctx.Task);
        c.Pop(ctx);
    }
}
