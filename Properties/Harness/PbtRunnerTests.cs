using FsCheck;
using FsCheck.Fluent;
using PropertySuite.Generators.Harness;

namespace PropertySuite.Properties.Harness;

[Trait("Category", "harness")]
public class PbtRunnerTests
{
    private const string ToyName = "PbtRunnerTests.Toy";

    // Arrays of 0..100; the toy claim "no element reaches 50" is false, and its unique
    // minimal counterexample under the shrinker below is [50].
    private static readonly Gen<int[]> SmallInts = Gen.ArrayOf(Gen.Choose(0, 100));

    private static IEnumerable<int> Bisect(int x) =>
        x > 0 ? new[] { 0, x / 2, x - 1 }.Distinct().Where(c => c < x) : [];

    private static IEnumerable<int[]> ShrinkInts(int[] xs) => SequenceShrinker.Candidates(xs, Bisect);

    private static string? NoElementReaches50(int[] xs) =>
        xs.FirstOrDefault(x => x >= 50) is var big && big >= 50 ? $"element {big} >= 50" : null;

    private static string? AlwaysHolds(int[] xs) => null;

    /// <summary>A budget independent of this process's PS_* variables.</summary>
    private static Budget Defaults(params (string Name, string? Value)[] vars) =>
        Budget.Parse(vars.ToDictionary(v => v.Name, v => v.Value));

    private static PbtResult<int[]> RunToy(Budget budget) =>
        PbtRunner.Run(ToyName, SmallInts, ShrinkInts, NoElementReaches50, budget);

    /// <summary>Field by field: record equality would compare the arrays by reference.</summary>
    private static void AssertSameFailure(PbtFailure<int[]>? expected, PbtFailure<int[]>? actual)
    {
        Assert.NotNull(expected);
        Assert.NotNull(actual);
        Assert.Equal(expected.Original, actual.Original);
        Assert.Equal(expected.Shrunk, actual.Shrunk);
        Assert.Equal(expected.Message, actual.Message);
        Assert.Equal(expected.RunReplay, actual.RunReplay);
        Assert.Equal(expected.StepReplay, actual.StepReplay);
        Assert.Equal(expected.TestsRun, actual.TestsRun);
        Assert.Equal(expected.Shrinks, actual.Shrinks);
    }

    [Fact]
    public void FailingPropertyReportsTheShrunkValueAndReplayTokens()
    {
        var result = RunToy(Defaults());

        Assert.False(result.Passed);
        var failure = result.Failure!;
        Assert.Contains(failure.Original, x => x >= 50);
        Assert.Equal([50], failure.Shrunk);
        Assert.Equal("element 50 >= 50", failure.Message);
        Assert.Null(failure.Cause);
        Assert.Matches(@"^\d+,\d+$", failure.RunReplay);
        Assert.Matches(@"^\d+,\d+,\d+$", failure.StepReplay);
        Assert.InRange(failure.TestsRun, 1, 200);
        Assert.True(failure.Shrinks > 0);
        Assert.Equal(failure.TestsRun, result.TestsRun);
        Assert.Single(result.Runs);
        Assert.Equal(result.Runs[0].ToString(), failure.RunReplay);
    }

    [Fact]
    public void ReplayingTheFailingStepReproducesTheSameShrunkValueAtOnce()
    {
        var first = RunToy(Defaults()).Failure!;

        var replayed = RunToy(Defaults(("PS_REPLAY", first.StepReplay))).Failure!;

        Assert.Equal(1, replayed.TestsRun);
        Assert.Equal(first.Original, replayed.Original);
        Assert.Equal(first.Shrunk, replayed.Shrunk);
        Assert.Equal(first.Message, replayed.Message);
    }

    [Fact]
    public void ReplayingTheWholeRunReproducesTheSameFailure()
    {
        var first = RunToy(Defaults()).Failure!;

        var replayed = RunToy(Defaults(("PS_REPLAY", first.RunReplay))).Failure!;

        AssertSameFailure(first, replayed);
    }

    [Fact]
    public void SameNameAndBudgetGiveTheSameResult()
    {
        var a = RunToy(Defaults());
        var b = RunToy(Defaults());

        AssertSameFailure(a.Failure, b.Failure);
        Assert.Equal(a.Runs, b.Runs);
        Assert.Equal(a.TestsRun, b.TestsRun);
    }

    [Fact]
    public void SeedIsDerivedFromTheNameTheSeedVariableAndTheShard()
    {
        var byName = RunToy(Defaults()).Runs[0];
        var otherName = PbtRunner.Run("Other", SmallInts, ShrinkInts, AlwaysHolds, Defaults()).Runs[0];
        var bySeed = RunToy(Defaults(("PS_SEED", "77"))).Runs[0];
        var byShard = RunToy(Defaults(("PS_SHARD", "1/3"))).Runs[0];

        Assert.Equal(new ReplayToken(Shard.Single.SeedFor(PbtRunner.StableHash(ToyName), 0), PbtRunner.GoldenGamma), byName);
        Assert.Equal(new ReplayToken(Shard.Single.SeedFor(77, 0), PbtRunner.GoldenGamma), bySeed);
        Assert.Equal(new ReplayToken(new Shard(1, 3).SeedFor(PbtRunner.StableHash(ToyName), 0), PbtRunner.GoldenGamma), byShard);
        Assert.Equal(4, new[] { byName, otherName, bySeed, byShard }.Distinct().Count());
    }

    [Fact]
    public void PassingPropertyPasses()
    {
        var result = PbtRunner.Run(ToyName, SmallInts, ShrinkInts, AlwaysHolds, Defaults(("PS_TESTS", "50")));

        Assert.True(result.Passed);
        Assert.Null(result.Failure);
        Assert.Equal(50, result.TestsRun);
        Assert.Single(result.Runs);
    }

