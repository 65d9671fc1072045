using PropertySuite.Generators.Harness;

namespace PropertySuite.Properties.Infra;

/// <summary>[PsProperty] takes the suite's budget: PS_TESTS, PS_REPLAY, PS_SEED, PS_SHARD.</summary>
[Trait("Category", "infra")]
public class PsPropertyTests
{
    private static Budget B(params (string, string?)[] vars) => Budget.Parse(vars.ToDictionary(v => v.Item1, v => v.Item2));

    [Fact]
    public void BudgetVariablesSetMaxTestAndTheStartOfTheRun()
    {
        var (tests, start) = PsPropertyAttribute.Settings("C.M", B());
        Assert.Equal(Budget.DefaultTests, tests);
        Assert.Equal(new ReplayToken(Shard.Single.SeedFor(PbtRunner.StableHash("C.M"), 0), PbtRunner.GoldenGamma), start);
        Assert.NotEqual(start, PsPropertyAttribute.Settings("C.Other", B()).Start); // each property its own seed

        Assert.Equal(17, PsPropertyAttribute.Settings("C.M", B(("PS_TESTS", "17"))).MaxTest);
        Assert.Equal(new ReplayToken(5, 7, 3), PsPropertyAttribute.Settings("C.M", B(("PS_REPLAY", "5,7,3"))).Start);
        Assert.Equal(new ReplayToken(Shard.Single.SeedFor(42, 0), PbtRunner.GoldenGamma), PsPropertyAttribute.Settings("C.M", B(("PS_SEED", "42"))).Start);
        Assert.Equal(new ReplayToken(new Shard(1, 4).SeedFor(42, 0), PbtRunner.GoldenGamma), PsPropertyAttribute.Settings("C.M", B(("PS_SEED", "42"), ("PS_SHARD", "1/4"))).Start);
    }

    [Fact]
    public void TheAttributeNamesItsPropertyClassDotMethodAndPrintsBothReplayForms()
    {
        var a = new PsPropertyAttribute("Prop", "/src/Properties/Area/SomeTests.cs");
        Assert.Equal("SomeTests.Prop", a.Name);
        Assert.Equal(a.Start.ToString(), a.Replay);
        Assert.Contains($"[PsProperty(Replay = \"{a.Start}\")]", a.ReplayNote(), StringComparison.Ordinal);
        Assert.Contains($"PS_REPLAY={a.Start} dotnet test --filter 'FullyQualifiedName~SomeTests.Prop'", a.ReplayNote(), StringComparison.Ordinal);
    }

    [Fact]
    public void StatisticsGoToOneFilePerPropertyUnderTestResults()
    {
        Assert.Equal("MetaTests.Correct_default_x.txt", StatisticsFile.FileName("MetaTests.Correct/default x"));
        string path = StatisticsFile.Write("PsPropertyTests.Statistics/probe", "3 scenarios\n");
        try
        {
            Assert.Equal(Path.Combine(Snapshot.FindRepositoryRoot(), "TestResults", "statistics", "PsPropertyTests.Statistics_probe.txt"), path);
            Assert.Equal("PsPropertyTests.Statistics/probe\n3 scenarios\n", File.ReadAllText(path));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
