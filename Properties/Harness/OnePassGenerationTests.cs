using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Generators.Families;
using PropertySuite.Invariants;
using Xunit.Abstractions;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// Generation is one pass and one stream per family: the run generation hands on is the run a
/// fresh ScenarioRunner gives, a scenario ends at its first violation, and a family that takes
/// no part in a scenario (not enabled, or enabled with nothing to do) leaves it unchanged.
/// </summary>
[Trait("Category", "harness")]
public class OnePassGenerationTests(ITestOutputHelper output)
{
    private static ulong Seed(int i) => (ulong)i * 0x9e3779b97f4a7c15UL + 12345;

    private static void AssertSameRun(RunResult expected, RunResult actual, Scenario s)
    {
        string where = $"\n{s}";
        Assert.True(expected.ToString() == actual.ToString(), $"fresh run '{expected}', generation saw '{actual}'{where}");
        Assert.True(expected.Step == actual.Step && expected.StepsRun == actual.StepsRun, $"steps differ{where}");
        Assert.Equal(expected.EngineError?.GetType(), actual.EngineError?.GetType());
        Assert.Equal(expected.OpsApplied, actual.OpsApplied);
        Assert.Equal(expected.Reached, actual.Reached);
    }

    [Fact]
    public void GenerationsRunIsAFreshRunsVerdictForCorrectAndBuggyVariants()
    {
        var options = new List<ScenarioOptions> { new() };
        options.AddRange(KernelVariants.All.Select(v => new ScenarioOptions { Variant = v.Name }));
        int failing = 0, total = 0;
        foreach (var o in options)
        {
            int n = o.Variant is null ? 30 : 10;
            for (int i = 0; i < n; i++)
            {
                int size = o.Variant is null ? 1 + i * 97 % 100 : 100 - i * 5;
                var g = ScenarioGenerator.Generate(Seed(i), size, o);
                Assert.Same(g.Run, ScenarioGenerator.RunOf(g.Scenario));
                var again = ScenarioRunner.Run(Repro.Parse(g.Scenario.ToString()));
                AssertSameRun(again, g.Run, g.Scenario);
                if (i < 2)
                {
                    // Same seed, size and options: the same scenario and verdict.
                    var twice = ScenarioGenerator.Generate(Seed(i), size, o);
                    Assert.Equal(g.Scenario.ToString(), twice.Scenario.ToString());
                    AssertSameRun(g.Run, twice.Run, g.Scenario);
                }
                if (g.Run.Failed)
                {
                    failing++;
                    Assert.Equal(g.Scenario.Ops.Length, g.Run.Step); // generation stops at the first violation
                }
                total++;
            }
        }
        output.WriteLine($"{failing} of {total} generated scenarios failed; every verdict matched a fresh run");
        Assert.True(failing >= 12, $"only {failing} of {total} scenarios failed: the comparison hardly covers failing runs");
    }

    [Fact]
    public void ARunOfAScenarioNotBuiltByTheGeneratorIsNotKnown()
    {
        var g = ScenarioGenerator.Generate(7, 50, new ScenarioOptions());
        Assert.Null(ScenarioGenerator.RunOf(g.Scenario with { }));
        Assert.Null(ScenarioGenerator.RunOf(Repro.Parse(g.Scenario.ToString())));
    }

    /// <summary>A family with nothing to do: weight 0, proposes nothing.</summary>
    private sealed class InertFamily : IOpFamily
    {
        public string Name => "inert";
        public IReadOnlyList<string> Kinds { get; } = ["nothing", "nothing_else"];
        public bool AppliesTo(ArchConfig arch, NamedVariant variant) => true;
        public int Weight(GenState s) => 0;
        public Op? Next(GenState s, Prng rng) => null;
    }

    /// <summary>A family that does something (reads struct pages) whenever it is enabled.</summary>
    private sealed class NoisyFamily : IOpFamily
    {
        public string Name => "noisy";
        public bool AppliesTo(ArchConfig arch, NamedVariant variant) => true;
        public int Weight(GenState s) => 10;
        public Op? Next(GenState s, Prng rng) => new ReadStructPageOp(rng.Range(0, 1023));
        public Op? NextIrqHandler(GenState s, Prng rng) => Next(s, rng);
    }

    private static List<(string Text, IReadOnlyList<string> Swarm)> Sample(IReadOnlyList<IOpFamily> families, int count) =>
        Enumerable.Range(0, count).Select(i =>
        {
            var g = ScenarioGenerator.Generate(Seed(i), 1 + i % 100, new ScenarioOptions { Families = families });
            return (g.Scenario.ToString(), g.Swarm);
        }).ToList();

    [Fact]
    public void AppendingAnInertFamilyLeavesScenariosUnchanged()
    {
        const int Count = 200;
        var before = Sample(Families.All, Count);
        var after = Sample([.. Families.All, new InertFamily()], Count);
        int same = Enumerable.Range(0, Count).Count(i => before[i].Text == after[i].Text);
        int enabled = after.Count(x => x.Swarm.Contains("inert"));
        output.WriteLine($"inert family appended: {same} of {Count} scenarios unchanged ({100.0 * same / Count:F1} %); it was enabled in {enabled}");
        Assert.True(same * 100 >= 95 * Count, $"only {same} of {Count} scenarios unchanged");
        Assert.InRange(enabled, 1, Count - 1);
    }

    [Fact]
    public void AFamilyThatIsNotEnabledChangesNothing()
    {
        const int Count = 100;
        var before = Sample(Families.All, Count);
        var after = Sample([.. Families.All, new NoisyFamily()], Count);
        var off = Enumerable.Range(0, Count).Where(i => !after[i].Swarm.Contains("noisy")).ToList();
        var changed = off.Where(i => before[i].Text != after[i].Text).ToList();
        Assert.True(changed.Count == 0, $"{changed.Count} of {off.Count} scenarios without the new family changed, e.g. seed index {changed.FirstOrDefault()}");
        Assert.InRange(off.Count, Count / 4, Count * 3 / 4);
        Assert.Contains(after, x => x.Swarm.Contains("noisy") && x.Text.Contains("read_page", StringComparison.Ordinal));
    }

    [Fact]
    public void FamilyStreamsAreForkedByNameStably()
    {
        Assert.Equal(Prng.Fork(42, "core").NextU64(), Prng.Fork(42, "core").NextU64());
        Assert.NotEqual(Prng.Fork(42, "core").NextU64(), Prng.Fork(42, "sched").NextU64());
        Assert.NotEqual(Prng.Fork(42, "core").NextU64(), Prng.Fork(43, "core").NextU64());
        // Pinned: a seed means the same scenario on every machine and .NET version.
        Assert.Equal(PinnedForkValue, Prng.Fork(42, "core").NextU64());
    }

    private const ulong PinnedForkValue = 14026579377498681725UL;

    [Fact]
    public void TargetedVariantsAlwaysEnableTheirFocusFamilies()
    {
        foreach (var t in VariantTargets.All.Where(t => t.Focus.Count > 0))
        {
            var names = t.Focus.Select(type => Families.All.Single(f => f.GetType() == type).Name).ToList();
            for (int i = 0; i < 30; i++)
            {
                var swarm = ScenarioGenerator.Generate(Seed(i), 20, new ScenarioOptions { Variant = t.Variant.Name }).Swarm;
                Assert.All(names, n => Assert.Contains(n, swarm));
            }
        }
    }
}
