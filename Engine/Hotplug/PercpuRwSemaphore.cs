// kernel/locking/percpu-rwsem.c: the per-CPU reader-writer semaphore mem_hotplug_lock is
// (mm/memory_hotplug.c: get_online_mems / put_online_mems take it for read, mem_hotplug_begin /
// mem_hotplug_done for write). Readers are cheap and never wait for each other; a writer first
// makes new readers take the slow path and wait (rcu_sync_enter), then waits until every reader
// that got in before has left (percpu_rwsem_wait on the reader count), then owns the semaphore.
//
// Departures from the kernel: the per-CPU counters are one list of reader contexts (the sum is
// what the writer waits on); readers and writers sleep as Blocked steps that are retried; no
// lockdep (a reader that takes it twice is a model bug here).
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Hotplug;

public sealed class PercpuRwSemaphore(string name)
{
    private readonly List<ExecContext> _readers = new();

    public string Name { get; } = name;
    /// <summary>Contexts holding it for read.</summary>
    public IReadOnlyList<ExecContext> Readers => _readers;
    /// <summary>The context holding it for write, or null.</summary>
    public ExecContext? Writer { get; private set; }
    /// <summary>A writer that has closed the fast path and waits for readers to drain.</summary>
    public ExecContext? WriterPending { get; private set; }

    /// <summary>percpu_down_read: waits while a writer holds or is acquiring the semaphore.</summary>
    [Kernel("kernel/locking/percpu-rwsem.c", "percpu_down_read")]
    public IEnumerable<StepStatus> PercpuDownRead(ExecContext ctx)
    {
        if (_readers.Contains(ctx)) throw new ModelBugException($"{ctx} takes {Name} for read twice");
        while (Writer is not null || WriterPending is not null) yield return StepStatus.Blocked;
        _readers.Add(ctx);
        yield return StepStatus.After($"percpu_down_read({Name})");
    }

    /// <summary>percpu_up_read.</summary>
    [Kernel("kernel/locking/percpu-rwsem.c", "percpu_up_read")]
    public void PercpuUpRead(ExecContext ctx)
    {
        if (!_readers.Remove(ctx)) throw new ModelBugException($"{ctx} releases {Name} for read without holding it");
    }

    /// <summary>percpu_down_write: one writer at a time; then new readers are held off and the
    /// writer waits until the readers already inside have left.</summary>
    [Kernel("kernel/locking/percpu-rwsem.c", "percpu_down_write")]
    public IEnumerable<StepStatus> PercpuDownWrite(ExecContext ctx)
    {
        if (Writer == ctx || WriterPending == ctx || _readers.Contains(ctx)) throw new ModelBugException($"{ctx} takes {Name} for write while holding it");
        while (Writer is not null || (WriterPending is not null && WriterPending != ctx)) yield return StepStatus.Blocked;
        WriterPending = ctx; // rcu_sync_enter: readers now take the slow path
        while (_readers.Count > 0) yield return StepStatus.Blocked;
        WriterPending = null;
        Writer = ctx;
        yield return StepStatus.After($"percpu_down_write({Name})");
    }

    /// <summary>percpu_up_write.</summary>
    [Kernel("kernel/locking/percpu-rwsem.c", "percpu_up_write")]
    public void PercpuUpWrite(ExecContext ctx)
    {
        if (Writer != ctx) throw new ModelBugException($"{ctx} releases {Name} for write; the writer is {Writer?.ToString() ?? "nobody"}");
        Writer = null;
    }
}