    [Fact]
    public void ExceptionFromTheCheckIsAFailureWithItsCause()
    {
        var result = PbtRunner.Run(ToyName, SmallInts, ShrinkInts,
            xs => xs.Length >= 2 ? throw new InvalidOperationException($"crashed on {xs.Length}") : null,
            Defaults());

        var failure = result.Failure!;
        Assert.IsType<InvalidOperationException>(failure.Cause);
        Assert.Equal("System.InvalidOperationException: crashed on 2", failure.Message);
        Assert.Equal(2, failure.Shrunk.Length);
        Assert.Equal([0, 0], failure.Shrunk);
    }

    [Fact]
    public void BatchesUseConsecutiveShardSeedsUntilTheGateCloses()
    {
        var budget = Defaults(("PS_TESTS", "20"), ("PS_SEED", "5"), ("PS_SHARD", "1/2"));

        var result = PbtRunner.RunBatches(ToyName, SmallInts, ShrinkInts, AlwaysHolds, budget, batch => batch < 3);

        Assert.True(result.Passed);
        Assert.Equal(60, result.TestsRun);
        Assert.Equal(
            Enumerable.Range(0, 3).Select(b => new ReplayToken(new Shard(1, 2).SeedFor(5, b), PbtRunner.GoldenGamma)),
            result.Runs);
    }

    [Fact]
    public void BatchesStopAtTheFirstFailure()
    {
        var result = PbtRunner.RunBatches(ToyName, SmallInts, ShrinkInts, NoElementReaches50, Defaults(), _ => true);

        Assert.False(result.Passed);
        Assert.Equal([50], result.Failure!.Shrunk);
        Assert.Equal(result.Runs[^1].ToString(), result.Failure.RunReplay);
    }

    [Fact]
    public void TimeBudgetStillReportsTheSameFirstFailure()
    {
        // The toy fails in its first batch, so the wall clock cannot change the outcome.
        var timed = RunToy(Defaults(("PS_TIME", "10s")));
        var untimed = RunToy(Defaults());

        AssertSameFailure(untimed.Failure, timed.Failure);
        Assert.Equal(untimed.Runs, timed.Runs);
    }

    [Fact]
    public void ReplayRunsOnceEvenWithATimeBudget()
    {
        var step = RunToy(Defaults()).Failure!.StepReplay;

        var result = PbtRunner.Run(ToyName, SmallInts, ShrinkInts, AlwaysHolds,
            Defaults(("PS_REPLAY", step), ("PS_TIME", "1h"), ("PS_TESTS", "5")));

        Assert.True(result.Passed);
        Assert.Equal([ReplayToken.TryParse(step, out var token, out _) ? token! : throw new InvalidOperationException()], result.Runs);
    }

    [Theory]
    [InlineData("", 0xcbf29ce484222325UL)]
    [InlineData("a", 0xaf63dc4c8601ec8cUL)]
    [InlineData("foobar", 0x85944171f73967e8UL)]
    public void StableHashIsFnv1a64(string text, ulong expected)
    {
        Assert.Equal(expected, PbtRunner.StableHash(text));
    }

    [Fact]
    public void ReplayCommandIsPasteReady()
    {
        Assert.Equal(
            "PS_REPLAY=1,3,7 dotnet test --filter \"FullyQualifiedName~Props.Claim\"",
            PbtRunner.ReplayCommand("Props.Claim", "1,3,7"));
        Assert.Equal(
            "PS_TESTS=200 PS_REPLAY=1,3 dotnet test --filter \"FullyQualifiedName~Props.Claim\"",
            PbtRunner.ReplayCommand("Props.Claim", "1,3", tests: 200));
    }

    [Fact]
    public void ReportNamesTheMessageTheShrunkValueAndBothReplays()
    {
        var result = RunToy(Defaults());
        var f = result.Failure!;

        var report = PbtRunner.Report(result, xs => string.Join("\n", xs.Select(x => $"step {x}")));

        Assert.Contains($"Property {ToyName} falsified after {f.TestsRun} test(s) and {f.Shrinks} shrink(s).", report);
        Assert.Contains("element 50 >= 50\nShrunk:\nstep 50\n", report);
        Assert.Contains(PbtRunner.ReplayCommand(ToyName, f.StepReplay), report);
        Assert.Contains(PbtRunner.ReplayCommand(ToyName, f.RunReplay, tests: 200), report);
        Assert.Equal(report, new PropertyFailedException(report).Message);
    }

    [Fact]
    public void WriteReproAtomicallyCreatesTheDirectoryAndReplacesWholeFiles()
    {
        var dir = Path.Combine(Path.GetTempPath(), "ps-repro-" + Guid.NewGuid().ToString("N"), "nested");
        try
        {
            var path = PbtRunner.WriteReproAtomically(dir, "bug.repro", "first\n");
            Assert.Equal("first\n", File.ReadAllText(path));

            PbtRunner.WriteReproAtomically(dir, "bug.repro", "second\n");

            Assert.Equal("second\n", File.ReadAllText(path));
            Assert.Equal([path], Directory.GetFiles(dir)); // no temporary file left behind
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(dir)!, recursive: true);
        }
    }

    [Theory]
    [InlineData("../escape.repro")]
    [InlineData("sub/bug.repro")]
    [InlineData("..")]
    public void WriteReproAtomicallyRefusesPaths(string fileName)
    {
        Assert.Throws<ArgumentException>(() => PbtRunner.WriteReproAtomically(Path.GetTempPath(), fileName, "x"));
    }
}
