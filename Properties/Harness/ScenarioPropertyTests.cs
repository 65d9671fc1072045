using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// ScenarioProperty: a failure is shrunk, written atomically as a repro with its expect line,
/// replayable from the file and from the printed seeds; statistics count generated scenarios.
/// </summary>
[Trait("Category", "harness")]
public sealed class ScenarioPropertyTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "ps-repros-" + Guid.NewGuid().ToString("N"));

    private Budget TestBudget(params (string Name, string? Value)[] vars) =>
        Budget.Parse(vars.Append(("PS_REPRO_DIR", _dir)).ToDictionary(v => v.Item1, v => v.Item2));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private const string Name = "ScenarioPropertyTests.Flush/broken-vunmap-skips-flush";

    [Fact]
    public void FailureIsWrittenAndThrownWithEverythingNeededToReplayIt()
    {
        var budget = TestBudget();
        var e = Assert.Throws<PropertyFailedException>(() =>
            ScenarioProperty.Assert(Name, ScenarioOptions.For("broken-vunmap-skips-flush", budget, "x86_64-4k-l4"), budget));

        // x86: on arm64, mapping the VA again over the unflushed break is a BreakBeforeMake violation too.
        Assert.Equal("TlbCoherentAfterFlush", e.Invariant);
        Assert.NotNull(e.Step);
        Assert.False(string.IsNullOrEmpty(e.Evidence));
        Assert.Contains($"expect TlbCoherentAfterFlush at {e.Step}\n", e.ReproText, StringComparison.Ordinal);
        Assert.Equal(_dir, Path.GetDirectoryName(e.ReproPath));
        Assert.Equal(e.ReproText, File.ReadAllText(e.ReproPath!));
        Assert.Equal([Path.GetFileName(e.ReproPath!)], Directory.GetFiles(_dir).Select(Path.GetFileName));
        Assert.Equal($"PS_REPLAY={e.StepReplay} dotnet test --filter 'FullyQualifiedName~ScenarioPropertyTests.Flush&DisplayName~%22broken-vunmap-skips-flush%22\\)'", e.ReplayCommands[0]);
        Assert.Contains($"# {e.ReplayCommands[0]} replays the failing case\n", e.ReproText, StringComparison.Ordinal);
        Assert.StartsWith($"PS_TESTS={budget.Tests} PS_REPLAY={e.RunReplay} ", e.ReplayCommands[1], StringComparison.Ordinal);
        Assert.Equal($"{ScenarioProperty.CliReplay} {e.ReproPath}", e.ReplayCommands[2]);
        foreach (var part in new[] { e.ReproText!, e.ReplayCommands[0], e.ReplayCommands[2], $"TlbCoherentAfterFlush violated at step {e.Step}: {e.Evidence}" })
            Assert.Contains(part, e.Message, StringComparison.Ordinal);

        var replayed = ScenarioRunner.Run(Repro.Parse(File.ReadAllText(e.ReproPath!)));
        Assert.Equal($"TlbCoherentAfterFlush violated at step {e.Step}: {e.Evidence}", replayed.ToString());
    }

    [Fact]
    public void TwoPropertiesThatShrinkToTheSameScenarioWriteTwoFiles()
    {
        var budget = TestBudget(("PS_SEED", "7")); // the same seed: both draw and shrink the same scenario
        var options = ScenarioOptions.For("broken-vunmap-skips-flush", budget, "x86_64-4k-l4");
        var a = Assert.Throws<PropertyFailedException>(() => ScenarioProperty.Assert(Name, options, budget));
        var b = Assert.Throws<PropertyFailedException>(() => ScenarioProperty.Assert(Name + "-again", options, budget with { ReproDir = _dir + "-b" }));
        try
        {
            Assert.Equal(Repro.Parse(a.ReproText!).ToString(), Repro.Parse(b.ReproText!).ToString());
            Assert.NotEqual(Path.GetFileName(a.ReproPath), Path.GetFileName(b.ReproPath));
        }
        finally
        {
            Directory.Delete(_dir + "-b", recursive: true);
        }
    }

    [Fact]
    public void AStoredReproIsReplayedFirstUntilDeleted()
    {
        var budget = TestBudget(("PS_TESTS", "5"));
        Directory.CreateDirectory(_dir);
        string stored = Path.Combine(_dir, "broken-vfree-leaks-page-FrameConservation-00000000.repro");
        // An earlier run's repro of the bug this property looks for.
        File.WriteAllText(stored, "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 1\nvariant broken-vfree-leaks-page\nv1 = vmalloc 4K\nvfree v1\nexpect FrameConservation at 2\n");

        var e = Assert.Throws<PropertyFailedException>(() =>
            ScenarioProperty.Assert("ScenarioPropertyTests.Stored/broken-vfree-leaks-page", ScenarioOptions.For("broken-vfree-leaks-page", budget), budget));
        Assert.Equal(stored, e.ReproPath);
        Assert.Equal("FrameConservation", e.Invariant);
        Assert.Contains("still fails (replayed before generating anything new)", e.Message, StringComparison.Ordinal);
        Assert.Single(Directory.GetFiles(_dir)); // nothing new was generated or written

        // A property whose options do not cover the file ignores it.
        ScenarioProperty.Assert("ScenarioPropertyTests.Stored/default", ScenarioOptions.For("default", budget), budget);

        // Pinned (a file of the same name in the corpus directory): skipped.
        string pinned = _dir + "-pinned";
        Directory.CreateDirectory(pinned);
        try
        {
            File.Copy(stored, Path.Combine(pinned, Path.GetFileName(stored)));
            Assert.Empty(FailureDatabase.Replay(_dir, ScenarioOptions.For("broken-vfree-leaks-page", budget), pinned));
            Assert.Single(FailureDatabase.Replay(_dir, ScenarioOptions.For("broken-vfree-leaks-page", budget)));
        }
        finally
        {
            Directory.Delete(pinned, recursive: true);
        }
    }

    [Fact]
    public void StepReplayReproducesTheSameReproAfterOneTest()
    {
        var budget = TestBudget();
        var first = ScenarioProperty.Check(Name, ScenarioOptions.For("broken-vunmap-skips-flush", budget), budget).Failure!;

        var replay = ScenarioProperty.Check(Name, ScenarioOptions.For("broken-vunmap-skips-flush", budget), TestBudget(("PS_REPLAY", first.StepReplay))).Failure!;

        Assert.Equal(1, replay.TestsRun);
        Assert.Equal(ScenarioProperty.ReproText(Name, first).Replace($"found after {first.TestsRun} test(s)", "found after 1 test(s)", StringComparison.Ordinal),
            ScenarioProperty.ReproText(Name, replay));
        Assert.Equal(first.Original.ToString(), replay.Original.ToString());
    }

    [Fact]
    public void PassingPropertyCountsWhatItGenerated()
    {
        var budget = TestBudget(("PS_TESTS", "40"));
        var result = ScenarioProperty.Assert("ScenarioPropertyTests.Passing", ScenarioOptions.For("default", budget), budget);

        Assert.True(result.Passed);
        Assert.Equal(40, result.Statistics.Scenarios);
        Assert.Equal(40, result.Statistics.Variants["default"]);
        Assert.True(result.Statistics.Generated.Values.Sum() > 40);
        Assert.True(result.Statistics.Applied.Values.Sum() <= result.Statistics.Steps);
        Assert.False(Directory.Exists(_dir) && Directory.EnumerateFileSystemEntries(_dir).Any());
        Assert.Contains("40 scenarios", result.Statistics.Render(), StringComparison.Ordinal);
    }

    [Fact]
    public void ShrinkingKeepsTheInvariantThatWasFound()
    {
        // One candidate failing differently must not be taken: the signature pins the first failure.
        var a = new RunResult(3, new Violation("A", "x"), 3, null, new Dictionary<string, int>(), new Dictionary<string, long>());
        var b = a with { Violation = new Violation("B", "x") };
        var crash = a with { Violation = new Violation(RunResult.EngineExceptionName, "boom"), EngineError = new InvalidOperationException() };
        Assert.NotEqual(ScenarioProperty.Signature(a), ScenarioProperty.Signature(b));
        Assert.Equal($"{RunResult.EngineExceptionName}:System.InvalidOperationException", ScenarioProperty.Signature(crash));
    }
}
