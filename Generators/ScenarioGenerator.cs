// Scenario generation: FsCheck chooses a seed and a size; a deterministic builder turns them
// into a scenario. FsCheck thus drives the run (sizes grow, seeds replay), while what a seed
// means is ours alone (Prng, SplitMix64): the same (seed, size, options) gives the same
// scenario on every machine and .NET version, which is what `fuzz --seed` and PS_REPLAY rely on.
//
// Generation is one pass (as Hypothesis's stateful testing is): each operation is applied to
// the scenario's engine and every invariant checked as soon as it is drawn (GenState.Append),
// and the scenario ends at its first violation. The run is handed on with the scenario
// (RunOf), so a property does not run a generated scenario again; only shrink candidates run.
//
// Random streams. The scenario's own stream (Prng of the seed) draws the variant, the
// configuration, the machine, the length and, for every slot, which enabled family fills it.
// Each family draws from its own stream, forked from the seed by the family's name
// (Prng.Fork): its swarm choice (whether it is enabled, which of its kinds) and everything it
// proposes. A slot is filled by a weighted pick over the enabled families, where a family of
// weight 0 takes no share; so a family that is not enabled, or proposes nothing, changes no
// other family's draws and no slot's choice: appending a family to the registry leaves the
// scenarios in which it does not take part unchanged.
//
// The builder, in order:
//   1. variant: fixed by the options, else one of the correct variants;
//   2. configuration: fixed, else one the variant allows (NamedVariant.Arch);
//   3. machine: small on purpose, 256M-1G and 1-4 CPUs: bugs in this model do not need big
//      machines, and small ones boot and check fast;
//   4. swarm (Groce et al., "Swarm testing", ISSTA 2012), each family from its own stream: a
//      coin for whether it is enabled (always, for the families a targeted variant focuses,
//      VariantTargets; never, in a targeted run, for a window-plan family it does not focus,
//      IOpFamily.WindowPlan), and either every operation kind or a random non-empty subset of them.
//      Leaving kinds out changes the mix far more than weights can (a scenario without vfree
//      piles up areas; one without vmalloc exercises the rest alone). If no enabled family
//      other than the schedule has anything to do at the start (weight above 0), the one with
//      the lowest draw of its own stream among those that have is enabled too;
//   5. length: uniform in [1, MaxSteps * size / 100] so that FsCheck's size ramp (1..100 over
//      a run) starts with short scenarios and ends with MaxSteps-long ones;
//   6. operations: each from an enabled family drawn by weight, the family proposing from the
//      generation state (GenState: its handles and the engine). A slot where no enabled kind
//      has anything to propose (read and vfree without vmalloc) may use every kind of the
//      enabled families; only if that proposes nothing either, or an invariant is violated,
//      does the scenario end early.
using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using FsCheck.Fluent;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators.Families;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;
using FsGen = FsCheck.Fluent.Gen;

namespace PropertySuite.Generators;

/// <summary>What to generate. Null fields are drawn per scenario.</summary>
public sealed record ScenarioOptions
{
    /// <summary>Variant name; null draws one of the correct variants per scenario.</summary>
    public string? Variant { get; init; }
    /// <summary>ArchConfig name; null draws one the variant allows per scenario.</summary>
    public string? Config { get; init; }
    /// <summary>Longest scenario (operation lines), reached at FsCheck size 100.</summary>
    public int MaxSteps { get; init; } = Budget.DefaultMaxSteps;
    /// <summary>Families to draw from (default: every registered family).</summary>
    public IReadOnlyList<IOpFamily> Families { get; init; } = Generators.Families.Families.All;
    /// <summary>Boot memory sizes to choose from; those invalid for a configuration are skipped.</summary>
    public IReadOnlyList<long> MemorySizes { get; init; } = [256L << 20, 512L << 20, 1L << 30];
    /// <summary>Most CPUs a generated machine has.</summary>
    public int MaxCpus { get; init; } = 4;
    /// <summary>The invariants generation checks after each operation; a scenario ends at its
    /// first violation of one of them. Default: every registered invariant (only then is the
    /// run handed on, see ScenarioGenerator.RunOf). Empty: nothing is checked, which gives the
    /// same scenarios wherever no invariant is violated (correct variants), faster, for tests
    /// of the generator itself.</summary>
    public IReadOnlyList<IInvariant> Invariants { get; init; } = InvariantRegistry.All;

    /// <summary>The options for one variant with the given budget's scenario length.</summary>
    public static ScenarioOptions For(string? variant, Budget budget, string? config = null) =>
        new() { Variant = variant, Config = config, MaxSteps = budget.MaxSteps };

