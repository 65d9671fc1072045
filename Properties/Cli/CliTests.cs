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
[Trait("Category", "cli")]
public sealed class CliTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "ps-cli-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>One in-process run: what was run and everything it printed, so that a failing
    /// assertion can say what ran and how to run it again from a shell.</summary>
    public sealed record CliRun(string[] Args, int Exit, string Out, string Err)
    {
        public void Deconstruct(out int exit, out string stdout, out string stderr) => (exit, stdout, stderr) = (Exit, Out, Err);

        public override string ToString() =>
            $"ran: {CliApp.Invocation} {string.Join(' ', Args)}\nexit {Exit}\n--- stdout ---\n{Out}--- stderr ---\n{Err}";
    }

    /// <summary>Runs the CLI in-process with no PS_* variables set (unless given).</summary>
    private static CliRun Run(params string[] args) => RunWith(new Dictionary<string, string?>(), args);

    private static CliRun RunWith(Dictionary<string, string?> env, params string[] args) => RunWithStop(env, null, args);

    private static CliRun RunWithStop(Dictionary<string, string?> env, StopRequest? stop, params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int exit = CliApp.RunAsync(args, o, e, interactive: false, environment: env, stop: stop).GetAwaiter().GetResult();
        return new CliRun(args, exit, o.ToString(), e.ToString());
    }

    /// <summary>Asserts the exit code; on failure shows the command and its whole output.</summary>
    private static void AssertExit(int expected, CliRun run)
    {
        if (run.Exit != expected) Assert.Fail($"expected exit {expected}, got {run.Exit}\n{run}");
    }

    /// <summary>Asserts that the output contains a text; on failure shows the command and its output.</summary>
    private static void AssertContains(string expected, string actual, CliRun run)
    {
        if (!actual.Contains(expected, StringComparison.Ordinal)) Assert.Fail($"expected the output to contain '{expected}'\n{run}");
    }

    /// <summary>Drops the lines that report wall-clock time (and the progress lines, printed by the clock).</summary>
    private static string Untimed(string output) =>
        string.Join('\n', output.Split('\n').Where(l => !l.StartsWith("time ", StringComparison.Ordinal) && !l.StartsWith("progress ", StringComparison.Ordinal)
            && !l.TrimStart().StartsWith("time to shrink", StringComparison.Ordinal)));

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
        var run = Run([.. argv]);
        AssertExit(ExitCodes.BadInput, run);
        AssertContains(message, run.Err, run);
        Assert.True(run.Out == "", $"bad input must print nothing on stdout\n{run}");
        Assert.DoesNotContain("   at ", run.Err, StringComparison.Ordinal); // no stack trace
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
        AssertExit(ExitCodes.Ok, a);
        Assert.True(Untimed(a.Out) == Untimed(b.Out), $"the same seed gave different output\nfirst {a}\nsecond {b}");
        AssertContains("ran 60 scenarios", a.Out, a);
        AssertContains("vmalloc", a.Out, a);
        AssertContains("no violation found", a.Out, a);
        Assert.False(Directory.Exists(_dir));
        // The declared states the run never reached are listed with what reaching them takes:
        // a state only a reverted design has cannot be reached by the default kernel.
        AssertContains("declared state never reached", a.Out, a);
        AssertContains("vmemmap_fault.waited", a.Out, a);
        AssertContains("variant arm64-hvo-fault-handler", a.Out, a);
    }

    [Fact]
    public void FuzzJobsChangeHowFastNotWhatARunFinds()
    {
        // A buggy variant, so that the findings, their shrinking and the repros are compared too.
        string[] common = ["fuzz", "--count", "60", "--seed", "3", "--variant", "hugetlb-folio-misaligned", "--config", "x86_64-4k-l4"];
        string one = Path.Combine(_dir, "one"), three = Path.Combine(_dir, "three");
        var a = Run([.. common, "--jobs", "1", "--out", one]);
        var b = Run([.. common, "--jobs", "3", "--out", three]);
        AssertExit(ExitCodes.Violation, a);
        AssertExit(ExitCodes.Violation, b);
        AssertContains("1 job(s)", a.Out, a);
        AssertContains("3 job(s)", b.Out, b);
        string Same(CliRun r, string dir) => Untimed(r.Out).Replace("1 job(s)", "N job(s)", StringComparison.Ordinal).Replace("3 job(s)", "N job(s)", StringComparison.Ordinal).Replace(dir, "DIR", StringComparison.Ordinal);
        Assert.True(Same(a, one) == Same(b, three), $"--jobs 1 and --jobs 3 differ\nfirst {a}\nsecond {b}");
        var filesA = Directory.GetFiles(one).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        var filesB = Directory.GetFiles(three).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.NotEmpty(filesA);
        Assert.Equal(filesA, filesB);
        foreach (var f in filesA) Assert.Equal(File.ReadAllText(Path.Combine(one, f!)), File.ReadAllText(Path.Combine(three, f!)));
        AssertExit(ExitCodes.BadInput, Run("fuzz", "--count", "1", "--jobs", "0"));
    }

    [Fact]
    public void FuzzOfABuggyVariantWritesTheShrunkReproAndReplayReproducesIt()
    {
        var fuzz = Run("fuzz", "--count", "200", "--seed", "3", "--variant", "broken-vunmap-skips-flush", "--config", "x86_64-4k-l4", "--out", _dir);
        var (exit, stdout, _) = fuzz;
        AssertExit(ExitCodes.Violation, fuzz);
        AssertContains("VIOLATION TlbCoherentAfterFlush at step ", stdout, fuzz);
        AssertContains($"  replay: {ScenarioProperty.CliReplay} ", stdout, fuzz);
        Assert.DoesNotContain("propertysuite replay", stdout, StringComparison.Ordinal); // not a command in a shell
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
        Assert.Contains("tlb   cpu0 + [0xffffc90000000000+0x1000) -> pfn 0x", stdout, StringComparison.Ordinal);
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

    private const string CleanRepro = "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nvariant default\nv1 = vmalloc 8K\ncpu1: read v1 0\nvfree v1\n";

    private string Write(string name, string text)
    {
        Directory.CreateDirectory(_dir);
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void ReplayCheckExitsZeroExactlyWhenTheOutcomeMatchesTheExpectLine()
    {
        string matches = Write("a-matches.repro", CleanRepro + "expect none\n");
        string differs = Write("b-differs.repro", CleanRepro + "expect FrameConservation at 2\n");

        AssertExit(ExitCodes.Ok, Run("replay", "--check", matches));
        // Plain replay: no violation, so 0 whatever the expect line says; --check: 1, with the difference.
        AssertExit(ExitCodes.Ok, Run("replay", differs));
        var check = Run("replay", "--check", differs);
        AssertExit(ExitCodes.Violation, check);
        AssertContains("DIFFERS from the file's 'expect FrameConservation at 2': the replay gives 'expect none'", check.Out, check);

        // A directory replays every file in it, in name order; --check fails if any differs.
        var dir = Run("replay", "--check", _dir);
        AssertExit(ExitCodes.Violation, dir);
        Assert.True(dir.Out.IndexOf(matches, StringComparison.Ordinal) < dir.Out.IndexOf(differs, StringComparison.Ordinal), dir.ToString());
        AssertContains("replayed 2 files", dir.Out, dir);
        File.Delete(differs);
        AssertExit(ExitCodes.Ok, Run("replay", "--check", _dir));

        // --check needs an expect line to compare with: bad input, and nothing ran.
        string none = Write("c-none.repro", CleanRepro);
        var missing = Run("replay", "--check", _dir);
        AssertExit(ExitCodes.BadInput, missing);
        AssertContains($"{none}: has no expect line", missing.Err, missing);
        Assert.True(missing.Out == "", missing.ToString());
    }

    [Fact]
    public void ReplayOfAnEmptyDirectorySaysSo()
    {
        Directory.CreateDirectory(_dir);
        var run = Run("replay", _dir);
        AssertExit(ExitCodes.BadInput, run);
        AssertContains($"{_dir}: directory holds no *.repro file", run.Err, run);
    }

    [Fact]
    public void ReplayWarnsAboutAHandleNoLineDefines()
    {
        string path = Write("typo.repro", "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 1\nvariant default\n# v1, not v9\nv1 = vmalloc 4K\nvfree v9\nexpect none\n");
        var run = Run("replay", path);
        AssertExit(ExitCodes.Ok, run);
        AssertContains($"warning: {path}:8:7: 'vfree v9' uses the handle v9, which no earlier line defines; the operation does nothing", run.Err, run);
        var clean = Run("replay", Write("ok.repro", CleanRepro));
        Assert.True(clean.Err == "", clean.ToString());
    }

    [Theory]
    [InlineData("--max-steps", "100000000", "--max-steps 100000000: at most 10000")]
    [InlineData("--scenario-seed", "5", "--scenario-seed and --size go together")]
    [InlineData("--size", "101", "--scenario-seed and --size go together")]
    public void FuzzBoundsAreCheckedBeforeAnythingRuns(string option, string value, string message)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var run = Run("fuzz", option, value, "--count", "1", "--out", _dir);
        AssertExit(ExitCodes.BadInput, run);
        AssertContains(message, run.Err, run);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}\n{run}");
        Assert.False(Directory.Exists(_dir));
    }

    [Fact]
    public void SavingsRefusesAMemoryOneConfigurationCannotHoldBeforeRunningAny()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var run = Run("savings", "--memory", "1T");
        AssertExit(ExitCodes.BadInput, run);
        AssertContains("--memory 1T: ", run.Err, run);
        AssertContains("arm64-4k-l3", run.Err, run);
        AssertContains("the linear map of arm64-4k-l3 covers at most 256G", run.Err, run);
        Assert.DoesNotContain("   at ", run.Err, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"validation took {clock.Elapsed}");

        var one = Run("savings", "--config", "x86_64-4k-l4", "--memory", "64M", "--format", "tsv", "--scheme", "1-kept");
        AssertExit(ExitCodes.Ok, one);
        Assert.All(one.Out.TrimEnd('\n').Split('\n').Skip(1), l => Assert.StartsWith("x86_64-4k-l4\t", l, StringComparison.Ordinal));
        var bad = Run("savings", "--config", "vax");
        AssertExit(ExitCodes.BadInput, bad);
        AssertContains("unknown config 'vax'", bad.Err, bad);
    }

    [Fact]
    public void FuzzStopOnFirstStopsAtTheFirstFindingAndItsScenarioSeedReplaysIt()
    {
        string[] common = ["--variant", "broken-vunmap-skips-flush", "--config", "x86_64-4k-l4", "--out", _dir];
        var run = Run(["fuzz", "--count", "200", "--seed", "3", "--stop-on-first", .. common]);
        AssertExit(ExitCodes.Violation, run);
        var violations = run.Out.Split('\n').Where(l => l.StartsWith("VIOLATION ", StringComparison.Ordinal)).ToList();
        Assert.True(violations.Count == 1, run.ToString());
        Assert.DoesNotContain("ran 200 scenarios", run.Out, StringComparison.Ordinal);

        // The printed scenario command re-runs exactly that scenario.
        string scenario = run.Out.Split('\n').Single(l => l.StartsWith("  scenario: ", StringComparison.Ordinal));
        string prefix = $"  scenario: {CliApp.Invocation} ";
        Assert.StartsWith(prefix, scenario, StringComparison.Ordinal);
        string[] again = scenario[prefix.Length..].Split(' ');
        Directory.Delete(_dir, recursive: true); // the stored repro would be replayed first otherwise
        var one = Run([.. again, "--out", _dir]);
        AssertExit(ExitCodes.Violation, one);
        AssertContains("ran 1 scenarios", one.Out, one);
        string first = violations[0][..violations[0].IndexOf(" (scenario", StringComparison.Ordinal)];
        AssertContains(first, one.Out, one);
    }

    [Fact]
    public void FuzzReplaysTheReprosOfAnEarlierRunFirst()
    {
        string[] common = ["--variant", "broken-vunmap-skips-flush", "--config", "x86_64-4k-l4", "--out", _dir];
        AssertExit(ExitCodes.Violation, Run(["fuzz", "--count", "200", "--seed", "3", "--stop-on-first", .. common]));
        string stored = Assert.Single(Directory.GetFiles(_dir));

        // One fresh scenario of another seed finds nothing new, but the stored repro still fails.
        var next = Run(["fuzz", "--count", "1", "--seed", "99", "--stop-on-first", .. common]);
        AssertExit(ExitCodes.Violation, next);
        AssertContains($"STILL FAILS {stored}: TlbCoherentAfterFlush violated", next.Out, next);
        AssertContains("replayed 1 stored repro(s)", next.Out, next);
        AssertContains("ran 0 scenarios", next.Out, next); // --stop-on-first: the stored failure is the first

        // Another variant's run does not cover it.
        var other = Run("fuzz", "--count", "1", "--seed", "99", "--variant", "default", "--out", _dir);
        AssertExit(ExitCodes.Ok, other);
        Assert.DoesNotContain("STILL FAILS", other.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void AStopRequestPrintsTheSummarySoFarAndExits130()
    {
        var stop = new StopRequest();
        stop.Request("SIGINT", ExitCodes.Interrupted);
        var run = RunWithStop(new(), stop, "fuzz", "--time", "60s", "--seed", "1", "--out", _dir);
        AssertExit(ExitCodes.Interrupted, run);
        AssertContains("stopped by SIGINT after 0 scenarios; the summary so far:", run.Out, run);
        AssertContains("ran 0 scenarios", run.Out, run);
        AssertContains("no repro written", run.Out, run);
    }

    [Fact]
    public async Task SigtermDuringFuzzPrintsTheSummaryAndExits143()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return; // POSIX signals only
        string dll = Path.Combine(AppContext.BaseDirectory, "propertysuite.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing: the test project references Cli, whose output is copied here");
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { dll, "fuzz", "--time", "120s", "--seed", "1", "--variant", "default", "--out", _dir }) psi.ArgumentList.Add(a);
        foreach (var v in Generators.Harness.Budget.Variables) psi.Environment.Remove(v);
        using var p = System.Diagnostics.Process.Start(psi)!;
        string firstLine = p.StandardOutput.ReadLine() ?? "";
        Assert.StartsWith("fuzz: seed 1", firstLine, StringComparison.Ordinal);
        using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            kill.WaitForExit();
        var rest = p.StandardOutput.ReadToEndAsync();
        var err = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(60_000), "fuzz did not stop within 60 s of SIGTERM");
        string output = firstLine + "\n" + await rest;
        Assert.True(p.ExitCode == ExitCodes.Terminated, $"exit {p.ExitCode}\n{output}\n{await err}");
        Assert.Contains("stopped by SIGTERM after ", output, StringComparison.Ordinal);
        Assert.Contains("no repro written", output, StringComparison.Ordinal);
    }

    [Fact]
    public void OpsListsEveryVerbOfTheParser()
    {
        Assert.Equal(Engine.Scenario.OpCatalog.KnownVerbs.Order(StringComparer.Ordinal), OpsCatalogue.All.Select(v => v.Verb).Order(StringComparer.Ordinal));
        var run = Run("ops", "--format", "tsv");
        AssertExit(ExitCodes.Ok, run);
        AssertContains("vmalloc\tSIZE\tvN\t", run.Out, run);
        AssertContains("step cpuN to ACTION\t", run.Out, run);
    }

    [Fact]
    public void PrintedCommandsRunInAShellFromTheRepositoryRoot()
    {
        var run = Run("frobnicate");
        AssertContains($"Run '{CliApp.Invocation} --help' for usage.", run.Err, run);
        Assert.Equal("dotnet run --project Cli -c Release --", CliApp.Invocation);
        Assert.Equal($"{CliApp.Invocation} replay", ScenarioProperty.CliReplay);
        Assert.True(File.Exists(Path.Combine(Snapshot.FindRepositoryRoot(), "Cli", "Cli.csproj")));
    }

    [Theory]
    [InlineData("invariants", 160)]
    [InlineData("variants", 160)]
    [InlineData("ops", 160)]
    [InlineData("invariants", 200)]
    [InlineData("variants", 200)]
    public async Task TablesShowEveryWordAtTheWidthTheyAreGiven(string command, int width)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int exit = await CliApp.RunAsync([command], o, e, interactive: false, environment: new Dictionary<string, string?>(), width: width);
        var run = new CliRun([command], exit, o.ToString(), e.ToString());
        AssertExit(ExitCodes.Ok, run);
        Assert.DoesNotContain("…", run.Out, StringComparison.Ordinal);
        Assert.All(run.Out.Split('\n'), l => Assert.True(l.Length <= width, $"a line of {l.Length} columns at width {width}:\n{l}"));
        // Every word of every row is printed somewhere (wrapped, never cut).
        var words = run.Out.Split([' ', '\n', '│'], StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        var rows = command switch
        {
            "invariants" => InvariantRegistry.All.SelectMany(i => new[] { i.Name, i.Claim }),
            "variants" => KernelVariants.All.SelectMany(v => new[] { v.Name, v.Description }),
            _ => OpsCatalogue.All.SelectMany(v => new[] { v.Verb, v.Description }),
        };
        foreach (var word in rows.SelectMany(t => t.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Where(w => w.Length < width / 4))
            Assert.True(words.Contains(word), $"'{word}' is missing from the {command} table at width {width}\n{run}");
    }

    [Fact]
    public void ReplayTraceCoalescesRangesAndNamesLevelsAsTheKernelDoes()
    {
        string path = Write("big.repro", "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 1\nvariant default\nv1 = vmalloc 2M\nvfree v1\nexpect none\n");
        var run = Run("replay", path, "--trace");
        AssertExit(ExitCodes.Ok, run);
        var pte = run.Out.Split('\n').Where(l => l.StartsWith("  pte   ", StringComparison.Ordinal)).ToList();
        // 512 pages mapped and unmapped: a few range lines, not a thousand.
        Assert.True(pte.Count <= 12, $"{pte.Count} page-table lines\n{run}");
        Assert.Contains(pte, l => l.Contains(" PTE x", StringComparison.Ordinal) && l.Contains("none -> leaf(0x", StringComparison.Ordinal));
        Assert.Contains(pte, l => l.Contains(" PTE x", StringComparison.Ordinal) && l.Contains("-> none", StringComparison.Ordinal));
        // x86-64 4-level: the top level is the PGD (the P4D is folded), never printed as P4D.
        Assert.DoesNotContain(" P4D ", run.Out, StringComparison.Ordinal);
        // One hex style: every address and frame with 0x.
        Assert.DoesNotMatch(@"\[[0-9a-f]{8,}\+", run.Out);
    }

    [Fact]
    public void ReplayTraceShowsTheLocksEachCpuHolds()
    {
        string path = Write("lock.repro", "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 512M\ncpus 2\nvariant default\nhugetlb_pool 2M 1\ncpu1: start hugetlb_alloc 2M\nstep cpu1 to spin_lock(hugetlb_lock)\nexpect none\n");
        var run = Run("replay", path, "--trace");
        AssertExit(ExitCodes.Ok, run);
        Assert.Contains(run.Out.Split('\n'), l => l.StartsWith("  cpu1  ", StringComparison.Ordinal) && l.Contains(" holds hugetlb_lock", StringComparison.Ordinal));
    }

    [Fact]
    public void ReplayTraceShowsTheStalePagePointerOfASpeculativeWalker()
    {
        // Yu Zhao's interleaving on the pre-fix kernel: the PFN walker takes its struct-page
        // pointer, the page is freed and its memory becomes an HVO-optimized HugeTLB folio, and the
        // walker's get_page_unless_zero writes through the read-only alias. The trace shows the
        // pointer from the step it was taken, and, once HVO ran, what it resolves to now.
        string path = Write("spec.repro", "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nvariant spec-get-pre-fix\np1 = filemap_add 129\ncpu1: start pfn_walk p1 64\nstep cpu1 to PageLRU\ntruncate p1\nhugetlb_alloc 2M\nstep cpu1 until done\nexpect NoWriteThroughReadOnlyVmemmap at 6\n");
        var run = Run("replay", path, "--trace");
        AssertExit(ExitCodes.Violation, run);
        var cpu1 = run.Out.Split('\n').Where(l => l.StartsWith("  cpu1  ", StringComparison.Ordinal)).ToList();
        Assert.Contains(cpu1, l => l.Contains(" page pointer 0xffffea0000061000 (pfn 0x1840, pfn_to_page at step 3)", StringComparison.Ordinal));
        Assert.Contains(cpu1, l => l.Contains("pfn_to_page at step 3, head then 0xffffea0000061000 now 0xffffea0000060000, vmemmap now read-only", StringComparison.Ordinal));
        Assert.Contains("  cpu1  idle", run.Out, StringComparison.Ordinal);
        // Replay names the states of interest the run reached.
        Assert.Contains(run.Out.Split('\n'), l => l.StartsWith("reached: ", StringComparison.Ordinal) && l.Contains("hvo.optimized", StringComparison.Ordinal));
    }
}
