// How operations are generated: one family per mechanism. A family proposes the next operation
// from the generation state (live handles, and the engine the scenario so far has run on), so
// that generated steps are mostly meaningful; whatever it proposes must still be total (a no-op
// when invalid at run time). Each family draws from its own random stream (see
// ScenarioGenerator), so a family's draws never shift another's.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Engine.Smp;
using PropertySuite.Invariants;

namespace PropertySuite.Generators;

/// <summary>One mechanism's operation generator.</summary>
public interface IOpFamily
{
    /// <summary>Swarm key: each scenario enables a random subset of families by name.</summary>
    string Name { get; }

    /// <summary>Whether the family applies to this configuration and variant at all.</summary>
    bool AppliesTo(ArchConfig arch, NamedVariant variant);

    /// <summary>Relative weight of drawing from this family now (0: nothing sensible to do).</summary>
    int Weight(GenState s);

    /// <summary>The next operation, or null if there is nothing to propose. <paramref name="rng"/>
    /// is the family's own stream (every draw of the family comes from it).</summary>
    Op? Next(GenState s, Prng rng);

    /// <summary>Operation kinds (verbs) this family can propose. The generator enables a random
    /// subset of them per scenario (swarm testing, Groce et al. 2012); a family asks
    /// <see cref="GenState.Enabled"/> before proposing a kind. Empty: no kind-level swarm.</summary>
    IReadOnlyList<string> Kinds => [];

    /// <summary>An operation worth starting as a task (`cpuN: start op`) whose steps the schedule
    /// then interleaves with other CPUs: prefer multi-step paths (those that take locks, wait
    /// for grace periods or change page tables in several steps). Default: <see cref="Next"/>.</summary>
    Op? NextTask(GenState s, Prng rng) => Next(s, rng);

    /// <summary>Whether the family is a plan for one narrow window of another mechanism (it
    /// takes over the scenario while its plan runs). In a search for a buggy variant such a
    /// family takes part only when the variant's target focuses it: the search is for that
    /// variant's mechanism, and a plan for another window displaces the states it needs. Runs
    /// of drawn variants enable it by the usual coin.</summary>
    bool WindowPlan => false;

    /// <summary>An operation that may run as an interrupt handler (`irq cpuN op`): plain (no
    /// cpu, start or handle) and legal in IRQ context (no sleeping, no lock taken without
    /// disabling interrupts in the kernel). Null: this family has none.</summary>
    Op? NextIrqHandler(GenState s, Prng rng) => null;
}

/// <summary>A task an operation of the scenario left running on a CPU (a `start`ed one, or a
/// plain one that blocked), as the engine holds it.</summary>
/// <param name="OpIndex">0-based index of the operation in <see cref="GenState.Ops"/>.</param>
public sealed record StartedTask(int OpIndex, Op Op, KernelTask Task)
{
    /// <summary>Whether the engine has finished the task.</summary>
    public bool Done => Task.Done;
}

/// <summary>The scenario built so far, and the engine it has run on. Generation is one pass
/// (as Hypothesis's stateful testing is): each operation is applied to the engine and every
/// invariant checked as soon as it is drawn, so families see real state (which CPUs are idle,
/// which tasks are done, what a handle's page is) and the scenario ends at its first
/// violation. What families still track symbolically are the handles they bind and consume.</summary>
public sealed class GenState
{
    private readonly Dictionary<char, int> _nextHandle = new();
    private readonly Dictionary<char, List<string>> _live = new();
    private readonly List<StartedTask> _tasks = new();
    private readonly ScenarioExecution _run;

    /// <summary>Boots the engine of the scenario and checks it (a violation at boot ends the
    /// scenario before its first operation).</summary>
    /// <param name="invariants">What is checked after boot and after every operation (default:
    /// every registered invariant).</param>
    public GenState(ArchConfig arch, MachineConfig machine, NamedVariant variant, IReadOnlyList<IInvariant>? invariants = null)
    {
        Arch = arch;
        Machine = machine;
        Variant = variant;
        _run = new ScenarioExecution(Kernel.Boot(arch, machine, variant.Variant), invariants);
    }

    public ArchConfig Arch { get; }
    public MachineConfig Machine { get; }
    public NamedVariant Variant { get; }
    /// <summary>Operations generated so far (each already applied and checked).</summary>
    public List<Op> Ops { get; } = new();

