using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;
using PropertySuite.Properties.Infra;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// The regression corpus: every Snapshots/Corpus/*.repro is replayed on every run and must show
/// exactly its `expect` line (the invariant and the step, or none). Add a shrunk repro from a
/// failing property or `fuzz --out` here to pin it.
/// </summary>
public class CorpusTests
{
    public const string CorpusDirectory = "Corpus";

    private static string CorpusPath => Path.Combine(Snapshot.FindRepositoryRoot(), Snapshot.DirectoryName, CorpusDirectory);

    public static TheoryData<string> CorpusFiles()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(CorpusPath, "*.repro").Select(Path.GetFileName).Order(StringComparer.Ordinal))
            data.Add(f!);
        return data;
    }

    [Theory]
    [MemberData(nameof(CorpusFiles))]
    public void ReproShowsItsExpectedOutcome(string file)
    {
        var s = Repro.Parse(File.ReadAllText(Path.Combine(CorpusPath, file)));
        Assert.True(s.Expect is not null, $"{file} has no `expect` line: a corpus repro must state its outcome");
        if (s.Expect.Invariant is { } inv)
            Assert.True(inv == RunResult.EngineExceptionName || InvariantRegistry.All.Any(i => i.Name == inv), $"{file} expects the unknown invariant {inv}");

        var r = ScenarioRunner.Run(s);

        Assert.True(s.Expect == r.AsExpectation(), $"{file}: {s.Expect}, but the replay gives {r.AsExpectation()} ({r})");
    }

    [Fact]
    public void CorpusPinsEveryCoreBrokenVariant()
    {
        var variants = Directory.GetFiles(CorpusPath, "*.repro").Select(f => Repro.Parse(File.ReadAllText(f)).VariantName).ToHashSet();
        foreach (var v in new[] { "broken-free-table-keeps-parent", "broken-vfree-leaks-page", "broken-vunmap-skips-last-pte", "broken-vunmap-skips-flush", "broken-synchronize-rcu-no-wait" })
            Assert.Contains(v, variants);
    }
}
