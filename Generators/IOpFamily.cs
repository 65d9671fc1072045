// How operations are generated: one family per mechanism. A family proposes the next operation
// from the generation state (live handles, busy CPUs), so that generated steps are mostly
// meaningful; whatever it proposes must still be total (a no-op when invalid at run time).
using PropertySuite.Engine.Config;
using PropertySuite.Engine;
using PropertySuite.Engine.Scenario;

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

    /// <summary>The next operation, or null if there is nothing to propose.</summary>
    Op? Next(GenState s, Prng rng);

    /// <summary>Operation kinds (verbs) this family can propose. The generator enables a random
    /// subset of them per scenario (swarm testing, Groce et al. 2012); a family asks
    /// <see cref="GenState.Enabled"/> before proposing a kind. Empty: no kind-level swarm.</summary>
    IReadOnlyList<string> Kinds => [];

    /// <summary>An operation worth starting as a task (`cpuN: start op`) whose steps the schedule
    /// then interleaves with other CPUs: prefer multi-step paths (those that take locks, wait
    /// for grace periods or change page tables in several steps). Default: <see cref="Next"/>.</summary>
    Op? NextTask(GenState s, Prng rng) => Next(s, rng);

    /// <summary>An operation that may run as an interrupt handler (`irq cpuN op`): plain (no
    /// cpu, start or handle) and legal in IRQ context (no sleeping, no lock taken without
    /// disabling interrupts in the kernel). Null: this family has none.</summary>
    Op? NextIrqHandler(GenState s, Prng rng) => null;
}

/// <summary>What generation knows about the scenario built so far. It is symbolic: it tracks
/// the handles earlier operations bind and consume, not engine state.</summary>
public sealed class GenState(ArchConfig arch, MachineConfig machine, NamedVariant variant)
{
    private readonly Dictionary<char, int> _nextHandle = new();
    private readonly Dictionary<char, List<string>> _live = new();

    public ArchConfig Arch { get; } = arch;
    public MachineConfig Machine { get; } = machine;
    public NamedVariant Variant { get; } = variant;
    /// <summary>Operations generated so far.</summary>
    public List<Op> Ops { get; } = new();
    /// <summary>CPUs that have a started task (`start ...`) whose steps are still to be scheduled.</summary>
    public HashSet<int> BusyCpus { get; } = new();

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

    /// <summary>The engine the scenario built so far runs on, step by step as it is generated
    /// (model-based generation: a family may look at real state, e.g. the PFN a handle's page
    /// has, to aim where bugs live). Null if the engine threw (the scenario is then failing
    /// anyway) or generation runs without it.</summary>
    public Engine.Kernel? Engine { get; private set; }

    /// <summary>The handles bound so far in <see cref="Engine"/>.</summary>
    public RunContext? Handles { get; private set; }

    /// <summary>Boots the engine for generation.</summary>
    public void AttachEngine()
    {
        Engine = Kernel.Boot(Arch, Machine, Variant.Variant);
        Handles = new RunContext(Engine);
    }

    /// <summary>Applies a generated operation to the generation engine. An engine exception
    /// detaches the engine (the runner reports it when the scenario is run).</summary>
    public void ApplyToEngine(Op op)
    {
        if (Engine is null || Handles is null) return;
        try
        {
            Engine.BeginStep(Ops.Count);
            Invariants.ScenarioRunner.Apply(Engine, Handles, op);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Engine = null;
            Handles = null;
        }
    }

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

    /// <summary>An idle CPU to run on, preferring cpu0, or -1 when all are busy.</summary>
    public int IdleCpu(Prng rng)
    {
        var idle = Enumerable.Range(0, Machine.Cpus).Where(c => !BusyCpus.Contains(c)).ToList();
        return idle.Count == 0 ? -1 : idle[rng.Next(idle.Count)];
    }
}
