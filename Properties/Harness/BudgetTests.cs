using PropertySuite.Generators.Harness;

namespace PropertySuite.Properties.Harness;

[Trait("Category", "harness")]
public class BudgetTests
{
    private static Budget Parse(params (string Name, string? Value)[] vars) =>
        Budget.Parse(vars.ToDictionary(v => v.Name, v => v.Value));

    private static BudgetException Refused(string name, string value) =>
        Assert.Throws<BudgetException>(() => Parse((name, value)));

    [Fact]
    public void UnsetVariablesGiveTheDefaults()
    {
        var budget = Parse();

        Assert.Equal(200, budget.Tests);
        Assert.Null(budget.Time);
        Assert.Null(budget.Seed);
        Assert.Null(budget.Replay);
        Assert.Equal(Shard.Single, budget.Shard);
        Assert.Equal(Budget.DefaultMaxSteps, budget.MaxSteps);
        Assert.Equal("repros", Path.GetFileName(budget.ReproDir));
    }

    [Fact]
    public void DefaultReproDirIsUnderTheRepositoryRootWhenThereIsOne()
    {
        var root = Budget.FindRepositoryRoot(Directory.GetCurrentDirectory());
        var expected = Path.Combine(root ?? Directory.GetCurrentDirectory(), "repros");

        Assert.Equal(expected, Parse().ReproDir);
    }

    [Fact]
    public void RelativeReproDirIsTakenFromTheRepositoryRoot()
    {
        var root = Budget.FindRepositoryRoot(Directory.GetCurrentDirectory()) ?? Directory.GetCurrentDirectory();

        Assert.Equal(Path.Combine(root, "out", "repros"), Parse(("PS_REPRO_DIR", "out/repros")).ReproDir);
    }

    [Fact]
    public void BlankValuesCountAsUnset()
    {
        var budget = Parse(("PS_TESTS", ""), ("PS_TIME", "  "), ("PS_SHARD", null));

        Assert.Equal(Budget.DefaultTests, budget.Tests);
        Assert.Null(budget.Time);
        Assert.Equal(Shard.Single, budget.Shard);
    }

    [Fact]
    public void EveryVariableIsRead()
    {
        var budget = Parse(
            ("PS_TESTS", "1000"),
            ("PS_TIME", "10m"),
            ("PS_SEED", "18446744073709551615"),
            ("PS_REPLAY", "12,7,30"),
            ("PS_SHARD", "2/4"),
            ("PS_REPRO_DIR", "/tmp/ps-repros"),
            ("PS_MAX_STEPS", "500"));

        Assert.Equal(1000, budget.Tests);
        Assert.Equal(TimeSpan.FromMinutes(10), budget.Time);
        Assert.Equal(ulong.MaxValue, budget.Seed);
        Assert.Equal(new ReplayToken(12, 7, 30), budget.Replay);
        Assert.Equal(new Shard(2, 4), budget.Shard);
        Assert.Equal("/tmp/ps-repros", budget.ReproDir);
        Assert.Equal(500, budget.MaxSteps);
    }

    [Theory]
    [InlineData("500ms", 5_000_000L)]
    [InlineData("90s", 900_000_000L)]
    [InlineData("10m", 6_000_000_000L)]
    [InlineData("2h", 72_000_000_000L)]
    [InlineData("1.5h", 54_000_000_000L)]
    [InlineData("0.25s", 2_500_000L)]
    [InlineData(" 30s ", 300_000_000L)]
    public void DurationsParseWithInvariantCulture(string text, long ticks)
    {
        Assert.Equal(TimeSpan.FromTicks(ticks), Parse(("PS_TIME", text)).Time);
    }

