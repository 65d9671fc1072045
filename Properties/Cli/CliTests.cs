using PropertySuite.Cli;
using PropertySuite.Engine.Config;
using PropertySuite.Generators;
using PropertySuite.Invariants;
using PropertySuite.Properties.Infra;

namespace PropertySuite.Properties.Cli;

/// <summary>
/// The command-line surface scripts depend on: exit codes (0 nothing found, 1 violation, 2 bad
/// input), no output file on bad input, deterministic output for a seed (except timing lines),
/// and replay reproducing what fuzz found.
/// </summary>
public sealed class CliTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "ps-cli-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Runs the CLI in-process with no PS_* variables set (unless given).</summary>
    private static (int Exit, string Out, string Err) Run(params string[] args) => RunWith(new Dictionary<string, string?>(), args);

    private static (int Exit, string Out, string Err) RunWith(Dictionary<string, string?> env, params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int exit = CliApp.RunAsync(args, o, e, interactive: false, environment: env).GetAwaiter().GetResult();
        return (exit, o.ToString(), e.ToString());
    }

    /// <summary>Drops the lines that report wall-clock time.</summary>
    private static string Untimed(string output) =>
        string.Join('\n', output.Split('\n').Where(l => !l.StartsWith("time ", StringComparison.Ordinal) && !l.TrimStart().StartsWith("time to shrink", StringComparison.Ordinal)));

    [Theory]
    [InlineData("fuzz --time 10x", "--time 10x: duration must be a positive number")]
    [InlineData("fuzz --seed abc", "--seed abc: must be a decimal integer")]
    [InlineData("fuzz --count 0", "--count 0: must be a whole number")]
    [InlineData("fuzz --max-steps many --count 1", "--max-steps many: must be a positive integer")]
    [InlineData("fuzz --variant nosuch --count 1", "unknown variant 'nosuch': known are default")]
    [InlineData("fuzz --config vax --count 1", "unknown config 'vax': known are x86_64-4k-l4")]
    [InlineData("fuzz --count 1 --frobnicate", "Unrecognized command or argument '--frobnicate'")]
    [InlineData("variants --format xml", "Argument 'xml' not recognized")]
    [InlineData("replay /nonexistent/file.repro", "/nonexistent/file.repro: no such file")]
    [InlineData("replay", "Required argument missing")]
    [InlineData("frobnicate", "Unrecognized command or argument 'frobnicate'")]
    [InlineData("savings --memory 12Q", "--memory 12Q: not a size")]
    [InlineData("savings --scheme 3-kept", "Argument '3-kept' not recognized")]
    public void BadInputExitsTwoNamingWhatWasWrong(string args, string message)
    {
        var argv = args.Split(' ').ToList();
        if (argv[0] == "fuzz") argv.AddRange(["--out", _dir]);
        var (exit, stdout, stderr) = Run([.. argv]);
        Assert.Equal(ExitCodes.BadInput, exit);
        Assert.Contains(message, stderr, StringComparison.Ordinal);
        Assert.Equal("", stdout);
        Assert.False(Directory.Exists(_dir), "bad input must not leave output behind");
    }

    [Fact]
    public void SavingsCountsFramesAsKernelModelSaysForTheOnePageScheme()
    {
        var (exit, stdout, _) = Run("savings", "--format", "tsv", "--scheme", "1-kept", "--memory", "64M");
        Assert.Equal(ExitCodes.Ok, exit);
        var rows = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')).ToList();
        // arm64 64K contiguous sizes are not optimizable.
        var x86 = rows.Single(r => r[0] == "x86_64-4k-l4" && r[2] == "2M");
        Assert.Equal(["8", "1", "7"], x86[4..7]);
        Assert.Equal("0", rows.Single(r => r[0] == "arm64-4k-l4" && r[2] == "64K")[6]);
    }

    [Fact]
    public void MalformedReproFileExitsTwoWithFileLineAndColumn()
    {
        Directory.CreateDirectory(_dir);
        string path = Path.Combine(_dir, "bad.repro");
        File.WriteAllText(path, "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nvariant default\nv1 = vmalloc 4Q\n");
        var (exit, _, stderr) = Run("replay", path);
        Assert.Equal(ExitCodes.BadInput, exit);
        Assert.Contains($"{path}:6:14: size: '4Q' is not a size", stderr, StringComparison.Ordinal);

        File.WriteAllText(path, "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nvariant default\nexpect NoSuchInvariant at 1\n");
        (exit, _, stderr) = Run("replay", path);
        Assert.Equal(ExitCodes.BadInput, exit);
        Assert.Contains("unknown invariant 'NoSuchInvariant'", stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("PS_MAX_STEPS", "lots", "PS_MAX_STEPS=lots: must be a positive integer")]
    [InlineData("PS_SHARD", "3/2", "PS_SHARD=3/2: shard index must be < shard count")]
    public void BadBudgetVariableIsBadInput(string variable, string value, string message)
    {
        var (exit, stdout, stderr) = RunWith(new() { [variable] = value }, "fuzz", "--count", "1", "--out", _dir);
        Assert.Equal(ExitCodes.BadInput, exit);
        Assert.Contains(message, stderr, StringComparison.Ordinal);
        Assert.Equal("", stdout);
    }

    [Fact]
    public void FuzzOfACorrectVariantFindsNothingAndIsDeterministic()
    {
        var a = Run("fuzz", "--count", "60", "--seed", "11", "--variant", "default", "--out", _dir);
        var b = Run("fuzz", "--count", "60", "--seed", "11", "--variant", "default", "--out", _dir);
        Assert.Equal(ExitCodes.Ok, a.Exit);
        Assert.Equal(Untimed(a.Out), Untimed(b.Out));
        Assert.Contains("ran 60 scenarios", a.Out, StringComparison.Ordinal);
        Assert.Contains("vmalloc", a.Out, StringComparison.Ordinal);
        Assert.Contains("no violation found", a.Out, StringComparison.Ordinal);
        Assert.False(Directory.Exists(_dir));
    }

    [Fact]
    public void FuzzOfABuggyVariantWritesTheShrunkReproAndReplayReproducesIt()
    {
        var (exit, stdout, _) = Run("fuzz", "--count", "200", "--seed", "3", "--variant", "broken-vunmap-skips-flush", "--config", "x86_64-4k-l4", "--out", _dir);
        Assert.Equal(ExitCodes.Violation, exit);
        Assert.Contains("VIOLATION TlbCoherentAfterFlush at step ", stdout, StringComparison.Ordinal);
        // One repro per invariant found (the missing flush also leaves freed frames reachable).
        string file = Assert.Single(Directory.GetFiles(_dir, "*-TlbCoherentAfterFlush-*"));
        Assert.EndsWith(".repro", file, StringComparison.Ordinal);
        Assert.All(Directory.GetFiles(_dir), f => Assert.EndsWith(".repro", f, StringComparison.Ordinal));
        Assert.Empty(Directory.GetFiles(_dir, ".*"));

        var replay = Run("replay", file);
        Assert.Equal(ExitCodes.Violation, replay.Exit);
        string violation = stdout.Split('\n').Single(l => l.StartsWith("VIOLATION TlbCoherentAfterFlush", StringComparison.Ordinal));
        string evidence = violation[(violation.IndexOf("): ", StringComparison.Ordinal) + 3)..];
        Assert.Contains($"TlbCoherentAfterFlush violated at step 3: {evidence}", replay.Out, StringComparison.Ordinal);
        Assert.Contains("as expected (expect TlbCoherentAfterFlush at 3)", replay.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void ReplayTracePrintsEveryStepWithWhatItTouched()
    {
        string path = Path.Combine(Snapshot.FindRepositoryRoot(), "Snapshots", "Corpus");
        string file = Directory.GetFiles(path, "broken-vunmap-skips-flush-*.repro").Single();
        var (exit, stdout, _) = Run("replay", file, "--trace");
        Assert.Equal(ExitCodes.Violation, exit);
        Assert.Contains("step 1: v1 = vmalloc 4K", stdout, StringComparison.Ordinal);
        Assert.Contains("none -> leaf(", stdout, StringComparison.Ordinal);
        Assert.Contains("tlb   cpu0 + [ffffc90000000000+1000)", stdout, StringComparison.Ordinal);
        Assert.Contains("step 3: vfree v1", stdout, StringComparison.Ordinal);
        Assert.Contains("-> none", stdout, StringComparison.Ordinal);
        Assert.Contains("now Free", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void ReplayOfACleanScenarioExitsZero()
    {
        Directory.CreateDirectory(_dir);
        string path = Path.Combine(_dir, "ok.repro");
        File.WriteAllText(path, "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nvariant default\nv1 = vmalloc 8K\ncpu1: read v1 0\nvfree v1\nexpect none\n");
        var (exit, stdout, _) = Run("replay", path);
        Assert.Equal(ExitCodes.Ok, exit);
        Assert.Contains("no violation in 3 steps", stdout, StringComparison.Ordinal);
        Assert.Contains("as expected (expect none)", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void CataloguesListEveryEntryOneLineEach()
    {
        var variants = Run("variants", "--format", "tsv");
        Assert.Equal(ExitCodes.Ok, variants.Exit);
        Assert.Equal(KernelVariants.All.Select(v => $"{v.Name}\t{(v.Correct ? "correct" : "buggy")}\t{string.Join(",", VariantTargets.BreakNames(v.Name))}\t{v.Description}"),
            variants.Out.TrimEnd('\n').Split('\n'));
        var invariants = Run("invariants", "--format", "tsv");
        Assert.Equal(InvariantRegistry.All.Select(i => $"{i.Name}\t{i.Claim}\t{i.Source}"), invariants.Out.TrimEnd('\n').Split('\n'));
        var configs = Run("configs");
        Assert.Equal(ArchConfig.All.Select(a => a.Name), configs.Out.TrimEnd('\n').Split('\n'));
        var table = Run("variants");
        Assert.All(KernelVariants.All, v => Assert.Contains(v.Name, table.Out, StringComparison.Ordinal));
    }
}
