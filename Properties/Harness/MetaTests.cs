using PropertySuite.Properties.Infra;
using PropertySuite.Engine.Config;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;
using Xunit.Abstractions;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// The invariants have teeth: for every buggy variant of the catalogue, random generation at the
/// default budget finds a violation of an invariant the variant declares it breaks, and the
/// shrunk repro has at most the variant's MaxReproOps operation lines (Generators/VariantTargets.cs). Every correct variant
/// passes the same property. Both are theories over KernelVariants.All, so a new variant is
/// covered as soon as it is catalogued; one whose operations no family generates yet fails here
/// (with what was generated), it is never skipped. Each writes its statistics to
/// TestResults/statistics/ (StatisticsFile), visible without raising the verbosity.
/// </summary>
[Trait("Category", "harness")]
public class MetaTests(ITestOutputHelper output)
{
    /// <summary>The buggy variants whose search focuses on none of the newer mechanism families
    /// (HugeTLB, HVO, the races, BBM); <see cref="MechanismMetaTests"/> takes the rest, so that
    /// the two halves run in parallel (xunit runs one class's rows in sequence).</summary>
    public static TheoryData<string> BuggyVariants() => Names(v => !v.Correct && !MechanismMetaTests.IsMechanism(v));

    internal static TheoryData<string> Names(Func<NamedVariant, bool> which)
    {
        var data = new TheoryData<string>();
        foreach (var v in KernelVariants.All.Where(which)) data.Add(v.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(BuggyVariants))]
    public void BuggyVariantIsFoundAndShrunk(string variant) => FindAndShrink(output, variant);

    /// <summary>The search and its verdicts; the property name (seeds, filters) is
    /// MetaTests.BuggyVariantIsFoundAndShrunk/VARIANT whichever class runs the row.</summary>
    internal static void FindAndShrink(ITestOutputHelper output, string variant)
    {
        var v = VariantTargets.Of(variant);
        var budget = Budget.FromEnvironment();
        if (v.SearchEffort > budget.Tests && budget.Replay is null) budget = budget with { Tests = v.SearchEffort };
        string name = $"{nameof(MetaTests)}.{nameof(BuggyVariantIsFoundAndShrunk)}/{variant}";

        var result = ScenarioProperty.Check(name, ScenarioOptions.For(variant, budget), budget);

        output.WriteLine($"{variant}: {result.Pbt.TestsRun} test(s), find {result.TimeToFind.TotalMilliseconds:F0} ms, shrink {result.TimeToShrink.TotalMilliseconds:F0} ms");
        output.WriteLine(result.Statistics.Render());
        output.WriteLine($"statistics: {StatisticsFile.Write(name, result.Statistics.Render())}");
        string filter = ScenarioProperty.TestFilter(name);
        if (result.Failure is not { } f)
        {
            var last = result.Pbt.Runs[^1];
            Assert.Fail($"random generation found no violation of {string.Join(" or ", v.BreakNames)} for the buggy variant {variant} in {result.Pbt.TestsRun} tests "
                + $"({result.Pbt.Runs.Count} FsCheck run(s) of {result.Pbt.TestsPerRun}, base seed {PbtRunner.BaseSeed(name, budget)}, last run {last}).\n"
                + $"Re-run exactly this: {PbtRunner.ReplayCommandForFilter(filter, last.ToString(), result.Pbt.TestsPerRun)}\n"
                + "Does a family in Generators/Families generate the operations this bug needs (and enough of them)? What was generated:\n"
                + result.Statistics.Render());
            return;
        }
        output.WriteLine(ScenarioProperty.ReproText(name, f, filter));
        string? problem = !v.BreakNames.Contains(f.Invariant)
            ? $"{variant} declares it breaks {string.Join(", ", v.BreakNames)}, but generation found {f.Run}"
            : f.ReproOps > v.MaxReproOps
                ? $"{variant}: the shrunk repro has {f.ReproOps} operations, more than the variant's bound {v.MaxReproOps}"
                : null;
        if (problem is null) return;
        string text = ScenarioProperty.ReproText(name, f, filter);
        string path = PbtRunner.WriteReproAtomically(budget.ReproDir, ScenarioProperty.ReproFileName(f.Shrunk, name), text);
        var commands = ScenarioProperty.ReplayCommandsForFilter(filter, f, result.Pbt.TestsPerRun, path);
        Assert.Fail($"{problem}\nRepro (written to {path}):\n{text}"
            + $"Replay the failing case: {commands[0]}\nReplay the whole run:    {commands[1]}\nReplay the repro file:   {commands[2]}\n");
    }
}

/// <summary>The buggy variants of vmalloc, memory hot-plug and HGM (their search focuses one of
/// those families): the same property as <see cref="MetaTests.BuggyVariantIsFoundAndShrunk"/>,
/// in a class of its own so that it runs beside the other half.</summary>
[Trait("Category", "harness")]
public class MechanismMetaTests(ITestOutputHelper output)
{
    internal static bool IsMechanism(NamedVariant v) =>
        VariantTargets.Of(v.Name).Focus.Any(f => f == typeof(Generators.Families.VmallocFamily) || f == typeof(Generators.Families.HotplugFamily) || f == typeof(Generators.Families.HgmFamily));

    public static TheoryData<string> BuggyVariants() => MetaTests.Names(v => !v.Correct && IsMechanism(v));

    [Theory]
    [MemberData(nameof(BuggyVariants))]
    public void BuggyVariantIsFoundAndShrunk(string variant) => MetaTests.FindAndShrink(output, variant);
}

/// <summary>Every correct variant passes the property the buggy ones fail, at the default
/// budget (a class of its own, run beside the buggy halves).</summary>
[Trait("Category", "harness")]
public class CorrectVariantMetaTests(ITestOutputHelper output)
{
    public static TheoryData<string> CorrectVariants() => MetaTests.Names(v => v.Correct);

    [Theory]
    [MemberData(nameof(CorrectVariants))]
    public void CorrectVariantHoldsEveryInvariant(string variant)
    {
        var budget = Budget.FromEnvironment();
        string name = $"{nameof(MetaTests)}.{nameof(CorrectVariantHoldsEveryInvariant)}/{variant}";

        var result = ScenarioProperty.Assert(name, ScenarioOptions.For(variant, budget), budget);

        output.WriteLine($"{variant}: {result.Pbt.TestsRun} tests in {result.TimeToFind.TotalMilliseconds:F0} ms");
        output.WriteLine(result.Statistics.Render());
        output.WriteLine($"statistics: {StatisticsFile.Write(name, result.Statistics.Render())}");
    }

    /// <summary>The correct variants also pass when configurations and variants are drawn
    /// per scenario, the way `fuzz` runs without --variant.</summary>
    [Fact]
    public void AnyCorrectVariantOnAnyConfigurationHoldsEveryInvariant()
    {
        var budget = Budget.FromEnvironment();
        var result = ScenarioProperty.Assert($"{nameof(MetaTests)}.{nameof(AnyCorrectVariantOnAnyConfigurationHoldsEveryInvariant)}",
            new ScenarioOptions { MaxSteps = budget.MaxSteps }, budget);
        output.WriteLine(result.Statistics.Render());
        output.WriteLine($"statistics: {StatisticsFile.Write(result.Name, result.Statistics.Render())}");
    }
}
