// A generated-like scenario for benchmarks: a long, seeded mix of vmalloc, reads from random
// CPUs and vfree, keeping a bounded number of areas alive (like the generators' vmalloc family).
using System.Collections.Immutable;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;

namespace PropertySuite.Bench;

public static class Workload
{
    private static readonly long[] Sizes = [4L << 10, 8L << 10, 16L << 10, 64L << 10, 256L << 10];
    public const int MaxLive = 24;

    public static ImmutableArray<Op> VmallocReadVfree(int steps, int cpus, ulong seed)
    {
        var rng = new Prng(seed);
        var ops = ImmutableArray.CreateBuilder<Op>(steps);
        var live = new List<string>();
        int next = 0;
        while (ops.Count < steps)
        {
            int roll = rng.Next(100);
            if (live.Count == 0 || (roll < 35 && live.Count < MaxLive))
            {
                string h = "v" + (++next).ToString(System.Globalization.CultureInfo.InvariantCulture);
                ops.Add(new VmallocOp(rng.Pick(Sizes)) { Bind = h, Cpu = rng.Next(cpus) });
                live.Add(h);
            }
            else if (roll < 75)
                ops.Add(new ReadOp(rng.Pick(live), rng.Range(0, 255) << 10) { Cpu = rng.Next(cpus) });
            else
            {
                int i = rng.Next(live.Count);
                ops.Add(new VfreeOp(live[i]) { Cpu = rng.Next(cpus) });
                live.RemoveAt(i);
            }
        }
        return ops.ToImmutable();
    }

    public static Scenario Scenario(string config, string memory, int cpus, int steps, ulong seed)
    {
        if (!ArchConfig.TryParseSize(memory, out long bytes)) throw new ArgumentException(memory);
        return new Scenario(ArchConfig.ByName(config), new MachineConfig(bytes, cpus), "default", VmallocReadVfree(steps, cpus, seed));
    }
}
