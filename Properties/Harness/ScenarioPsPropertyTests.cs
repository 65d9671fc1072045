using FsCheck;
using FsCheck.Fluent;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;
using PropertySuite.Properties.Infra;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// A scenario property written as one FsCheck.Xunit method ([PsProperty] over a generated
/// Scenario, Generators/ScenarioCases), and the evidence that such a property is not a test that
/// cannot fail: the same arbitrary and check under FsCheck's own runner on a buggy kernel fail,
/// shrink, and leave a short repro that replays to the failure.
/// </summary>
[Trait("Category", "harness")]
public sealed class ScenarioPsPropertyTests
{
    private const string Property = nameof(ScenarioPsPropertyTests) + "." + nameof(AnyScenarioOfACorrectKernelHoldsEveryInvariant);

    /// <summary>Scenarios of the correct variants (the default kernel's fair share included).</summary>
    public static class CorrectScenarios
    {
        public static Arbitrary<Scenario> Any() => ScenarioCases.Arbitrary(ScenarioOptions.For(null, Budget.FromEnvironment()));
    }

    [PsProperty(Arbitrary = [typeof(CorrectScenarios)])]
    public void AnyScenarioOfACorrectKernelHoldsEveryInvariant(Scenario s) =>
        ScenarioCases.Check(Property, s, Budget.FromEnvironment());

    [Fact]
    public void UnderFsCheckABuggyKernelFailsShrinksAndLeavesAReplayableRepro()
    {
        string dir = Path.Combine(Path.GetTempPath(), "ps-cases-" + Guid.NewGuid().ToString("N"));
        try
        {
            var budget = Budget.FromEnvironment() with { ReproDir = dir };
            var arb = ScenarioCases.Arbitrary(ScenarioOptions.For("broken-vunmap-skips-flush", budget, "x86_64-4k-l4"));
            var config = Config.QuickThrowOnFailure.WithMaxTest(200).WithQuietOnSuccess(true).WithReplay(1UL, PbtRunner.GoldenGamma);
            var failure = Assert.ThrowsAny<Exception>(() => Check.One(config, Prop.ForAll(arb, (Scenario s) => ScenarioCases.Check("Meta.BuggyVunmap", s, budget))));

            string path = ScenarioCases.ReproPath("Meta.BuggyVunmap", budget);
            Assert.True(File.Exists(path), $"no repro at {path}: {failure.Message}");
            Assert.Contains(path, failure.Message, StringComparison.Ordinal);
            Assert.Single(Directory.GetFiles(dir)); // one file per property, overwritten while shrinking
            var repro = Repro.Parse(File.ReadAllText(path));
            var run = ScenarioRunner.Run(repro);
            Assert.True(run.Failed, $"the written repro does not fail:\n{File.ReadAllText(path)}");
            Assert.Equal(repro.Expect, run.AsExpectation());
            var target = VariantTargets.Of("broken-vunmap-skips-flush");
            Assert.Contains(run.FailedInvariant, target.BreakNames);
            Assert.True(repro.Ops.Length <= target.MaxReproOps, $"shrunk to {repro.Ops.Length} operations (bound {target.MaxReproOps}):\n{File.ReadAllText(path)}");
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
