// What a run of generated scenarios actually exercised: per operation kind, how often it was
// generated and how often it did something (an operation whose handle is gone, or whose CPU is
// busy, is a no-op); per interesting state the kernel noted (Kernel.Note), in how many
// scenarios it was reached and how often; and the configurations, variants and machine sizes
// drawn. FsCheck's Classify only reports joint combinations of labels, so
// these are our own counters, kept in sorted maps so that printing them is deterministic.
using System.Globalization;
using System.Text;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Generators;

public sealed class RunStatistics
{
    public long Scenarios { get; private set; }
    /// <summary>Steps applied over all scenarios (a failing scenario counts up to its failure).</summary>
    public long Steps { get; private set; }
    /// <summary>Operations generated, by kind: the verb, "start" for started tasks, "irq/verb"
    /// for interrupt handlers.</summary>
    public SortedDictionary<string, long> Generated { get; } = new(StringComparer.Ordinal);
    /// <summary>Operations that did something, by verb (RunResult.OpsApplied).</summary>
    public SortedDictionary<string, long> Applied { get; } = new(StringComparer.Ordinal);
    /// <summary>Per noted state: how many scenarios reached it.</summary>
    public SortedDictionary<string, long> ReachedScenarios { get; } = new(StringComparer.Ordinal);
    /// <summary>Per noted state: how many times it was reached in total.</summary>
    public SortedDictionary<string, long> ReachedTimes { get; } = new(StringComparer.Ordinal);
    /// <summary>Per invariant: scenarios that violated it (before shrinking).</summary>
    public SortedDictionary<string, long> Violations { get; } = new(StringComparer.Ordinal);
    public SortedDictionary<string, long> Configs { get; } = new(StringComparer.Ordinal);
    public SortedDictionary<string, long> Variants { get; } = new(StringComparer.Ordinal);
    public SortedDictionary<int, long> Cpus { get; } = new();
    /// <summary>Boot memory sizes drawn (bytes).</summary>
    public SortedDictionary<long, long> Memories { get; } = new();

    /// <summary>Adds one scenario and its run.</summary>
    public void Add(Scenario s, RunResult r)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(r);
        Scenarios++;
        Steps += r.StepsRun;
        foreach (var op in s.Ops)
        {
            Bump(Generated, op.Verb);
            if (op.Start) Bump(Generated, "start");
            if (op is IrqOp irq) Bump(Generated, "irq/" + irq.Handler.Verb);
        }
        foreach (var (verb, n) in r.OpsApplied) Bump(Applied, verb, n);
        foreach (var (state, n) in r.Reached)
        {
            if (n <= 0) continue;
            Bump(ReachedScenarios, state);
            Bump(ReachedTimes, state, n);
        }
        if (r.FailedInvariant is { } inv) Bump(Violations, inv);
        Bump(Configs, s.Arch.Name);
        Bump(Variants, s.VariantName);
        Cpus[s.Machine.Cpus] = Cpus.GetValueOrDefault(s.Machine.Cpus) + 1;
        Memories[s.Machine.MemoryBytes] = Memories.GetValueOrDefault(s.Machine.MemoryBytes) + 1;
    }

    /// <summary>Adds every counter of <paramref name="other"/>.</summary>
    public void Merge(RunStatistics other)
    {
        ArgumentNullException.ThrowIfNull(other);
        Scenarios += other.Scenarios;
        Steps += other.Steps;
        foreach (var (k, v) in other.Generated) Bump(Generated, k, v);
        foreach (var (k, v) in other.Applied) Bump(Applied, k, v);
        foreach (var (k, v) in other.ReachedScenarios) Bump(ReachedScenarios, k, v);
        foreach (var (k, v) in other.ReachedTimes) Bump(ReachedTimes, k, v);
        foreach (var (k, v) in other.Violations) Bump(Violations, k, v);
        foreach (var (k, v) in other.Configs) Bump(Configs, k, v);
        foreach (var (k, v) in other.Variants) Bump(Variants, k, v);
        foreach (var (k, v) in other.Cpus) Cpus[k] = Cpus.GetValueOrDefault(k) + v;
        foreach (var (k, v) in other.Memories) Memories[k] = Memories.GetValueOrDefault(k) + v;
    }

    private static void Bump(SortedDictionary<string, long> d, string key, long by = 1) => d[key] = d.GetValueOrDefault(key) + by;

    /// <summary>The states <see cref="ReachTargets"/> declares that no scenario of this run
    /// reached, in name order, each with what reaching it takes: its owner family, the variant,
    /// configuration or memory its targeted run fixes, or (for the states generation reaches too
    /// rarely to bound) the reason.</summary>
    public IReadOnlyList<(string State, string Needs)> NeverReached()
    {
        var ci = CultureInfo.InvariantCulture;
        var never = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var t in ReachTargets.All)
        {
            if (ReachedScenarios.ContainsKey(t.State)) continue;
            var needs = new List<string> { $"family {Families.Families.All.First(f => f.GetType() == t.Owner).Name}" };
            if (t.Variant is not null) needs.Add($"variant {t.Variant}");
            if (t.Config is not null) needs.Add($"config {t.Config}");
            if (t.Memory != 0) needs.Add(string.Create(ci, $"memory {t.Memory >> 30}G"));
            never[t.State] = string.Join(", ", needs);
        }
        foreach (var (state, why) in ReachTargets.Unbounded)
            if (!ReachedScenarios.ContainsKey(state)) never[state] = why;
        return [.. never.Select(kv => (kv.Key, kv.Value))];
    }

    /// <summary>Plain-text tables, deterministic for the same counters.</summary>
    public string Render()
    {
        var sb = new StringBuilder();
        var ci = CultureInfo.InvariantCulture;
        sb.Append(ci, $"{Scenarios} scenarios, {Steps} steps\n");
        sb.Append(ci, $"{"operation",-28} {"generated",10} {"applied",10}\n");
        foreach (var kind in Generated.Keys.Union(Applied.Keys).Order(StringComparer.Ordinal))
        {
            string applied = kind == "start" || kind.StartsWith("irq/", StringComparison.Ordinal) ? "" : Applied.GetValueOrDefault(kind).ToString(ci);
            sb.Append(ci, $"{kind,-28} {Generated.GetValueOrDefault(kind),10} {applied,10}\n");
        }
        sb.Append(ci, $"{"state reached",-28} {"scenarios",10} {"times",10}\n");
        if (ReachedScenarios.Count == 0) sb.Append("(none noted)\n");
        foreach (var (state, n) in ReachedScenarios)
            sb.Append(ci, $"{state,-28} {n,10} {ReachedTimes.GetValueOrDefault(state),10}\n");
        var never = NeverReached();
        if (never.Count > 0) sb.Append("never reached: ").Append(string.Join(", ", never.Select(n => n.State))).Append('\n');
        sb.Append("configs: ").Append(string.Join(", ", Configs.Select(kv => string.Create(ci, $"{kv.Key} {kv.Value}")))).Append('\n');
        sb.Append("variants: ").Append(string.Join(", ", Variants.Select(kv => string.Create(ci, $"{kv.Key} {kv.Value}")))).Append('\n');
        sb.Append("cpus: ").Append(string.Join(", ", Cpus.Select(kv => string.Create(ci, $"{kv.Key}:{kv.Value}")))).Append('\n');
        if (Violations.Count > 0)
            sb.Append("violations: ").Append(string.Join(", ", Violations.Select(kv => string.Create(ci, $"{kv.Key} {kv.Value}")))).Append('\n');
        return sb.ToString();
    }
}