    [Theory]
    [InlineData("PS_TESTS", "0", "must be a positive integer")]
    [InlineData("PS_TESTS", "-5", "must be a positive integer")]
    [InlineData("PS_TESTS", "lots", "must be a positive integer")]
    [InlineData("PS_TESTS", "99999999999", "must be a positive integer")]
    [InlineData("PS_MAX_STEPS", "0", "must be a positive integer")]
    [InlineData("PS_MAX_STEPS", "1e3", "must be a positive integer")]
    [InlineData("PS_TIME", "90", "duration must be a positive number followed by ms, s, m or h")]
    [InlineData("PS_TIME", "1,5h", "duration must be a positive number followed by ms, s, m or h")]
    [InlineData("PS_TIME", "-5s", "duration must be a positive number followed by ms, s, m or h")]
    [InlineData("PS_TIME", "10 minutes", "duration must be a positive number followed by ms, s, m or h")]
    [InlineData("PS_TIME", "0s", "duration must be positive")]
    [InlineData("PS_TIME", "99999999999999999h", "duration is too long to represent")]
    [InlineData("PS_SEED", "-1", "seed must be a decimal integer")]
    [InlineData("PS_SEED", "18446744073709551616", "seed must be a decimal integer")]
    [InlineData("PS_SEED", "0x10", "seed must be a decimal integer")]
    [InlineData("PS_REPLAY", "12", "replay must be seed,gamma or seed,gamma,size")]
    [InlineData("PS_REPLAY", "1,2,3,4", "replay must be seed,gamma or seed,gamma,size")]
    [InlineData("PS_REPLAY", "1,2", "replay gamma must be odd")]
    [InlineData("PS_REPLAY", "x,3", "replay seed must be an unsigned 64-bit decimal integer")]
    [InlineData("PS_REPLAY", "1,y", "replay gamma must be an unsigned 64-bit decimal integer")]
    [InlineData("PS_REPLAY", "1,3,-1", "replay size must be a non-negative integer")]
    [InlineData("PS_SHARD", "3/2", "shard index must be < shard count")]
    [InlineData("PS_SHARD", "2/2", "shard index must be < shard count")]
    [InlineData("PS_SHARD", "0/0", "shard count must be >= 1")]
    [InlineData("PS_SHARD", "-1/2", "shard must be written i/N")]
    [InlineData("PS_SHARD", "1", "shard must be written i/N")]
    [InlineData("PS_SHARD", "1/2/3", "shard must be written i/N")]
    public void BadValueIsRefusedNamingTheVariableTheValueAndTheRule(string name, string value, string rule)
    {
        var error = Refused(name, value);

        Assert.Equal(name, error.Variable);
        Assert.Equal(value.Trim(), error.Value);
        Assert.StartsWith($"{name}={value.Trim()}: ", error.Message);
        Assert.Contains(rule, error.Message);
    }

    [Fact]
    public void ShardIndexBeyondCountHasTheDocumentedMessage()
    {
        Assert.Equal("PS_SHARD=3/2: shard index must be < shard count", Refused("PS_SHARD", "3/2").Message);
    }

    [Fact]
    public void ReplayAcceptsFsCheckOwnParenthesisedForm()
    {
        var budget = Parse(("PS_REPLAY", "(11147172402794525999, 1443121846782805189, 61)"));

        Assert.Equal(new ReplayToken(11147172402794525999, 1443121846782805189, 61), budget.Replay);
        Assert.Equal("11147172402794525999,1443121846782805189,61", budget.Replay!.ToString());
    }

    [Fact]
    public void ReplayTokenRoundTripsBothForms()
    {
        foreach (var text in new[] { "1,3", "18446744073709551615,9,0" })
        {
            Assert.True(ReplayToken.TryParse(text, out var token, out var rule));
            Assert.Null(rule);
            Assert.Equal(text, token!.ToString());
        }
    }

    [Fact]
    public void BudgetRecordRejectsOutOfRangeFieldsEvenThroughWith()
    {
        var budget = Parse();

        Assert.Throws<ArgumentOutOfRangeException>(() => budget with { Tests = 0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => budget with { MaxSteps = -1 });
        Assert.Throws<ArgumentOutOfRangeException>(() => budget with { Time = TimeSpan.Zero });
        Assert.Equal(5, (budget with { Tests = 5 }).Tests);
    }

    [Fact]
    public void ShardsSplitSeedsDisjointlyAndDeterministically()
    {
        const ulong baseSeed = 12345;
        var seeds = new HashSet<ulong>();
        for (var i = 0; i < 4; i++)
        {
            var shard = new Shard(i, 4);
            for (long batch = 0; batch < 250; batch++)
            {
                Assert.Equal(shard.SeedFor(baseSeed, batch), new Shard(i, 4).SeedFor(baseSeed, batch));
                seeds.Add(shard.SeedFor(baseSeed, batch));
            }
        }

        Assert.Equal(1000, seeds.Count);
        // Shard i of N runs seed number batch*N + i: the same seeds as batches 0..999 on one machine.
        Assert.True(seeds.SetEquals(Enumerable.Range(0, 1000).Select(b => Shard.Single.SeedFor(baseSeed, b))));
    }

    [Fact]
    public void SeedForIsPinned()
    {
        // splitmix64 of 0: a published reference value; pins the derivation across versions.
        Assert.Equal(0xe220a8397b1dcdafUL, Shard.Single.SeedFor(0, 0));
    }

    [Fact]
    public void OwnsSplitsIndicesRoundRobin()
    {
        var owners = Enumerable.Range(0, 9).Select(t => Enumerable.Range(0, 3).Single(i => new Shard(i, 3).Owns(t)));

        Assert.Equal([0, 1, 2, 0, 1, 2, 0, 1, 2], owners);
    }

    [Fact]
    public void FromEnvironmentReadsOnlyTheDocumentedVariables()
    {
        Assert.Equal(
            ["PS_TESTS", "PS_TIME", "PS_SEED", "PS_REPLAY", "PS_SHARD", "PS_REPRO_DIR", "PS_MAX_STEPS"],
            Budget.Variables);
    }
}