    /// <summary>Checks names and combinations.</summary>
    /// <exception cref="ConfigException">An unknown variant or configuration, a configuration
    /// the variant does not allow, or an empty choice; the message names the value.</exception>
    public void Validate()
    {
        if (MaxSteps < 1) throw new ConfigException($"max steps {MaxSteps}: must be at least 1");
        if (MaxCpus < 1 || MaxCpus > MachineConfig.MaxCpus) throw new ConfigException($"max cpus {MaxCpus}: must be between 1 and {MachineConfig.MaxCpus}");
        if (Families.Count == 0) throw new ConfigException("no operation families to draw from");
        if (Config is not null)
        {
            var arch = ArchConfig.ByName(Config);
            if (Variant is not null && KernelVariants.ByName(Variant) is var v && !ScenarioGenerator.Allows(v, arch))
                throw new ConfigException($"config '{Config}': variant '{v.Name}' needs {v.Arch}");
            if (Variant is null && !KernelVariants.All.Any(c => c.Correct && ScenarioGenerator.Allows(c, arch)))
                throw new ConfigException($"config '{Config}': no correct variant runs on it");
        }
        else if (Variant is not null) KernelVariants.ByName(Variant);
    }
}

/// <summary>A generated scenario, the families and kinds its swarm enabled, and its run
/// (generation applied and checked every operation as it drew it).</summary>
public sealed record GeneratedScenario(Scenario Scenario, IReadOnlyList<string> Swarm, RunResult Run);

public static class ScenarioGenerator
{
    /// <summary>FsCheck size at which scenarios reach MaxSteps (FsCheck's default EndSize).</summary>
    public const int FullSize = 100;

    /// <summary>The FsCheck generator: a seed and the current size, handed to <see cref="Build"/>.</summary>
    public static FsCheck.Gen<Scenario> Gen(ScenarioOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        // Two 31-bit halves: Gen.Choose works on int, and 62 bits of seed are plenty.
        var seed = from hi in FsGen.Choose(0, int.MaxValue)
                   from lo in FsGen.Choose(0, int.MaxValue)
                   select ((ulong)(uint)hi << 31) | (uint)lo;
        return FsGen.Sized(size => seed.Select(s => Build(s, size, options)));
    }

    /// <summary>Whether <paramref name="variant"/> may run on <paramref name="arch"/>:
    /// NamedVariant.Arch is null (any), a configuration name, or an architecture prefix such
    /// as "arm64".</summary>
    public static bool Allows(NamedVariant variant, ArchConfig arch) =>
        variant.Arch is null || arch.Name == variant.Arch || arch.Name.StartsWith(variant.Arch + "-", StringComparison.Ordinal);

    /// <summary>The configurations a variant may run on, in ArchConfig.All order.</summary>
    public static IReadOnlyList<ArchConfig> ConfigsFor(NamedVariant variant)
    {
        var list = ArchConfig.All.Where(a => Allows(variant, a)).ToList();
        return list.Count > 0 ? list
            : throw new ConfigException($"variant '{variant.Name}' asks for config '{variant.Arch}', which matches none of {string.Join(", ", ArchConfig.All.Select(a => a.Name))}");
    }

    /// <summary>The smallest boot memory MachineConfig accepts on <paramref name="arch"/>.</summary>
    public static long MinMemory(ArchConfig arch)
    {
        for (long m = arch.SectionSize; ; m += arch.SectionSize)
            if (IsValid(arch, new MachineConfig(m, 1))) return m;
    }

    public static bool IsValid(ArchConfig arch, MachineConfig machine)
    {
        try
        {
            machine.Validate(arch);
            return true;
        }
        catch (ConfigException)
        {
            return false;
        }
    }

    /// <summary>Longest scenario at FsCheck size <paramref name="size"/>.</summary>
    public static int MaxLength(int size, int maxSteps) =>
        Math.Max(1, (int)((long)maxSteps * Math.Clamp(size, 0, FullSize) / FullSize));

    private static readonly ConditionalWeakTable<Scenario, RunResult> Runs = new();

    /// <summary>Builds the scenario of (<paramref name="seed"/>, <paramref name="size"/>).</summary>
    public static Scenario Build(ulong seed, int size, ScenarioOptions options) => Generate(seed, size, options).Scenario;

    /// <summary><see cref="Build"/>, also returning the families and kinds the swarm enabled.</summary>
    public static (Scenario Scenario, IReadOnlyList<string> Swarm) BuildWithSwarm(ulong seed, int size, ScenarioOptions options)
    {
        var g = Generate(seed, size, options);
        return (g.Scenario, g.Swarm);
    }

