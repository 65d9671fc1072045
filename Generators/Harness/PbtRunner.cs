// Our small FsCheck runner, kept where FsCheck.Xunit's [Property] cannot serve (a property
// that is one method with generated arguments uses PsPropertyAttribute, Properties/Infra):
//   - catalogue theories: one xunit row per kernel variant (MetaTests) — [Property] is a fact
//     and has no rows, and a test per variant would have to be written by hand;
//   - the time budget PS_TIME: keep starting fresh-seed FsCheck runs until the time is spent —
//     FsCheck.Xunit runs exactly one run of MaxTest cases;
//   - the outcome as data: scenario properties shrink to the failure first found, name steps,
//     replay the repro and write it, replay the failure database first, and the meta-tests
//     inspect which invariant was found and how short the repro is. (A scenario property that
//     only has to pass or fail with a written repro can be a [PsProperty] over a Scenario
//     argument: Generators/ScenarioCases.cs.)
// It drives FsCheck core through Check.One with a capturing IRunner.
//
// Determinism. Every FsCheck run starts from an explicit (seed, gamma):
//   PS_REPLAY set    → exactly that seed, gamma and, if given, size; one run.
//   otherwise        → run b uses Shard.SeedFor(base, b) with the golden gamma, where base
//                      is PS_SEED or, by default, FNV-1a of the property's name.
// So a plain `dotnet test` is derandomized (the same name always draws the same cases),
// and each printed replay token re-runs exactly what failed. The only non-determinism is
// how many runs fit in PS_TIME, which decides when to stop, never what a run does.
//
// What is left to the caller: rendering the shrunk value as a repro, writing it (with
// WriteReproAtomically), and throwing PropertyFailedException.

using System.Diagnostics;
using System.Globalization;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;

namespace PropertySuite.Generators.Harness;

/// <summary>A falsified property after shrinking.</summary>
/// <param name="Original">The first generated value that failed.</param>
/// <param name="Shrunk">The value FsCheck shrank it to; still fails.</param>
/// <param name="Message">Why <paramref name="Shrunk"/> fails: the check's message, or the
/// type and message of the exception it threw.</param>
/// <param name="Cause">The exception the check threw on the shrunk value, if it threw;
/// null when it returned a failure message.</param>
/// <param name="RunReplay"><c>seed,gamma</c> of the whole FsCheck run (replays every test
/// case of that run, given the same PS_TESTS).</param>
/// <param name="StepReplay"><c>seed,gamma,size</c> of the failing case alone.</param>
/// <param name="TestsRun">Test cases of the failing run, including the failing one.</param>
/// <param name="Shrinks">Successful shrink steps.</param>
public sealed record PbtFailure<T>(
    T Original,
    T Shrunk,
    string Message,
    Exception? Cause,
    string RunReplay,
    string StepReplay,
    int TestsRun,
    int Shrinks);

/// <summary>The outcome of <see cref="PbtRunner.Run"/>.</summary>
/// <param name="Name">The property name the seeds were derived from.</param>
/// <param name="Failure">Null when every test case passed.</param>
/// <param name="TestsRun">Test cases over all FsCheck runs.</param>
/// <param name="TestsPerRun">MaxTest of each run; a whole-run replay needs the same value.</param>
/// <param name="Runs">The (seed, gamma) each FsCheck run started from, in order; the last
/// one failed when <see cref="Failure"/> is set.</param>
public sealed record PbtResult<T>(
    string Name,
    PbtFailure<T>? Failure,
    long TestsRun,
    int TestsPerRun,
    IReadOnlyList<ReplayToken> Runs)
{
    public bool Passed => Failure is null;
}

/// <summary>A property failed; the message is the full report.</summary>
public sealed class PropertyFailedException : Exception
{
    public PropertyFailedException(string report, Exception? cause = null)
        : base(report, cause)
    {
    }

