// The CPU schedule: which CPU advances when. It starts an operation from another enabled family
// as a task on an idle CPU (`cpuN: start ...`), advances started tasks one kernel-visible step
// at a time (`step cpuN [n]`), and raises interrupts whose handlers come from the other families
// (`irq cpuN op`). Because the schedule is part of the scenario, FsCheck explores
// interleavings and the shrinker simplifies them (fewer steps, fewer CPUs, no `start`).
//
// Which CPUs are busy is read from the generation engine (GenState.BusyCpus): a CPU is busy
// while a started task, a plain operation that blocked or an interrupt handler runs on it, and
// idle as soon as the engine has finished them; steps go to busy CPUs only.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;

namespace PropertySuite.Generators.Families;

public sealed class ScheduleFamily : IOpFamily
{
    public const string FamilyName = "sched";

    public string Name => FamilyName;

    public IReadOnlyList<string> Kinds { get; } = ["start", "step", "irq"];

    public bool AppliesTo(ArchConfig arch, NamedVariant variant) => true;

    /// <summary>Busy CPUs need steps to make progress, so the schedule is drawn more often then.</summary>
    public int Weight(GenState s) => s.BusyCpus.Count > 0 ? 12 : 5;

    public Op? Next(GenState s, Prng rng)
    {
        var busy = s.BusyCpus;
        int idle = s.IdleCpu(rng);
        var weights = new[]
        {
            s.Enabled(this, "start") && idle >= 0 && s.DrawTaskOp is not null ? 4 : 0,
            s.Enabled(this, "step") && busy.Count > 0 ? 8 : 0,
            // An interrupt matters most inside a window: a lock held, or a busy CPU's change not
            // yet flushed (what the interrupted CPU's TLB and MMU then see).
            s.Enabled(this, "irq") && s.DrawIrqHandler is not null ? (LockHolders(s).Count > 0 ? 10 : busy.Count > 0 && s.Engine.Tlb.PendingFlushes.Count > 0 ? 6 : 2) : 0,
        };
        return rng.PickIndex(weights) switch
        {
            0 => Start(s, rng, idle),
            1 => Step(rng, busy),
            2 => Irq(s, rng),
            _ => null,
        };
    }

    private static Op? Start(GenState s, Prng rng, int cpu)
    {
        var op = s.DrawTaskOp!(rng);
        if (op is null || op is StepOp or IrqOp) return null;
        return op with { Cpu = cpu, Start = true };
    }

    /// <summary>A step of a busy CPU (one whose task the engine has not finished).</summary>
    private static Op Step(Prng rng, IReadOnlyList<int> busy)
    {
        int cpu = rng.Pick(busy);
        int count = rng.Chance(70) ? 1 : (int)rng.Range(2, 4);
        return new StepOp(count) { Cpu = cpu };
    }

    private static Op? Irq(GenState s, Prng rng)
    {
        var handler = s.DrawIrqHandler!(rng);
        if (handler is null || handler is StepOp or IrqOp || handler.Start || handler.Bind is not null) return null;
        // Interrupting a CPU inside a critical section (holding a lock, seen in the generation
        // engine), or at least one that runs a task, is what exposes IRQ-context hazards.
        var holders = LockHolders(s);
        var busy = s.BusyCpus;
        int cpu = holders.Count > 0 && rng.Chance(80) ? rng.Pick(holders)
            : busy.Count > 0 && rng.Chance(70) ? rng.Pick(busy) : rng.Next(s.Machine.Cpus);
        return new IrqOp(handler with { Cpu = 0 }) { Cpu = cpu };
    }

    /// <summary>CPUs whose running context holds a lock, according to the generation engine.</summary>
    private static List<int> LockHolders(GenState s) =>
        s.Engine.Cpus.Where(c => c.Top is { Held.Count: > 0 }).Select(c => c.Id).ToList();
}
