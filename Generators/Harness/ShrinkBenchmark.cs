// How fast SequenceShrinker.Minimize reduces a long failing sequence to its cause.
//
// Toy model, standing in for the engine: a step is an int. Benign steps are 0..99 and
// change nothing that matters; the three trigger steps Arm, Load, Fire advance a small
// state machine when they occur in that order, and the invariant "never fired" is
// checked after every step. The only 1-minimal failing sequence is [Arm, Load, Fire],
// so the result length says whether the shrink reached the minimum.
//
// Positions and benign values come from splitmix64 with fixed seeds, so every run
// shrinks the same inputs; only the timings vary. This is a benchmark, not a test:
// nothing here asserts on time.

using System.Diagnostics;
using System.Globalization;

namespace PropertySuite.Generators.Harness;

/// <summary>One benchmark size: <see cref="Trials"/> planted bugs among <see cref="BenignSteps"/> steps.</summary>
public sealed record ShrinkBenchmarkRow(
    int BenignSteps,
    int Trials,
    double MedianMilliseconds,
    double MaxMilliseconds,
    int MedianAttempts,
    int MaxAttempts,
    IReadOnlyList<int> ResultLengths);

public static class ShrinkBenchmark
{
    public const int Arm = -1;
    public const int Load = -2;
    public const int Fire = -3;

    /// <summary>Sizes at which FsCheck's own array shrinker hit its cap.</summary>
    public static IReadOnlyList<int> Sizes { get; } = [1_000, 3_000];

    public const int TrialsPerSize = 5;

    /// <summary>Far above what chunk removal needs; reaching it would show in the attempts column.</summary>
    public const int MaxAttempts = 100_000;

    /// <summary>Runs every size, prints one line per size to <paramref name="output"/> and
    /// returns the same numbers.</summary>
    public static IReadOnlyList<ShrinkBenchmarkRow> Run(TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        var rows = new List<ShrinkBenchmarkRow>();
        output.WriteLine("SequenceShrinker.Minimize: 3 trigger steps planted among N benign steps");
        output.WriteLine($"{"N",6} {"trials",6} {"median ms",10} {"max ms",8} {"median att.",11} {"max att.",8}  result lengths");
        foreach (var size in Sizes)
        {
            var row = RunSize(size, TrialsPerSize);
            rows.Add(row);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{row.BenignSteps,6} {row.Trials,6} {row.MedianMilliseconds,10:F2} {row.MaxMilliseconds,8:F2} {row.MedianAttempts,11} {row.MaxAttempts,8}  {string.Join(",", row.ResultLengths)}"));
        }
        return rows;
    }

    /// <summary>A benign-step sequence of length <paramref name="benignSteps"/> + 3 with
    /// Arm, Load, Fire planted in order at positions derived from <paramref name="seed"/>.</summary>
    public static int[] PlantBug(int benignSteps, ulong seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(benignSteps);
        var length = benignSteps + 3;
        var positions = new SortedSet<int>();
        var state = seed;
        while (positions.Count < 3)
            positions.Add((int)(Next(ref state) % (ulong)length));

        var steps = new int[length];
        for (var i = 0; i < length; i++)
            steps[i] = (int)(Next(ref state) % 100);
        var triggers = new[] { Arm, Load, Fire };
        var t = 0;
        foreach (var p in positions)
            steps[p] = triggers[t++];
        return steps;
    }

    /// <summary>Runs the toy model; true when the invariant breaks at some step.</summary>
    public static bool Fails(int[] steps)
    {
        ArgumentNullException.ThrowIfNull(steps);
        var stage = 0;
        foreach (var step in steps)
        {
            stage = (stage, step) switch
            {
                (0, Arm) => 1,
                (1, Load) => 2,
                (2, Fire) => 3,
                _ => stage,
            };
            if (stage == 3)
                return true;
        }
        return false;
    }

    /// <summary>Benign steps simplify to 0; triggers do not simplify.</summary>
    public static IEnumerable<int> ShrinkStep(int step) => step > 0 ? [0] : [];

    private static ShrinkBenchmarkRow RunSize(int benignSteps, int trials)
    {
        var millis = new double[trials];
        var attempts = new int[trials];
        var lengths = new int[trials];
        for (var trial = 0; trial < trials; trial++)
        {
            var steps = PlantBug(benignSteps, seed: (ulong)(benignSteps * 100 + trial));
            var clock = Stopwatch.StartNew();
            var shrunk = SequenceShrinker.Minimize(steps, Fails, ShrinkStep, MaxAttempts, out attempts[trial]);
            clock.Stop();
            millis[trial] = clock.Elapsed.TotalMilliseconds;
            lengths[trial] = shrunk.Length;
        }
        return new ShrinkBenchmarkRow(
            benignSteps, trials, Median(millis), millis.Max(), (int)Median(attempts.Select(a => (double)a).ToArray()),
            attempts.Max(), lengths);
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    private static ulong Next(ref ulong state)
    {
        unchecked
        {
            state += 1;
        }
        return SplitMix64.Mix(state);
    }
}
