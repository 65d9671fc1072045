using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;
using PropertySuite.Properties.Infra;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// The regression corpus: every Snapshots/Corpus/*.repro is replayed on every run and must show
/// exactly its `expect` line (the invariant and the step, or none). Add a shrunk repro from a
/// failing property or `fuzz --out` here to pin it.
/// </summary>
[Trait("Category", "harness")]
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

    /// <summary>
    /// A corpus file's comments say what it shows: the comment line after its origin line is the
    /// evidence the replay gives now, so a change in the engine's wording or frame numbers shows
    /// up here instead of leaving a stale comment. With PS_ACCEPT_SNAPSHOTS=1 the line is
    /// rewritten from the replay (the same switch that accepts snapshots).
    /// </summary>
    [Theory]
    [MemberData(nameof(CorpusFiles))]
    public void CommentsStateTheEvidenceTheReplayGives(string file)
    {
        string path = Path.Combine(CorpusPath, file);
        string text = File.ReadAllText(path).ReplaceLineEndings("\n");
        var s = Repro.Parse(text);
        var r = ScenarioRunner.Run(s);
        if (r.Violation is null) return; // `expect none`: nothing to state
        var lines = text.Split('\n');
        // A PS_REPLAY seed replays the generator version that printed it; a pinned file outlives it.
        Assert.DoesNotContain(lines, l => l.StartsWith("# PS_REPLAY=", StringComparison.Ordinal));
        Assert.True(lines.Length > 2 && lines[1].StartsWith("# ", StringComparison.Ordinal),
            $"{file}: the line after the version line must be a comment saying where the repro comes from");
        string evidence = "# " + r.Violation.Evidence.ReplaceLineEndings(" ");
        if (lines[2] == evidence) return;
        if (Snapshot.AcceptFromEnvironment())
        {
            lines[2] = lines[2].StartsWith('#') ? evidence : evidence + "\n" + lines[2];
            Generators.Harness.PbtRunner.WriteReproAtomically(CorpusPath, file, string.Join('\n', lines));
            return;
        }
        Assert.Fail($"{file}: line 3 says\n  {lines[2]}\nbut the replay gives\n  {evidence}\n"
            + $"Rewrite it from the replay with: {Snapshot.AcceptVariable}=1 dotnet test --filter FullyQualifiedName~CorpusTests");
    }

    [Fact]
    public void CorpusPinsEveryCoreBrokenVariant()
    {
        var variants = Directory.GetFiles(CorpusPath, "*.repro").Select(f => Repro.Parse(File.ReadAllText(f)).VariantName).ToHashSet();
        foreach (var v in new[] { "broken-free-table-keeps-parent", "broken-vfree-leaks-page", "broken-vunmap-skips-last-pte", "broken-vunmap-skips-flush", "broken-synchronize-rcu-no-wait" })
            Assert.Contains(v, variants);
    }
}
