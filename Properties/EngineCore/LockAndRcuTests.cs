// Spinlocks with deadlock detection (S001: the vmemmap fault handler spinning on
// init_mm.page_table_lock from IRQ context), and synchronize_rcu waiting for earlier readers only.
using PropertySuite.Engine;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Properties.EngineCore;

[Trait("Category", "engine")]
public class LockAndRcuTests
{
    /// <summary>Takes the locks in order, holds them for <paramref name="hold"/> steps, releases them.</summary>
    private static LambdaTask Locker(string name, KernelLock[] locks, int hold = 2) =>
        new(name, (k, ctx) => LockBody(k, ctx, locks, hold));

    private static IEnumerable<StepStatus> LockBody(Kernel k, ExecContext ctx, KernelLock[] locks, int hold)
    {
        foreach (var l in locks)
            foreach (var s in k.Locks.SpinLock(ctx, l)) yield return s;
        for (int i = 0; i < hold; i++) yield return StepStatus.Progress;
        foreach (var l in locks.Reverse()) k.Locks.SpinUnlock(ctx, l);
        yield return StepStatus.Progress;
    }

    [Fact]
    public void AnIrqHandlerSpinningOnALockItsInterruptedContextHoldsIsADeadlock()
    {
        var k = Machines.Boot();
        var bbm = Locker("vmemmap_remap (holds page_table_lock)", [k.InitMm.PageTableLock]);
        Assert.True(k.Sched.StartTask(0, bbm));
        Assert.Equal(StepStatus.Progress, k.Sched.StepCpu(0));                  // lock taken
        k.Sched.RaiseIrq(0, Locker("vmemmap fault handler", [k.InitMm.PageTableLock]));

        Assert.Equal(StepStatus.Blocked, k.Sched.StepCpu(0));                   // handler spins

        var f = Assert.Single(k.Faults);
        Assert.Equal(FaultKind.Deadlock, f.Kind);
        Assert.Contains("init_mm.page_table_lock", f.Detail);
        Assert.Contains("IRQ context", f.Detail);
        Assert.Equal(StepStatus.Blocked, k.Sched.StepCpu(0));                   // forever, and reported once
        Assert.Single(k.Faults);
    }

    [Fact]
    public void AnIrqOnAnotherCpuWaitingForTheSameLockIsNotADeadlock()
    {
        var k = Machines.Boot();
        var holder = Locker("holder", [k.InitMm.PageTableLock]);
        k.Sched.StartTask(0, holder);
        k.Sched.StepCpu(0);
        var handler = Locker("handler", [k.InitMm.PageTableLock]);
        k.Sched.RaiseIrq(1, handler);
        Assert.Equal(StepStatus.Blocked, k.Sched.StepCpu(1));
        Assert.Empty(k.Faults);
        while (!holder.Done) k.Sched.StepCpu(0);
        Assert.True(k.Sched.RunToCompletionOrBlock(1, handler));
        Assert.Empty(k.Faults);
        Assert.Null(k.InitMm.PageTableLock.Holder);
    }

    [Fact]
    public void AbbaAcrossTwoCpusIsADeadlock()
    {
        var k = Machines.Boot();
        k.Sched.StartTask(0, Locker("t0", [k.InitMm.PageTableLock, k.Hugetlb.HugetlbLock]));
        k.Sched.StartTask(1, Locker("t1", [k.Hugetlb.HugetlbLock, k.InitMm.PageTableLock]));
        Assert.Equal(StepStatus.Progress, k.Sched.StepCpu(0)); // t0 holds page_table_lock
        Assert.Equal(StepStatus.Progress, k.Sched.StepCpu(1)); // t1 holds hugetlb_lock
        Assert.Equal(StepStatus.Blocked, k.Sched.StepCpu(0));  // t0 waits for hugetlb_lock: just contention
        Assert.Empty(k.Faults);
        Assert.Equal(StepStatus.Blocked, k.Sched.StepCpu(1));  // t1 waits for page_table_lock: a cycle

        var f = Assert.Single(k.Faults);
        Assert.Equal(FaultKind.Deadlock, f.Kind);
        Assert.Contains("hugetlb_lock", f.Detail);
        Assert.Contains("init_mm.page_table_lock", f.Detail);
    }

    [Fact]
    public void AContendedLockIsNotADeadlockAndIsHandedOverOnRelease()
    {
        var k = Machines.Boot();
        var t0 = Locker("t0", [k.MemHotplugLock], hold: 3);
        var t1 = Locker("t1", [k.MemHotplugLock], hold: 1);
        k.Sched.StartTask(0, t0);
        k.Sched.StartTask(1, t1);
        k.Sched.StepCpu(0);
        for (int i = 0; i < 3; i++) Assert.Equal(StepStatus.Blocked, k.Sched.StepCpu(1));
        while (!t0.Done) k.Sched.StepCpu(0);
        Assert.True(k.Sched.RunToCompletionOrBlock(1, t1));
        Assert.Empty(k.Faults);
        Assert.Empty(k.Sched.LiveTasks);
    }

