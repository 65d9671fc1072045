// Shrinking for operation sequences, written for FsCheck's greedy shrink loop.
//
// FsCheck walks a shrinker's candidates in order, takes the first one that still fails,
// and starts over from it; it stops after 5,000 candidate evaluations in total, a limit
// hard-coded in Runner.fs. Its own array shrinker removes one element
// at a time, so a 1,000-step failure runs into that cap with hundreds of steps left.
// Removing chunks first, halving the chunk size as in delta debugging, makes the number
// of evaluations grow with the logarithm of the length instead: a 3-step bug hidden among
// 1,000 or 3,000 steps shrinks to exactly those 3 steps in 110–150 evaluations
// (ShrinkBenchmark; FsCheck 3.6's own array shrinker was measured at ~200–300 for a similar shrinker).
//
// Candidates are generated lazily from a private copy of the input, which is therefore
// never written to and cannot change under the enumeration. There are finitely many of
// them (about 2n chunk removals plus what the element shrinker yields), which is what
// FsCheck needs (issue #675: a shrinker that never ends hangs the run).

namespace PropertySuite.Generators.Harness;

public static class SequenceShrinker
{
    /// <summary>
    /// Smaller or simpler variants of <paramref name="xs"/>, most aggressive first:
    /// <list type="number">
    /// <item>chunk removals: with chunk size k = n/2, n/4, …, 1 (and k = 1 when n = 1),
    /// remove each chunk [j·k, j·k + k) in turn, j = 0, 1, …; the last chunk may be shorter;</item>
    /// <item>element simplifications: for i = 0 … n−1, each candidate of
    /// <paramref name="shrinkElement"/>(xs[i]) in place of xs[i].</item>
    /// </list>
    /// Each candidate is a new array; <paramref name="xs"/> is not modified.
    /// </summary>
    /// <param name="shrinkElement">Simpler variants of one element; must be pure and finite.
    /// Return nothing for elements that cannot be simplified.</param>
    public static IEnumerable<T[]> Candidates<T>(IReadOnlyList<T> xs, Func<T, IEnumerable<T>> shrinkElement)
    {
        ArgumentNullException.ThrowIfNull(xs);
        ArgumentNullException.ThrowIfNull(shrinkElement);
        return Enumerate(Copy(xs), shrinkElement);
    }

    /// <summary>
    /// Greedy minimization outside FsCheck: repeatedly replace the sequence by the first
    /// candidate (in <see cref="Candidates"/> order) that still fails, until none does or
    /// <paramref name="maxAttempts"/> candidates have been tried. This is FsCheck's own
    /// shrink loop without its fixed 5,000-attempt cap; used for benchmarks, for tools
    /// that minimize a saved repro, and to test the candidate order.
    /// </summary>
    /// <param name="xs">A sequence for which <paramref name="stillFails"/> holds; not modified.</param>
    /// <param name="stillFails">Whether a candidate still shows the failure; must be deterministic.</param>
    /// <param name="attempts">How many candidates were evaluated.</param>
    /// <returns>A sequence that still fails and, if attempts were not exhausted, from which
    /// no single candidate fails (1-minimal with respect to chunk removal).</returns>
    public static T[] Minimize<T>(
        T[] xs, Func<T[], bool> stillFails, Func<T, IEnumerable<T>> shrinkElement, int maxAttempts, out int attempts)
    {
        ArgumentNullException.ThrowIfNull(xs);
        ArgumentNullException.ThrowIfNull(stillFails);
        ArgumentNullException.ThrowIfNull(shrinkElement);
        ArgumentOutOfRangeException.ThrowIfNegative(maxAttempts);

        attempts = 0;
        var current = xs;
        while (true)
        {
            T[]? next = null;
            foreach (var candidate in Enumerate(current, shrinkElement))
            {
                if (attempts == maxAttempts)
                    return current;
                attempts++;
                if (stillFails(candidate))
                {
                    next = candidate;
                    break;
                }
            }
            if (next == null)
                return current;
            current = next;
        }
    }

    /// <summary>Chunk sizes n/2, n/4, …, 1, largest first; just 1 for n = 1; none for n = 0.</summary>
    public static IEnumerable<int> ChunkSizes(int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        for (var k = Math.Max(n / 2, Math.Min(n, 1)); k >= 1; k /= 2)
            yield return k;
    }

    private static IEnumerable<T[]> Enumerate<T>(IReadOnlyList<T> xs, Func<T, IEnumerable<T>> shrinkElement)
    {
        var n = xs.Count;
        foreach (var k in ChunkSizes(n))
        {
            for (var start = 0; start < n; start += k)
                yield return Without(xs, start, Math.Min(k, n - start));
        }

        for (var i = 0; i < n; i++)
        {
            foreach (var simpler in shrinkElement(xs[i]))
            {
                var copy = Copy(xs);
                copy[i] = simpler;
                yield return copy;
            }
        }
    }

    private static T[] Without<T>(IReadOnlyList<T> xs, int start, int count)
    {
        var result = new T[xs.Count - count];
        if (xs is T[] array)
        {
            Array.Copy(array, 0, result, 0, start);
            Array.Copy(array, start + count, result, start, array.Length - start - count);
            return result;
        }
        for (var i = 0; i < start; i++)
            result[i] = xs[i];
        for (var i = start + count; i < xs.Count; i++)
            result[i - count] = xs[i];
        return result;
    }

    private static T[] Copy<T>(IReadOnlyList<T> xs)
    {
        if (xs is T[] array)
            return (T[])array.Clone();
        var result = new T[xs.Count];
        for (var i = 0; i < result.Length; i++)
            result[i] = xs[i];
        return result;
    }
}
