// Tree RCU in its non-preemptible flavour (kernel/rcu/tree.c, include/linux/rcupdate.h): a
// reader is a context between rcu_read_lock and rcu_read_unlock; synchronize_rcu blocks until
// every reader that was inside when it began has left.
//
// Each completed grace period is kept with the readers that were inside when it began and were
// still inside when it ended (none, in a correct kernel), so that an invariant can judge it.
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine.Smp;

public sealed class Rcu
{
    private readonly Cpu[] _cpus;
    private readonly bool _brokenNoWait;

    internal Rcu(Cpu[] cpus, bool brokenNoWait)
    {
        _cpus = cpus;
        _brokenNoWait = brokenNoWait;
    }

    /// <summary>Number of grace periods started so far.</summary>
    public long GpSeq { get; private set; }

    /// <summary>Every completed grace period: when it started and which readers that began
    /// before it were still inside their read-side section when it ended (must be none).</summary>
    public List<(long Seq, string Who, IReadOnlyList<string> ReadersStillInside)> Completed { get; } = new();

    /// <summary>rcu_read_lock.</summary>
    public void RcuReadLock(ExecContext ctx)
    {
        if (ctx.RcuDepth++ == 0) ctx.RcuReaderSince = GpSeq;
    }

    /// <summary>rcu_read_unlock.</summary>
    public void RcuReadUnlock(ExecContext ctx)
    {
        if (ctx.RcuDepth <= 0) throw new ModelBugException($"{ctx}: rcu_read_unlock without rcu_read_lock");
        if (--ctx.RcuDepth == 0) ctx.RcuReaderSince = -1;
    }

    /// <summary>Contexts currently inside an RCU read-side section.</summary>
    public IEnumerable<ExecContext> Readers() => _cpus.SelectMany(c => c.Contexts).Where(x => x.RcuDepth > 0);

    /// <summary>synchronize_rcu: blocks until every reader that was inside when it began has left.</summary>
    public IEnumerable<StepStatus> SynchronizeRcu(ExecContext ctx)
    {
        long seq = ++GpSeq;
        var before = Readers().Where(r => r != ctx && r.RcuReaderSince < seq).ToList();
        yield return StepStatus.After("synchronize_rcu");
        if (!_brokenNoWait)
        {
            while (before.Any(r => r.RcuDepth > 0 && r.RcuReaderSince < seq))
                yield return StepStatus.Blocked;
        }
        var still = before.Where(r => r.RcuDepth > 0 && r.RcuReaderSince < seq).Select(r => r.ToString()).ToList();
        Completed.Add((seq, ctx.ToString(), still));
    }
}