    /// <summary>The invariant the shrunk scenario violates (scenario properties).</summary>
    public string? Invariant { get; init; }
    /// <summary>The 1-based step at which it is violated (0: at boot).</summary>
    public int? Step { get; init; }
    /// <summary>The invariant's evidence for the shrunk scenario.</summary>
    public string? Evidence { get; init; }
    /// <summary>The shrunk scenario as a repro file, with its `expect` line.</summary>
    public string? ReproText { get; init; }
    /// <summary>Where the repro file was written, if it was.</summary>
    public string? ReproPath { get; init; }
    /// <summary><c>seed,gamma,size</c> of the failing case (PS_REPLAY).</summary>
    public string? StepReplay { get; init; }
    /// <summary><c>seed,gamma</c> of the whole failing run (PS_REPLAY, with the same PS_TESTS).</summary>
    public string? RunReplay { get; init; }
    /// <summary>Shell commands that replay the failure, most direct first.</summary>
    public IReadOnlyList<string> ReplayCommands { get; init; } = [];
}

public static class PbtRunner
{
    /// <summary>Weyl increment of splitmix64 (2^64 / golden ratio); odd, as FsCheck requires.</summary>
    public const ulong GoldenGamma = 0x9e3779b97f4a7c15UL | 1;

    /// <summary>
    /// Checks <paramref name="check"/> against values drawn from <paramref name="gen"/>,
    /// shrinking the first failure with <paramref name="shrinker"/>. Without a time budget
    /// this is one FsCheck run of <c>budget.Tests</c> cases; with one, runs with fresh
    /// derived seeds repeat until the time is spent or a run fails.
    /// </summary>
    /// <param name="name">Property name: the default seed derives from it and replay
    /// commands filter on it, so pass the test's class-qualified method name.</param>
    /// <param name="shrinker">Must be pure and finite (FsCheck issue #675: a looping shrink
    /// sequence hangs the run); FsCheck caches candidates, so it must not mutate its input.</param>
    /// <param name="check">Returns null when the value passes, otherwise why it fails.
    /// Throwing also counts as failing; the exception becomes <see cref="PbtFailure{T}.Cause"/>.</param>
    public static PbtResult<T> Run<T>(
        string name, Gen<T> gen, Func<T, IEnumerable<T>> shrinker, Func<T, string?> check, Budget budget)
    {
        ArgumentNullException.ThrowIfNull(budget);
        if (budget.Time is not { } time)
            return RunBatches(name, gen, shrinker, check, budget, batch => batch == 0);

        // Wall clock: decides only how many runs to start. Each run is seeded and
        // deterministic on its own, and the first run always starts.
        var clock = Stopwatch.StartNew();
        return RunBatches(name, gen, shrinker, check, budget, batch => batch == 0 || clock.Elapsed < time);
    }

    /// <summary>
    /// <see cref="Run"/> with the decision to start each FsCheck run made by
    /// <paramref name="startBatch"/> (called with 0, 1, 2, … until it returns false or a run
    /// fails). <c>budget.Time</c> is ignored here; a replay budget runs once regardless.
    /// Useful for a front end that stops on request, and for deterministic tests.
    /// </summary>
    public static PbtResult<T> RunBatches<T>(
        string name, Gen<T> gen, Func<T, IEnumerable<T>> shrinker, Func<T, string?> check,
        Budget budget, Func<long, bool> startBatch)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(gen);
        ArgumentNullException.ThrowIfNull(shrinker);
        ArgumentNullException.ThrowIfNull(check);
        ArgumentNullException.ThrowIfNull(budget);
        ArgumentNullException.ThrowIfNull(startBatch);

        var property = Prop.ForAll(Arb.From(gen, shrinker), (T value) =>
        {
            var message = check(value);
            if (message != null)
                throw new CheckFailedException(message);
        });

        var runs = new List<ReplayToken>();
        long testsRun = 0;
        if (budget.Replay is { } replay)
        {
            runs.Add(replay);
            var outcome = RunOnce<T>(name, property, budget.Tests, replay);
            return new PbtResult<T>(name, outcome.Failure, outcome.Tests, budget.Tests, runs);
        }

