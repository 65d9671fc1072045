// Run budgets: how many tests, for how long, from which seed, on which shard, and where
// repros go. This file is the only place that reads them from the environment
// (docs/ARCHITECTURE.md); everything else receives a Budget value.
//
//   variable       form                        default
//   PS_TESTS       positive integer            200 tests per run (one FsCheck Check.One call)
//   PS_TIME        90s | 10m | 2h | 500ms      none: one run; set: runs repeat until it elapses
//   PS_SEED        unsigned 64-bit integer     none: the base seed is derived from the name
//   PS_REPLAY      seed,gamma[,size]           none; gamma must be odd (FsCheck's rule)
//   PS_SHARD       i/N, 0 <= i < N             0/1
//   PS_REPRO_DIR   directory                   <repository root>/repros
//   PS_MAX_STEPS   positive integer            100 operations per generated scenario
//
// A relative PS_REPRO_DIR is taken from the repository root (the directory holding
// PropertySuite.sln), or from the current directory outside a checkout.
//
// An unset or blank variable means "use the default"; any other value that does not fit
// its form is an error, never a silent default, because a nightly run that quietly ran
// the wrong budget is worse than one that fails to start.
//
// PS_SEED is the *base* of the seed derivation (Shard.SeedFor), not FsCheck's seed
// itself: that keeps the N shards of one nightly run on disjoint seeds even when they
// share PS_SEED. To re-run one exact FsCheck run, use PS_REPLAY, which a failure prints.

using System.Globalization;

namespace PropertySuite.Generators.Harness;

