// A small deterministic PRNG (SplitMix64) for building scenarios from a seed. Our own, so that
// a seed means the same scenario on every .NET version (System.Random's algorithm may change).
namespace PropertySuite.Generators;

public sealed class Prng(ulong seed)
{
    private ulong _state = seed;

    /// <summary>An independent stream for <paramref name="name"/> (a family's name, say) under
    /// <paramref name="seed"/>: seeded by the seed and the name's 64-bit FNV-1a hash (stable on
    /// every machine, unlike string.GetHashCode), mixed so that nearby seeds and names give
    /// unrelated streams.</summary>
    public static Prng Fork(ulong seed, string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return new Prng(Mix(seed ^ Mix(Harness.PbtRunner.StableHash(name))));
    }

    /// <summary>SplitMix64's output function.</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
        return z ^ (z >> 31);
    }

    public ulong NextU64()
    {
        ulong z = _state += 0x9e3779b97f4a7c15UL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, n).</summary>
    public int Next(int n) => n <= 1 ? 0 : (int)(NextU64() % (ulong)n);

    /// <summary>Uniform in [lo, hi].</summary>
    public long Range(long lo, long hi) => lo + (long)(NextU64() % (ulong)(hi - lo + 1));

    public bool Chance(int percent) => Next(100) < percent;

    public T Pick<T>(IReadOnlyList<T> xs) => xs[Next(xs.Count)];

    /// <summary>An index drawn with probability proportional to its weight (weights are &gt;= 0);
    /// -1 when every weight is 0.</summary>
    public int PickIndex(IReadOnlyList<int> weights)
    {
        long total = 0;
        foreach (int w in weights) total += Math.Max(0, w);
        if (total == 0) return -1;
        long r = (long)(NextU64() % (ulong)total);
        for (int i = 0; i < weights.Count; i++)
        {
            int w = Math.Max(0, weights[i]);
            if (r < w) return i;
            r -= w;
        }
        return -1;
    }
}
