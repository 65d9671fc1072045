using PropertySuite.Generators;
using Xunit.Abstractions;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// Generation reaches every state the engine defines as interesting (Generators/ReachTargets):
/// correct variants at the reach budget reach each declared state in at least its bound of
/// scenarios, states reachable only under a variant are reached when that variant is fuzzed, and
/// every state noted is declared (so a new Note cannot go unwatched).
/// </summary>
[Trait("Category", "harness")]
public sealed class ReachTests(ITestOutputHelper output)
{
    /// <summary>Generates <paramref name="tests"/> scenarios (seeds from one fixed stream, sizes
    /// ramping as FsCheck's do) and counts what they reached. A targeted run of a buggy variant
    /// checks no invariant: it is about which states generation reaches, and its scenarios go on
    /// past a violation.</summary>
    private static RunStatistics Run(ReachTarget? t, int tests)
    {
        var options = new ScenarioOptions { Variant = t?.Variant, Config = t?.Config };
        if (t is { Memory: > 0 }) options = options with { MemorySizes = [t.Memory] };
        bool correct = t?.Variant is not { } v || Engine.Config.KernelVariants.ByName(v).Correct;
        if (!correct) options = options with { Invariants = [] };
        var stats = new RunStatistics();
        var seeds = new Prng(1);
        for (int i = 0; i < tests; i++)
        {
            var g = ScenarioGenerator.Generate(seeds.NextU64(), 1 + i % ScenarioGenerator.FullSize, options);
            if (correct && g.Run.Failed) Assert.Fail($"a correct variant violated an invariant during the reach run: {g.Run}\n{g.Scenario}");
            stats.Add(g.Scenario, g.Run);
        }
        return stats;
    }

    [Fact]
    public void FuzzSummaryListsTheDeclaredStatesARunNeverReached()
    {
        var empty = new RunStatistics();
        var declared = ReachTargets.All.Select(t => t.State).Concat(ReachTargets.Unbounded.Keys).Distinct().Order(StringComparer.Ordinal);
        Assert.Equal(declared, empty.NeverReached().Select(n => n.State));
        Assert.Contains(empty.NeverReached(), n => n.State == "hvo.rollback" && n.Needs.Contains("memory 4G", StringComparison.Ordinal));

        var some = Run(null, 40);
        var never = some.NeverReached();
        Assert.All(never, n => Assert.False(some.ReachedScenarios.ContainsKey(n.State), n.State));
        Assert.All(some.ReachedScenarios.Keys.Where(ReachTargets.IsDeclared), s => Assert.DoesNotContain(never, n => n.State == s));
        Assert.Contains("never reached: ", some.Render(), StringComparison.Ordinal);
    }

    [Fact]
    public void CorrectVariantsReachEveryDeclaredState()
    {
        var stats = Run(null, ReachTargets.ReachBudget);
        foreach (var (state, n) in stats.ReachedScenarios) output.WriteLine($"{state,-36} {n,6} of {stats.Scenarios} scenarios");
        var missing = new List<string>();
        foreach (var t in ReachTargets.All.Where(t => !t.Targeted))
        {
            long n = stats.ReachedScenarios.GetValueOrDefault(t.State);
            if (n < t.MinScenarios) missing.Add($"{t.State} ({t.Owner.Name}): {n} scenarios, needs {t.MinScenarios}");
        }
        var undeclared = stats.ReachedScenarios.Keys.Where(s => !ReachTargets.IsDeclared(s)).ToList();
        Assert.True(missing.Count == 0 && undeclared.Count == 0,
            $"reach run of {stats.Scenarios} scenarios: " +
            (missing.Count > 0 ? $"under-reached: {string.Join("; ", missing)}. " : "") +
            (undeclared.Count > 0 ? $"noted but not declared in ReachTargets: {string.Join(", ", undeclared)}." : ""));
    }

    public static TheoryData<string> TargetedStates() => new(ReachTargets.All.Where(t => t.Targeted).Select(t => t.State));

    [Theory]
    [MemberData(nameof(TargetedStates))]
    public void ATargetedStateIsReachedByItsRun(string state)
    {
        var t = ReachTargets.All.Single(x => x.State == state);
        var stats = Run(t, ReachTargets.TargetedBudget);
        Assert.True(stats.ReachedScenarios.GetValueOrDefault(state) >= t.MinScenarios,
            $"{state} reached in {stats.ReachedScenarios.GetValueOrDefault(state)} of {stats.Scenarios} scenarios (variant {t.Variant ?? "drawn"}, config {t.Config ?? "drawn"}), needs {t.MinScenarios}");
    }
}
