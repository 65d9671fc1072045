// Tree RCU in its non-preemptible flavour (kernel/rcu/tree.c, include/linux/rcupdate.h): a
// reader is a context between rcu_read_lock and rcu_read_unlock; synchronize_rcu blocks until
// every reader that was inside when it began has left.
//
// Two records, kept apart on purpose:
// - Completed: each grace period with the readers that synchronize_rcu itself waited for and
//   found still inside at its end (the implementation's own view, shown in traces).
// - The history: every read-side section (outermost rcu_read_lock to rcu_read_unlock) and every
//   grace period (synchronize_rcu's start to its return), each end stamped on one clock of RCU
//   events. The invariant judges the history alone, so a synchronize_rcu that builds the wrong
//   list of readers to wait for is caught as surely as one that does not wait.
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine.Smp;

/// <summary>One outermost read-side section of <see cref="Reader"/>, from clock tick
/// <see cref="Begin"/> to <see cref="EndTick"/> (null while still inside).</summary>
public sealed class RcuReadSection(string reader, long begin)
{
    public string Reader { get; } = reader;
    public long Begin { get; } = begin;
    public long? EndTick { get; internal set; }
}

/// <summary>One grace period: synchronize_rcu by <paramref name="Who"/> from clock tick Begin to
/// End, returning at scenario step <paramref name="Step"/>.</summary>
public sealed record GracePeriod(long Seq, string Who, long Begin, long End, long Step);

public sealed class Rcu
{
    private long _clock;
    private readonly List<RcuReadSection> _sections = new();
    private readonly List<GracePeriod> _gracePeriods = new();
    private readonly Func<long> _step;

    /// <summary>Every read-side section so far, in the order they began.</summary>
    public IReadOnlyList<RcuReadSection> ReadSections => _sections;

    /// <summary>Every grace period that has ended, in the order they ended.</summary>
    public IReadOnlyList<GracePeriod> GracePeriodHistory => _gracePeriods;

    private readonly Cpu[] _cpus;
    private readonly bool _brokenNoWait;

    private readonly bool _brokenLocalOnly;

    internal Rcu(Cpu[] cpus, Config.Breakage broken, Func<long> step)
    {
        _cpus = cpus;
        _brokenNoWait = broken.SynchronizeRcuNoWait;
        _brokenLocalOnly = broken.SynchronizeRcuWaitsForLocalReadersOnly;
        _step = step;
    }

    /// <summary>Number of grace periods started so far.</summary>
    public long GpSeq { get; private set; }

    /// <summary>Every completed grace period: when it started and which readers that began
    /// before it were still inside their read-side section when it ended (must be none).</summary>
    public List<(long Seq, string Who, IReadOnlyList<string> ReadersStillInside)> Completed { get; } = new();

    /// <summary>rcu_read_lock.</summary>
    public void RcuReadLock(ExecContext ctx)
    {
        if (ctx.RcuDepth++ != 0) return;
        ctx.RcuReaderGpSeq = GpSeq;
        ctx.RcuSection = new RcuReadSection(ctx.ToString(), ++_clock);
        _sections.Add(ctx.RcuSection);
    }

    /// <summary>rcu_read_unlock.</summary>
    public void RcuReadUnlock(ExecContext ctx)
    {
        if (ctx.RcuDepth <= 0) throw new ModelBugException($"{ctx}: rcu_read_unlock without rcu_read_lock");
        if (--ctx.RcuDepth == 0) EndSection(ctx);
    }

    /// <summary>A context that ends (a task returning) leaves its read-side section, whatever its
    /// depth: the scheduler reports the unbalanced lock as a kernel bug.</summary>
    internal void Abandon(ExecContext ctx)
    {
        if (ctx.RcuDepth == 0) return;
        ctx.RcuDepth = 0;
        EndSection(ctx);
    }

    private void EndSection(ExecContext ctx)
    {
        ctx.RcuReaderGpSeq = null;
        if (ctx.RcuSection is { } section) section.EndTick = ++_clock;
        ctx.RcuSection = null;
    }

    /// <summary>Contexts currently inside an RCU read-side section.</summary>
    public IEnumerable<ExecContext> Readers() => _cpus.SelectMany(c => c.Contexts).Where(x => x.RcuDepth > 0);

    /// <summary>synchronize_rcu: blocks until every reader that was inside when it began has left.</summary>
    public IEnumerable<StepStatus> SynchronizeRcu(ExecContext ctx)
    {
        long seq = ++GpSeq;
        long begin = ++_clock;
        var before = Readers().Where(r => r != ctx && r.RcuReaderGpSeq < seq && (!_brokenLocalOnly || r.CpuId == ctx.CpuId)).ToList();
        yield return StepStatus.After("synchronize_rcu");
        if (!_brokenNoWait)
        {
            while (before.Any(r => r.RcuDepth > 0 && r.RcuReaderGpSeq < seq))
                yield return StepStatus.Blocked;
        }
        var still = before.Where(r => r.RcuDepth > 0 && r.RcuReaderGpSeq < seq).Select(r => r.ToString()).ToList();
        Completed.Add((seq, ctx.ToString(), still));
        _gracePeriods.Add(new GracePeriod(seq, ctx.ToString(), begin, ++_clock, _step()));
    }
}
