using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// Steps named by the kernel action they stop after: every step an engine task takes is named.
/// </summary>
public class StepFormTests
{
    [Fact]
    public void EveryStepAnEngineTaskTakesIsNamed()
    {
        // Generated scenarios of every variant: no step that made progress is unnamed, and every
        // name is one the repro language can write after `step cpuN to`.
        var budget = Budget.Parse(new Dictionary<string, string?>());
        var names = new SortedSet<string>(StringComparer.Ordinal);
        long steps = 0;
        foreach (var variant in KernelVariants.All)
        {
            var options = ScenarioOptions.For(variant.Name, budget);
            for (ulong seed = 1; seed <= 4; seed++)
            {
                var s = ScenarioGenerator.Build(seed * 0x9E3779B97F4A7C15UL, 60, options);
                var unnamed = new List<string>();
                ScenarioRunner.Run(s, booted: k =>
                {
                    foreach (var c in k.Cpus)
                        c.OnStep = (ctx, st) =>
                        {
                            steps++;
                            if (st.IsBlocked) return;
                            if (st.Action is not { } a) unnamed.Add(ctx.ToString());
                            else if (names.Add(a))
                                Assert.True(LineReader.IsActionName(a), $"{variant.Name}: '{a}' cannot be written as `step cpuN to {a}`");
                        };
                });
                Assert.True(unnamed.Count == 0, $"{variant.Name} seed {seed}: unnamed steps in {string.Join(", ", unnamed.Distinct())} of\n{s}");
            }
        }
        Assert.True(names.Count >= 30, $"only {names.Count} distinct actions seen: {string.Join(", ", names)}");
        Assert.True(steps > 1000, $"only {steps} steps taken");
    }
}