    [Fact]
    public void ReturningWithALockHeldIsAKernelBugAndUnlockingSomeoneElsesLockAModelBug()
    {
        var k = Machines.Boot();
        var leaky = new LambdaTask("leaky", (kk, ctx) => Leak(kk, ctx));
        k.Sched.StartTask(0, leaky);
        k.Sched.RunToCompletionOrBlock(0, leaky);
        var f = Assert.Single(k.Faults);
        Assert.Equal(FaultKind.KernelBug, f.Kind);
        Assert.Contains("returned holding hugetlb_lock", f.Detail);
        Assert.Null(k.Hugetlb.HugetlbLock.Holder);

        k.Sched.StartTask(0, Locker("owner", [k.Hugetlb.HugetlbLock]));
        k.Sched.StepCpu(0);
        var ctx1 = PageTableTests.StartIdleTask(k, 1);
        Assert.Throws<ModelBugException>(() => k.Locks.SpinUnlock(ctx1, k.Hugetlb.HugetlbLock));
    }

    private static IEnumerable<StepStatus> Leak(Kernel k, ExecContext ctx)
    {
        foreach (var s in k.Locks.SpinLock(ctx, k.Hugetlb.HugetlbLock)) yield return s;
    }

    // ---- RCU ----

    private static LambdaTask Reader(string name, int steps) => new(name, (k, ctx) => ReaderBody(k, ctx, steps));

    private static IEnumerable<StepStatus> ReaderBody(Kernel k, ExecContext ctx, int steps)
    {
        k.Rcu.RcuReadLock(ctx);
        yield return StepStatus.Progress;
        for (int i = 0; i < steps; i++) yield return StepStatus.Progress;
        k.Rcu.RcuReadUnlock(ctx);
        yield return StepStatus.Progress;
    }

    [Fact]
    public void SynchronizeRcuWaitsForEarlierReadersOnly()
    {
        var k = Machines.Boot("x86_64-4k-l4", "256M", cpus: 3);
        var early = Reader("early reader", 3);
        k.Sched.StartTask(0, early);
        k.Sched.StepCpu(0);                                               // inside its read-side section
        var sync = new LambdaTask("synchronize_rcu", (kk, ctx) => kk.Rcu.SynchronizeRcu(ctx));
        k.Sched.StartTask(1, sync);
        Assert.Equal(StepStatus.Progress, k.Sched.StepCpu(1));            // grace period started
        var late = Reader("late reader", 100);
        k.Sched.StartTask(2, late);
        k.Sched.StepCpu(2);                                               // entered after the GP began

        Assert.Equal(StepStatus.Blocked, k.Sched.StepCpu(1));
        while (!early.Done) k.Sched.StepCpu(0);
        Assert.True(k.Sched.RunToCompletionOrBlock(1, sync));             // late reader still inside

        Assert.False(late.Done);
        var (seq, _, still) = Assert.Single(k.Rcu.Completed);
        Assert.Equal(1, seq);
        Assert.Empty(still);
    }

    [Fact]
    public void AReaderThatLeavesAndReentersDuringTheGracePeriodNoLongerHoldsItUp()
    {
        var k = Machines.Boot();
        var ctx0 = PageTableTests.StartIdleTask(k, 0);
        k.Rcu.RcuReadLock(ctx0);
        var sync = new LambdaTask("synchronize_rcu", (kk, ctx) => kk.Rcu.SynchronizeRcu(ctx));
        k.Sched.StartTask(1, sync);
        k.Sched.StepCpu(1);
        Assert.Equal(StepStatus.Blocked, k.Sched.StepCpu(1));
        k.Rcu.RcuReadUnlock(ctx0);
        k.Rcu.RcuReadLock(ctx0);                                        // a new section, after the GP began
        Assert.True(k.Sched.RunToCompletionOrBlock(1, sync));
        k.Rcu.RcuReadUnlock(ctx0);
        Assert.Throws<ModelBugException>(() => k.Rcu.RcuReadUnlock(ctx0));
    }

    [Fact]
    public void NestedReadSectionsEndAtTheOutermostUnlock()
    {
        var k = Machines.Boot();
        var ctx0 = PageTableTests.StartIdleTask(k, 0);
        k.Rcu.RcuReadLock(ctx0);
        k.Rcu.RcuReadLock(ctx0);
        var sync = new LambdaTask("synchronize_rcu", (kk, ctx) => kk.Rcu.SynchronizeRcu(ctx));
        k.Sched.StartTask(1, sync);
        k.Sched.StepCpu(1);
        k.Rcu.RcuReadUnlock(ctx0);
        Assert.Equal(StepStatus.Blocked, k.Sched.StepCpu(1));             // still inside the outer section
        k.Rcu.RcuReadUnlock(ctx0);
        Assert.True(k.Sched.RunToCompletionOrBlock(1, sync));
    }
}