    /// <summary>The operation kinds enabled in this scenario (swarm testing), as "family/kind";
    /// null: every kind of every family is enabled.</summary>
    public IReadOnlySet<string>? EnabledKinds { get; set; }

    /// <summary>Whether <paramref name="family"/> may propose <paramref name="kind"/> in this scenario.</summary>
    public bool Enabled(IOpFamily family, string kind) => EnabledKinds is null || EnabledKinds.Contains(family.Name + "/" + kind);

    /// <summary>Draws a plain operation from the scenario's other enabled families, for the
    /// schedule family to start as a task (set by the scenario builder; null outside it).</summary>
    public Func<Prng, Op?>? DrawTaskOp { get; set; }

    /// <summary>Draws an interrupt handler from the scenario's other enabled families (see
    /// <see cref="IOpFamily.NextIrqHandler"/>); set by the scenario builder.</summary>
    public Func<Prng, Op?>? DrawIrqHandler { get; set; }

    /// <summary>The engine the operations so far have run on. Families only read it.</summary>
    public Kernel Engine => _run.Kernel;

    /// <summary>The handles bound so far in <see cref="Engine"/>.</summary>
    public RunContext Handles => _run.Handles;

    /// <summary>Whether the scenario has violated an invariant (generation then stops).</summary>
    public bool Failed => _run.Failed;

    /// <summary>The run of <see cref="Ops"/>: what a fresh ScenarioRunner.Run of the
    /// scenario gives.</summary>
    public RunResult Outcome => _run.Outcome;

    /// <summary>Tasks operations left on a CPU, in the order they were started; those still
    /// running have <see cref="StartedTask.Done"/> false.</summary>
    public IReadOnlyList<StartedTask> Tasks => _tasks;

    /// <summary>Appends <paramref name="op"/> to the scenario, applies it and checks every
    /// invariant. Returns false when the scenario now fails (nothing more may be appended).</summary>
    /// <exception cref="InvalidOperationException">The scenario has already failed.</exception>
    public bool Append(Op op)
    {
        ArgumentNullException.ThrowIfNull(op);
        if (_run.Failed) throw new InvalidOperationException("the scenario already violated an invariant; nothing may follow");
        bool wasIdle = op is not (StepOp or IrqOp) && op.Cpu >= 0 && op.Cpu < Machine.Cpus && Engine.Cpus[op.Cpu].Idle;
        Ops.Add(op);
        bool ok = _run.Step(op);
        if (ok && wasIdle && Engine.Cpus[op.Cpu].Contexts is [var bottom, ..])
            _tasks.Add(new StartedTask(Ops.Count - 1, op, bottom.Task));
        return ok;
    }

    /// <summary>CPUs running something (a task, a blocked operation, an interrupt handler).</summary>
    public IReadOnlyList<int> BusyCpus => [.. Engine.Cpus.Where(c => !c.Idle).Select(c => c.Id)];

    /// <summary>CPUs running nothing, in order.</summary>
    public IReadOnlyList<int> IdleCpus => [.. Engine.Cpus.Where(c => c.Idle).Select(c => c.Id)];

    /// <summary>Whether some context is inside an RCU read-side critical section.</summary>
    public bool RcuReaderInside => Engine.Cpus.Any(c => c.Contexts.Any(x => x.RcuDepth > 0));

    /// <summary>A fresh handle name of the given kind (v1, v2, ...).</summary>
    public string FreshHandle(char kind)
    {
        int n = _nextHandle.GetValueOrDefault(kind) + 1;
        _nextHandle[kind] = n;
        return kind + n.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    public IReadOnlyList<string> Live(char kind) => _live.TryGetValue(kind, out var l) ? l : [];

    public void AddLive(string handle) => (_live.TryGetValue(handle[0], out var l) ? l : _live[handle[0]] = new()).Add(handle);

    public void RemoveLive(string handle)
    {
        if (_live.TryGetValue(handle[0], out var l)) l.Remove(handle);
    }

    /// <summary>An idle CPU to run on, or -1 when all are busy.</summary>
    public int IdleCpu(Prng rng)
    {
        var idle = IdleCpus;
        return idle.Count == 0 ? -1 : idle[rng.Next(idle.Count)];
    }
}