    /// <summary>The run of a scenario this generator built (the very object it returned), as
    /// generation ran and checked it against every registered invariant; null for any other
    /// scenario.</summary>
    public static RunResult? RunOf(Scenario s)
    {
        ArgumentNullException.ThrowIfNull(s);
        return Runs.TryGetValue(s, out var r) ? r : null;
    }

    /// <summary>The share of drawn scenarios (in percent) that run the default kernel on a
    /// configuration drawn uniformly when neither variant nor configuration is fixed; the rest draw
    /// a correct variant uniformly, then a configuration it allows. Without this share the default
    /// kernel of one configuration got about 1 scenario in 70 (1/8 of variants × 1/9 of
    /// configurations); with it, about 1 in 22.</summary>
    public const int DefaultKernelShare = 25;

    /// <summary>The share of scenarios (in percent) whose machine is large enough for the
    /// configuration's largest HugeTLB size (<see cref="LargeMemory"/>) instead of one of
    /// ScenarioOptions.MemorySizes.</summary>
    public const int LargeMachineShare = 12;

    /// <summary>A fixed variant runs on a configuration it allows (a fixed one, else one drawn
    /// uniformly among them). Otherwise, <see cref="DefaultKernelShare"/> percent of the time the
    /// default kernel on a configuration drawn uniformly (or the fixed one), else a correct variant
    /// drawn uniformly among those the configuration allows (all, if it is not fixed) and then a
    /// configuration it allows.</summary>
    private static (NamedVariant Variant, ArchConfig Arch) DrawVariantAndConfig(Prng rng, ScenarioOptions options)
    {
        if (options.Variant is { } vn)
        {
            var v = KernelVariants.ByName(vn);
            return (v, options.Config is { } cn ? ArchConfig.ByName(cn) : rng.Pick(ConfigsFor(v)));
        }
        var fixedArch = options.Config is { } c ? ArchConfig.ByName(c) : null;
        var def = KernelVariants.ByName(KernelVariants.DefaultName);
        if (rng.Chance(DefaultKernelShare) && (fixedArch is null || Allows(def, fixedArch)))
            return (def, fixedArch ?? rng.Pick(ConfigsFor(def)));
        var variant = rng.Pick(KernelVariants.All.Where(v => v.Correct && (fixedArch is null || Allows(v, fixedArch))).ToList());
        return (variant, fixedArch ?? rng.Pick(ConfigsFor(variant)));
    }

    /// <summary>Boot memory: one of the option's sizes that the configuration accepts, or, for
    /// <see cref="LargeMachineShare"/> percent of scenarios, <see cref="LargeMemory"/>.</summary>
    private static long DrawMemory(Prng rng, ScenarioOptions options, ArchConfig arch)
    {
        long large = LargeMemory(arch);
        bool useLarge = rng.Chance(LargeMachineShare) && large > 0 && IsValid(arch, new MachineConfig(large, 1));
        if (useLarge) return large;
        var memories = options.MemorySizes.Where(m => IsValid(arch, new MachineConfig(m, 1))).ToList();
        return memories.Count > 0 ? rng.Pick(memories) : MinMemory(arch);
    }

    /// <summary>Memory for four folios of the configuration's largest HugeTLB size (so a gigantic
    /// folio, whose vmemmap spans several PMDs, can be allocated and optimized), at most 16 GiB;
    /// 0 when the configuration has no HugeTLB size.</summary>
    public static long LargeMemory(ArchConfig arch) =>
        arch.HugetlbSizes.Count == 0 ? 0 : Math.Min(4 * arch.HugetlbSizes.Max(), 16L << 30);