        var baseSeed = BaseSeed(name, budget);
        for (long batch = 0; startBatch(batch); batch++)
        {
            var start = new ReplayToken(budget.Shard.SeedFor(baseSeed, batch), GoldenGamma);
            runs.Add(start);
            var outcome = RunOnce<T>(name, property, budget.Tests, start);
            testsRun += outcome.Tests;
            if (outcome.Failure != null)
                return new PbtResult<T>(name, outcome.Failure, testsRun, budget.Tests, runs);
        }
        return new PbtResult<T>(name, null, testsRun, budget.Tests, runs);
    }

    /// <summary>The base of the seed derivation: PS_SEED if set, else <see cref="StableHash"/> of the name.</summary>
    public static ulong BaseSeed(string name, Budget budget)
    {
        ArgumentNullException.ThrowIfNull(budget);
        return budget.Seed ?? StableHash(name);
    }

    /// <summary>
    /// 64-bit FNV-1a of the UTF-8 bytes of <paramref name="text"/>. Unlike
    /// string.GetHashCode, which .NET randomizes per process, it is the same on every
    /// machine and every run.
    /// </summary>
    public static ulong StableHash(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        const ulong offsetBasis = 0xcbf29ce484222325UL;
        const ulong prime = 0x100000001b3UL;
        var hash = offsetBasis;
        foreach (var b in Encoding.UTF8.GetBytes(text))
        {
            unchecked
            {
                hash = (hash ^ b) * prime;
            }
        }
        return hash;
    }

    /// <summary>
    /// The shell command that re-runs a property from a replay token, e.g.
    /// <c>PS_REPLAY=1,3,7 dotnet test --filter "FullyQualifiedName~Props.Claim"</c>.
    /// A whole-run token (<c>seed,gamma</c>) only replays under the same test count, so
    /// pass <paramref name="tests"/> to pin PS_TESTS as well.
    /// </summary>
    public static string ReplayCommand(string name, string replay, int? tests = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentException.ThrowIfNullOrWhiteSpace(replay);
        var pin = tests is { } n ? string.Create(CultureInfo.InvariantCulture, $"{Budget.TestsVariable}={n} ") : "";
        return $"{pin}{Budget.ReplayVariable}={replay} dotnet test --filter \"FullyQualifiedName~{name}\"";
    }

    /// <summary>
    /// <see cref="ReplayCommand"/> with a whole VSTest filter expression (e.g. one that also
    /// pins a theory row), single-quoted for a POSIX shell.
    /// </summary>
    public static string ReplayCommandForFilter(string filter, string replay, int? tests = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(filter);
        ArgumentException.ThrowIfNullOrWhiteSpace(replay);
        if (filter.Contains('\''))
            throw new ArgumentException("a test filter with a single quote cannot be single-quoted for the shell", nameof(filter));
        var pin = tests is { } n ? string.Create(CultureInfo.InvariantCulture, $"{Budget.TestsVariable}={n} ") : "";
        return $"{pin}{Budget.ReplayVariable}={replay} dotnet test --filter '{filter}'";
    }

    /// <summary>
    /// A plain-text failure report: the message, the shrunk value as
    /// <paramref name="render"/> prints it, counts, and both replay commands.
    /// </summary>
    public static string Report<T>(PbtResult<T> result, Func<T, string> render)
    {
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(render);
        var f = result.Failure ?? throw new ArgumentException("the property passed; there is nothing to report", nameof(result));
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture,
            $"Property {result.Name} falsified after {f.TestsRun} test(s) and {f.Shrinks} shrink(s).\n");
        text.Append(CultureInfo.InvariantCulture, $"{f.Message}\n");
        text.Append("Shrunk:\n");
        text.Append(render(f.Shrunk).TrimEnd('\n'));
        text.Append('\n');
        text.Append(CultureInfo.InvariantCulture, $"Replay the failing case: {ReplayCommand(result.Name, f.StepReplay)}\n");
        text.Append(CultureInfo.InvariantCulture, $"Replay the whole run:    {ReplayCommand(result.Name, f.RunReplay, result.TestsPerRun)}\n");
        return text.ToString();
    }

    /// <summary>
    /// Writes <paramref name="text"/> to <paramref name="dir"/>/<paramref name="fileName"/>
    /// so that a reader sees either the old file or the complete new one: the text goes to a
    /// temporary file in the same directory (same file system, so the rename is atomic),
    /// is flushed to disk, then renamed over the target.
    /// </summary>
    /// <returns>The full path written.</returns>
    public static string WriteReproAtomically(string dir, string fileName, string text)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dir);
        ArgumentException.ThrowIfNullOrWhiteSpace(fileName);
        ArgumentNullException.ThrowIfNull(text);
        if (Path.GetFileName(fileName) != fileName || fileName is "." or "..")
            throw new ArgumentException($"'{fileName}' must be a bare file name, without directories", nameof(fileName));

        var fullDir = Path.GetFullPath(dir);
        Directory.CreateDirectory(fullDir);
        var target = Path.Combine(fullDir, fileName);
        var temp = Path.Combine(fullDir, $".{fileName}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                var bytes = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text);
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, target, overwrite: true);
        }
        catch
        {
            // Leave no temporary file behind; the original error propagates unchanged.
            File.Delete(temp);
            throw;
        }
        return target;
    }

    private static (PbtFailure<T>? Failure, int Tests) RunOnce<T>(
        string name, Property property, int maxTest, ReplayToken start)
    {
        var runner = new CapturingRunner();
        var config = Config.Quick
            .WithMaxTest(maxTest)
            .WithQuietOnSuccess(true)
            .WithName(name)
            .WithRunner(runner);
        config = start.Size is { } size
            ? config.WithReplay(start.Seed, start.Gamma, size)
            : config.WithReplay(start.Seed, start.Gamma);
        Check.One(config, property);

        switch (runner.Result)
        {
            case TestResult.Passed passed:
                return (null, passed.Item1.NumberOfTests);
            case TestResult.Failed failed:
                return (ToFailure<T>(failed), failed.Item1.NumberOfTests);
            case TestResult.Exhausted exhausted:
                // Our property never discards, so this would be an FsCheck change we have
                // not accounted for; refuse to report it as a pass.
                throw new InvalidOperationException(
                    $"FsCheck gave up on '{name}' after {exhausted.Item.NumberOfTests} tests (arguments exhausted).");
            default:
                throw new InvalidOperationException($"FsCheck finished '{name}' without reporting a result.");
        }
    }

    private static PbtFailure<T> ToFailure<T>(TestResult.Failed failed)
    {
        var (message, cause) = failed.Item4 switch
        {
            Outcome.Failed { Item: CheckFailedException c } => (c.Message, (Exception?)null),
            Outcome.Failed { Item: var e } => ($"{e.GetType().FullName}: {e.Message}", e),
            var other => ($"FsCheck reported a failure with outcome {other}", null),
        };
        var run = new ReplayToken(failed.Item5.Seed, failed.Item5.Gamma);
        var step = new ReplayToken(failed.Item6.Seed, failed.Item6.Gamma, failed.Item7);
        return new PbtFailure<T>(
            Original: SingleArgument<T>(failed.Item2),
            Shrunk: SingleArgument<T>(failed.Item3),
            Message: message,
            Cause: cause,
            RunReplay: run.ToString(),
            StepReplay: step.ToString(),
            TestsRun: failed.Item1.NumberOfTests,
            Shrinks: failed.Item1.NumberOfShrinks);
    }

    private static T SingleArgument<T>(FSharpList<object> args) =>
        args.Length == 1
            ? (T)args.Head
            : throw new InvalidOperationException($"expected one property argument, FsCheck reported {args.Length}");

    /// <summary>The check returned a message: a plain property failure, not a crash.</summary>
    private sealed class CheckFailedException(string message) : Exception(message);

    /// <summary>Records FsCheck's final result instead of printing it.</summary>
    private sealed class CapturingRunner : IRunner
    {
        public TestResult? Result { get; private set; }

        public void OnStartFixture(Type t)
        {
        }

        public void OnArguments(
            int ntest, FSharpList<object> args, FSharpFunc<int, FSharpFunc<FSharpList<object>, string>> every)
        {
        }

        public void OnShrink(FSharpList<object> args, FSharpFunc<FSharpList<object>, string> everyShrink)
        {
        }

        public void OnFinished(string name, TestResult testResult) => Result = testResult;
    }
}