/// <summary>
/// The budget of a property run. Construction validates every field, so a Budget in hand
/// is always usable; <see cref="FromEnvironment"/> and <see cref="Parse(IReadOnlyDictionary{string, string?})"/>
/// build one from PS_* variables.
/// </summary>
/// <param name="Tests">Test cases per FsCheck run (MaxTest); at least 1.</param>
/// <param name="Time">Wall-clock budget for nightly runs; null runs exactly one FsCheck run.</param>
/// <param name="Seed">Base seed replacing the name-derived one; see the file header.</param>
/// <param name="Replay">Exact FsCheck replay; when set, time, seed and shard are ignored.</param>
/// <param name="Shard">Which slice of the seed space this machine runs.</param>
/// <param name="ReproDir">Directory where failing scenarios are written; an absolute path
/// when it comes from <see cref="Parse(IReadOnlyDictionary{string, string?})"/>.</param>
/// <param name="MaxSteps">Upper bound on generated scenario length; at least 1.</param>
public sealed record Budget(
    int Tests,
    TimeSpan? Time,
    ulong? Seed,
    ReplayToken? Replay,
    Shard Shard,
    string ReproDir,
    int MaxSteps)
{
    public const int DefaultTests = 200;

    /// <summary>Longest generated scenario at full size. Measured (2 cores, Release): with the
    /// core families, scenario lengths uniform in [1, MaxSteps·size/100] and sizes ramping over
    /// 200 tests, the rarest core bug (broken-synchronize-rcu-no-wait: start a reader, step it,
    /// synchronize_rcu elsewhere) shows up in 2.2% of scenarios at 60 and 3.6% at 100, i.e. a
    /// 1.3% versus 0.06% chance that 200 tests miss it; a correct variant's 200 tests take
    /// about 1 s at 100.</summary>
    public const int DefaultMaxSteps = 100;

    public const string SolutionFileName = "PropertySuite.sln";

    public const string TestsVariable = "PS_TESTS";
    public const string TimeVariable = "PS_TIME";
    public const string SeedVariable = "PS_SEED";
    public const string ReplayVariable = "PS_REPLAY";
    public const string ShardVariable = "PS_SHARD";
    public const string ReproDirVariable = "PS_REPRO_DIR";
    public const string MaxStepsVariable = "PS_MAX_STEPS";

    /// <summary>Every variable this file reads, in the order of the header table.</summary>
    public static IReadOnlyList<string> Variables { get; } =
    [
        TestsVariable, TimeVariable, SeedVariable, ReplayVariable,
        ShardVariable, ReproDirVariable, MaxStepsVariable,
    ];

    private readonly int _tests = AtLeastOne(Tests, nameof(Tests));
    private readonly TimeSpan? _time = PositiveOrNull(Time, nameof(Time));
    private readonly Shard _shard = Shard ?? throw new ArgumentNullException(nameof(Shard));
    private readonly string _reproDir = NonBlank(ReproDir, nameof(ReproDir));
    private readonly int _maxSteps = AtLeastOne(MaxSteps, nameof(MaxSteps));

    public int Tests { get => _tests; init => _tests = AtLeastOne(value, nameof(Tests)); }
    public TimeSpan? Time { get => _time; init => _time = PositiveOrNull(value, nameof(Time)); }
    public Shard Shard { get => _shard; init => _shard = value ?? throw new ArgumentNullException(nameof(Shard)); }
    public string ReproDir { get => _reproDir; init => _reproDir = NonBlank(value, nameof(ReproDir)); }
    public int MaxSteps { get => _maxSteps; init => _maxSteps = AtLeastOne(value, nameof(MaxSteps)); }

    /// <summary>Reads the PS_* variables of this process.</summary>
    /// <exception cref="BudgetException">A variable is set to a value outside its form.</exception>
    public static Budget FromEnvironment()
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var name in Variables)
            env[name] = Environment.GetEnvironmentVariable(name);
        return Parse(env);
    }

    /// <summary>Builds a budget from a variable map (missing keys mean unset); the default
    /// repro directory is searched for from the current directory.</summary>
    /// <exception cref="BudgetException">A variable is set to a value outside its form.</exception>
    public static Budget Parse(IReadOnlyDictionary<string, string?> env)
    {
        ArgumentNullException.ThrowIfNull(env);
        return new Budget(
            Tests: ParsePositiveInt(env, TestsVariable) ?? DefaultTests,
            Time: ParseTime(env),
            Seed: ParseSeed(env),
            Replay: ParseReplay(env),
            Shard: ParseShard(env) ?? Shard.Single,
            ReproDir: ParseReproDir(env),
            MaxSteps: ParsePositiveInt(env, MaxStepsVariable) ?? DefaultMaxSteps);
    }

    /// <summary>
    /// The nearest directory at or above <paramref name="startDirectory"/> that holds
    /// PropertySuite.sln, or null when there is none (e.g. a copied test binary).
    /// </summary>
    public static string? FindRepositoryRoot(string startDirectory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(startDirectory);
        for (var dir = new DirectoryInfo(Path.GetFullPath(startDirectory)); dir != null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, SolutionFileName)))
                return dir.FullName;
        }
        return null;
    }

    /// <summary>
    /// Parses a duration: a decimal number (invariant culture, '.' as separator) followed
    /// by one of ms, s, m, h. The result must be positive and fit a TimeSpan.
    /// </summary>
    /// <returns>null and a rule explaining the form when <paramref name="text"/> does not parse.</returns>
    public static TimeSpan? TryParseDuration(string text, out string? rule)
    {
        ArgumentNullException.ThrowIfNull(text);
        const string form = "duration must be a positive number followed by ms, s, m or h (e.g. 500ms, 90s, 10m, 2h)";
        var s = text.Trim();
        // "ms" before "m"/"s": the longest unit that matches wins.
        (string Suffix, long TicksPerUnit)[] units =
        [
            ("ms", TimeSpan.TicksPerMillisecond), ("s", TimeSpan.TicksPerSecond),
            ("m", TimeSpan.TicksPerMinute), ("h", TimeSpan.TicksPerHour),
        ];
        foreach (var (suffix, ticksPerUnit) in units)
        {
            if (!s.EndsWith(suffix, StringComparison.Ordinal))
                continue;
            var number = s[..^suffix.Length];
            if (number.Length == 0 || !char.IsAsciiDigit(number[0])
                || !decimal.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value))
            {
                rule = form;
                return null;
            }
            // decimal keeps 28 digits, so value * ticksPerUnit only overflows for absurd inputs.
            if (value > long.MaxValue / (decimal)ticksPerUnit)
            {
                rule = "duration is too long to represent";
                return null;
            }
            var ticks = (long)decimal.Truncate(value * ticksPerUnit);
            if (ticks <= 0)
            {
                rule = "duration must be positive";
                return null;
            }
            rule = null;
            return TimeSpan.FromTicks(ticks);
        }
        rule = form;
        return null;
    }

    private static string? Read(IReadOnlyDictionary<string, string?> env, string name) =>
        env.TryGetValue(name, out var value) && !string.IsNullOrWhiteSpace(value) ? value.Trim() : null;

    private static int? ParsePositiveInt(IReadOnlyDictionary<string, string?> env, string name)
    {
        var raw = Read(env, name);
        if (raw == null)
            return null;
        if (!int.TryParse(raw, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < 1)
            throw new BudgetException(name, raw, $"must be a positive integer (1 to {int.MaxValue})");
        return n;
    }

    private static TimeSpan? ParseTime(IReadOnlyDictionary<string, string?> env)
    {
        var raw = Read(env, TimeVariable);
        if (raw == null)
            return null;
        return TryParseDuration(raw, out var rule) ?? throw new BudgetException(TimeVariable, raw, rule!);
    }

    private static ulong? ParseSeed(IReadOnlyDictionary<string, string?> env)
    {
        var raw = Read(env, SeedVariable);
        if (raw == null)
            return null;
        if (!ulong.TryParse(raw, NumberStyles.None, CultureInfo.InvariantCulture, out var seed))
            throw new BudgetException(SeedVariable, raw, $"seed must be a decimal integer from 0 to {ulong.MaxValue}");
        return seed;
    }

    private static ReplayToken? ParseReplay(IReadOnlyDictionary<string, string?> env)
    {
        var raw = Read(env, ReplayVariable);
        if (raw == null)
            return null;
        return ReplayToken.TryParse(raw, out var token, out var rule)
            ? token
            : throw new BudgetException(ReplayVariable, raw, rule!);
    }

    private static Shard? ParseShard(IReadOnlyDictionary<string, string?> env)
    {
        var raw = Read(env, ShardVariable);
        if (raw == null)
            return null;
        var parts = raw.Split('/');
        if (parts.Length != 2
            || !int.TryParse(parts[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var index)
            || !int.TryParse(parts[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var count))
        {
            throw new BudgetException(ShardVariable, raw, "shard must be written i/N with non-negative integers, e.g. 0/4");
        }
        if (count < 1)
            throw new BudgetException(ShardVariable, raw, "shard count must be >= 1");
        if (index >= count)
            throw new BudgetException(ShardVariable, raw, "shard index must be < shard count");
        return new Shard(index, count);
    }

    /// <summary>
    /// Relative paths, like the default, are taken from the repository root: under
    /// `dotnet test` the current directory is the test binary's output folder, which is
    /// not where anyone would look for a repro.
    /// </summary>
    private static string ParseReproDir(IReadOnlyDictionary<string, string?> env)
    {
        var raw = Read(env, ReproDirVariable) ?? "repros";
        if (raw.Contains('\0'))
            throw new BudgetException(ReproDirVariable, raw, "directory path must not contain NUL characters");
        var cwd = Directory.GetCurrentDirectory();
        return Path.GetFullPath(raw, FindRepositoryRoot(cwd) ?? cwd);
    }

    private static int AtLeastOne(int value, string name) =>
        value >= 1 ? value : throw new ArgumentOutOfRangeException(name, value, "must be at least 1");

    private static TimeSpan? PositiveOrNull(TimeSpan? value, string name) =>
        value is null || value.Value > TimeSpan.Zero
            ? value
            : throw new ArgumentOutOfRangeException(name, value, "must be positive when set");

    private static string NonBlank(string value, string name) =>
        !string.IsNullOrWhiteSpace(value) ? value : throw new ArgumentException("must not be blank", name);
}

/// <summary>
/// One slice <c>Index/Count</c> of a run split across machines. Slices are disjoint by
/// construction: batch b of shard i draws seed number <c>b*Count + i</c>.
/// </summary>
public sealed record Shard
{
    /// <summary>The whole run on one machine: 0/1.</summary>
    public static Shard Single { get; } = new(0, 1);

    /// <exception cref="ArgumentOutOfRangeException">Unless 0 &lt;= index &lt; count.</exception>
    public Shard(int index, int count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, count);
        Index = index;
        Count = count;
    }

    public int Index { get; }
    public int Count { get; }

    /// <summary>Whether this shard runs the <paramref name="testIndex"/>-th item of a
    /// list that every shard enumerates in the same order (round-robin).</summary>
    public bool Owns(int testIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(testIndex);
        return testIndex % Count == Index;
    }

    /// <summary>
    /// The FsCheck seed of batch <paramref name="batchIndex"/> on this shard: splitmix64 of
    /// <c>baseSeed + batchIndex*Count + Index</c>. Deterministic, so a nightly failure can
    /// be re-run from its printed seed; the mixing spreads neighbouring inputs across the
    /// 64-bit space, so different batches never start on nearby seeds.
    /// </summary>
    public ulong SeedFor(ulong baseSeed, long batchIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(batchIndex);
        unchecked
        {
            return SplitMix64.Mix(baseSeed + (ulong)batchIndex * (ulong)Count + (ulong)Index);
        }
    }

    public override string ToString() => $"{Index}/{Count}";
}

/// <summary>
/// An FsCheck replay position as FsCheck prints it: <c>seed,gamma</c> replays a whole run,
/// <c>seed,gamma,size</c> replays one failing test case (then shrinks it again).
/// </summary>
public sealed record ReplayToken
{
    /// <exception cref="ArgumentException">Gamma is even (FsCheck rejects it) or size is negative.</exception>
    public ReplayToken(ulong seed, ulong gamma, int? size = null)
    {
        if ((gamma & 1) == 0)
            throw new ArgumentException("gamma must be odd", nameof(gamma));
        if (size < 0)
            throw new ArgumentOutOfRangeException(nameof(size), size, "size must be non-negative");
        Seed = seed;
        Gamma = gamma;
        Size = size;
    }

    public ulong Seed { get; }
    public ulong Gamma { get; }
    public int? Size { get; }

    /// <summary>Parses <c>seed,gamma</c> or <c>seed,gamma,size</c>; the parentheses and
    /// spaces of FsCheck's own output, <c>(seed,gamma,size)</c>, are accepted too.</summary>
    public static bool TryParse(string text, out ReplayToken? token, out string? rule)
    {
        ArgumentNullException.ThrowIfNull(text);
        token = null;
        var s = text.Trim();
        if (s.StartsWith('(') && s.EndsWith(')'))
            s = s[1..^1];
        var parts = s.Split(',');
        if (parts.Length is not (2 or 3))
        {
            rule = "replay must be seed,gamma or seed,gamma,size";
            return false;
        }
        if (!ulong.TryParse(parts[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var seed))
        {
            rule = "replay seed must be an unsigned 64-bit decimal integer";
            return false;
        }
        if (!ulong.TryParse(parts[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var gamma))
        {
            rule = "replay gamma must be an unsigned 64-bit decimal integer";
            return false;
        }
        if ((gamma & 1) == 0)
        {
            rule = "replay gamma must be odd";
            return false;
        }
        int? size = null;
        if (parts.Length == 3)
        {
            if (!int.TryParse(parts[2].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var sz))
            {
                rule = "replay size must be a non-negative integer";
                return false;
            }
            size = sz;
        }
        rule = null;
        token = new ReplayToken(seed, gamma, size);
        return true;
    }

    /// <summary>The form PS_REPLAY accepts: <c>seed,gamma</c> or <c>seed,gamma,size</c>.</summary>
    public override string ToString() =>
        Size is { } size
            ? string.Create(CultureInfo.InvariantCulture, $"{Seed},{Gamma},{size}")
            : string.Create(CultureInfo.InvariantCulture, $"{Seed},{Gamma}");
}

/// <summary>A PS_* variable holds a value outside its form. The message reads
/// <c>NAME=value: rule</c>.</summary>
public sealed class BudgetException : Exception
{
    public BudgetException(string variable, string value, string rule)
        : base($"{variable}={value}: {rule}")
    {
        Variable = variable;
        Value = value;
        Rule = rule;
    }

    public string Variable { get; }
    public string Value { get; }
    public string Rule { get; }
}

/// <summary>splitmix64's output function (Steele, Lea, Flood 2014), the mixer FsCheck's
/// own Rnd is built on; a bijection on 64-bit integers.</summary>
internal static class SplitMix64
{
    public static ulong Mix(ulong x)
    {
        unchecked
        {
            x += 0x9e3779b97f4a7c15UL;
            x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9UL;
            x = (x ^ (x >> 27)) * 0x94d049bb133111ebUL;
            return x ^ (x >> 31);
        }
    }
}