    /// <summary>Generates, runs and checks the scenario of (<paramref name="seed"/>,
    /// <paramref name="size"/>) in one pass.</summary>
    public static GeneratedScenario Generate(ulong seed, int size, ScenarioOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var rng = new Prng(seed);

        var (variant, arch) = DrawVariantAndConfig(rng, options);
        long memory = DrawMemory(rng, options, arch);
        int cpus = DrawCpus(rng, options.MaxCpus);
        // A hot-plug range beside boot memory when the hot-plug family takes part (drawn from
        // nothing: the other draws of the scenario stay as they were).
        long hotplug = options.Families.Any(f => f is HotplugFamily && f.AppliesTo(arch, variant)) ? HotplugFamily.RangeBytes(arch) : 0;
        var machine = new MachineConfig(memory, cpus, hotplug);
        if (!IsValid(arch, machine)) machine = machine with { HotplugBytes = 0 };
        var s = new GenState(arch, machine, variant, options.Invariants);

        var applicable = options.Families.Where(f => f.AppliesTo(arch, variant)).ToList();
        var streams = applicable.ToDictionary(f => f, f => Prng.Fork(seed, f.Name));
        // The families the variant's mechanism lives in are always on, with every kind (a
        // fixed variant only: a drawn correct variant gets a plain swarm).
        var target = options.Variant is null ? null : VariantTargets.For(variant.Name);
        var enabled = new List<IOpFamily>();
        var fallbackKey = new Dictionary<IOpFamily, ulong>();
        var kindsOf = new Dictionary<IOpFamily, List<string>>();
        foreach (var f in applicable)
        {
            var fr = streams[f];
            bool focused = target?.Focuses(f) ?? false;
            fallbackKey[f] = fr.NextU64();
            bool coin = fr.Chance(50);
            if ((coin && !(target is not null && f.WindowPlan)) | focused) enabled.Add(f);
            bool all = fr.Chance(50) | focused;
            var chosen = f.Kinds.Where(_ => all || fr.Chance(50)).ToList();
            if (chosen.Count == 0 && f.Kinds.Count > 0) chosen.Add(fr.Pick(f.Kinds));
            kindsOf[f] = chosen;
        }
        bool HasWork(IOpFamily f) => f is not ScheduleFamily && f.Weight(s) > 0;
        if (!enabled.Any(HasWork) && applicable.Where(HasWork).MinBy(f => fallbackKey[f]) is { } extra)
            enabled = applicable.Where(f => f == extra || enabled.Contains(f)).ToList(); // registry order
        var kinds = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var f in enabled)
            foreach (var k in kindsOf[f]) kinds.Add(f.Name + "/" + k);

        s.EnabledKinds = kinds;
        var contentFamilies = enabled.Where(f => f is not ScheduleFamily).ToList();
        s.DrawTaskOp = r => DrawFrom(contentFamilies, s, r, streams, (f, st, fr) => f.NextTask(st, fr));
        s.DrawIrqHandler = r => DrawFrom(contentFamilies, s, r, streams, (f, st, fr) => f.NextIrqHandler(st, fr));

        int length = (int)rng.Range(1, MaxLength(size, options.MaxSteps));
        while (s.Ops.Count < length && !s.Failed)
        {
            var op = DrawFrom(enabled, s, rng, streams, (f, st, fr) => f.Next(st, fr));
            if (op is null)
            {
                // A dead end of the swarm (say read and vfree without vmalloc): this slot may use
                // every kind of the enabled families.
                s.EnabledKinds = null;
                op = DrawFrom(enabled, s, rng, streams, (f, st, fr) => f.Next(st, fr));
                s.EnabledKinds = kinds;
            }
            if (op is null) break;
            s.Append(op);
        }
        var swarm = enabled.Select(f => f.Name).Concat(kinds).ToList();
        var scenario = new Scenario(arch, machine, variant.Name, [.. s.Ops]);
        var run = s.Outcome;
        if (ReferenceEquals(options.Invariants, InvariantRegistry.All)) Runs.AddOrUpdate(scenario, run);
        return new GeneratedScenario(scenario, swarm, run);
    }

    /// <summary>1-4 CPUs, two most often: two is the least that interleaves, more spreads the
    /// same number of operations thinner.</summary>
    private static int DrawCpus(Prng rng, int maxCpus)
    {
        int[] weights = [2, 4, 2, 2];
        int i = rng.PickIndex(weights.Take(Math.Min(maxCpus, weights.Length)).ToList());
        return i + 1;
    }

    /// <summary>A family drawn by weight (from <paramref name="rng"/>, the caller's stream) may
    /// have nothing to propose (every CPU busy, say): it is then left out and another is drawn,
    /// a few times at most. The drawn family proposes from its own stream.</summary>
    private static Op? DrawFrom(IReadOnlyList<IOpFamily> families, GenState s, Prng rng, IReadOnlyDictionary<IOpFamily, Prng> streams, Func<IOpFamily, GenState, Prng, Op?> next)
    {
        const int Tries = 4;
        var weights = families.Select(f => f.Weight(s)).ToList();
        for (int t = 0; t < Tries; t++)
        {
            int i = rng.PickIndex(weights);
            if (i < 0) return null;
            var op = next(families[i], s, streams[families[i]]);
            if (op is not null) return op;
            weights[i] = 0;
        }
        return null;
    }
}
