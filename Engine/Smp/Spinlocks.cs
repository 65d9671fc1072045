// spin_lock / spin_unlock (kernel/locking/spinlock.c) with the part of lockdep the model needs:
// a wait that can never end — the holder is below the waiter on the same CPU (an interrupt
// handler spinning on a lock its own CPU's task holds), or a waits-for cycle across CPUs — is
// recorded once as a Deadlock fault, and the waiter stays blocked, as the CPU would.
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine.Smp;

public sealed class Spinlocks(Cpu[] cpus, KernelLog log)
{
    /// <summary>spin_lock: one step to take the lock; blocks while it is held.</summary>
    public IEnumerable<StepStatus> SpinLock(ExecContext ctx, KernelLock l) => SpinLock(ctx, l, stepWhenTaken: true);

    /// <summary>spin_lock; with <paramref name="stepWhenTaken"/> false, taking a free lock is
    /// part of the caller's next action (one step: lock and store), which keeps a lock and the
    /// entry change it guards indivisible for the other CPUs' observers.</summary>
    public IEnumerable<StepStatus> SpinLock(ExecContext ctx, KernelLock l, bool stepWhenTaken)
    {
        bool reported = false;
        while (l.Holder is not null)
        {
            ctx.WaitingFor = l;
            if (!reported && IsDeadlocked(ctx, out string cycle))
            {
                log.RecordFault(FaultKind.Deadlock, ctx, 0, cycle);
                reported = true;
            }
            yield return StepStatus.Blocked;
        }
        ctx.WaitingFor = null;
        l.Holder = ctx;
        ctx.Held.Add(l);
        if (stepWhenTaken) yield return l.Taken;
    }

    /// <summary>spin_unlock.</summary>
    public void SpinUnlock(ExecContext ctx, KernelLock l)
    {
        if (l.Holder != ctx) throw new ModelBugException($"{ctx} unlocks {l} held by {l.Holder?.ToString() ?? "nobody"}");
        l.Holder = null;
        ctx.Held.Remove(l);
    }

    private bool IsDeadlocked(ExecContext waiter, out string evidence)
    {
        var chain = new List<string>();
        var seen = new HashSet<ExecContext>();
        ExecContext? cur = waiter;
        while (cur is not null && cur.WaitingFor is { } lk && lk.Holder is { } holder)
        {
            chain.Add($"{cur} waits for {lk.Name} held by {holder}");
            if (holder == waiter || !seen.Add(cur)) { evidence = string.Join("; ", chain); return true; }
            // The holder is below the waiter on the same CPU: it cannot run until the waiter returns.
            var cpu = cpus[holder.CpuId];
            if (holder.CpuId == cur.CpuId && holder.Depth < cur.Depth)
            {
                evidence = string.Join("; ", chain) + $" — interrupted on the same CPU{(cur.InIrq ? " (IRQ context)" : "")}";
                return true;
            }
            // Or the holder is itself interrupted by a context that waits (forever) above it.
            if (cpu.Top != holder && cpu.Top is { } above && above.WaitingFor is not null && above != cur)
            {
                cur = above;
                continue;
            }
            cur = holder;
        }
        evidence = "";
        return false;
    }
}
