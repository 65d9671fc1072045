// What each registered invariant costs per check, on machines of growing size, after a warm-up
// of ~50 vmalloc/read/vfree steps (DESIGN.md §4: checking must stay cheap as state grows).
using System.Diagnostics;
using PropertySuite.Engine;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Bench;

public static class InvariantCostBench
{
    private static readonly (string Config, string Memory)[] DefaultMachines =
        [("x86_64-4k-l4", "1G"), ("arm64-16k-l3", "1G"), ("x86_64-4k-l4", "1T"), ("arm64-16k-l3", "1T"), ("x86_64-4k-l4", "64T")];

    /// <summary>args: [steps] [CONFIG:SIZE ...] (default 50 steps on five machines).</summary>
    public static int Run(string[] args)
    {
        int steps = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 50;
        var Machines = args.Length > 1
            ? args[1..].Select(a => a.Split(":")).Select(p => (Config: p[0], Memory: p[1])).ToArray()
            : DefaultMachines;
        var header = new List<string> { "invariant (µs per check)" };
        header.AddRange(Machines.Select(m => $"{m.Config} {m.Memory}"));
        var table = new TextTable(header.ToArray());
        var costs = new double[InvariantRegistry.All.Count, Machines.Length];
        for (int m = 0; m < Machines.Length; m++)
        {
            var k = Warm(Machines[m].Config, Machines[m].Memory, steps);
            for (int i = 0; i < InvariantRegistry.All.Count; i++)
                costs[i, m] = Measure(InvariantRegistry.All[i], k);
        }
        for (int i = 0; i < InvariantRegistry.All.Count; i++)
        {
            var row = new List<object> { InvariantRegistry.All[i].Name };
            for (int m = 0; m < Machines.Length; m++) row.Add(costs[i, m]);
            table.Add(row.ToArray());
        }
        var total = new List<object> { "all" };
        for (int m = 0; m < Machines.Length; m++) total.Add(Enumerable.Range(0, InvariantRegistry.All.Count).Sum(i => costs[i, m]));
        table.Add(total.ToArray());
        Console.WriteLine($"Invariant cost after {steps} vmalloc/read/vfree steps (2 CPUs):");
        table.Write(Console.Out);
        return 0;
    }

    /// <summary>A kernel after <paramref name="steps"/> workload steps, all invariants passing.</summary>
    public static Kernel Warm(string config, string memory, int steps)
    {
        var s = Workload.Scenario(config, memory, 2, steps, seed: 3);
        Kernel? last = null;
        var r = ScenarioRunner.Run(s, trace: (_, _, k) => last = k);
        if (r.Failed) throw new InvalidOperationException($"warm-up failed: {r}");
        return last!;
    }

    private static double Measure(IInvariant inv, Kernel k)
    {
        var warm = Stopwatch.StartNew();
        for (int i = 0; i < 50 && warm.ElapsedMilliseconds < 300; i++) inv.Check(k); // tiered JIT
        int n = 1;
        var clock = Stopwatch.StartNew();
        while (true)
        {
            for (int i = 0; i < n; i++) inv.Check(k);
            if (clock.Elapsed.TotalMilliseconds > 200 || n >= 1 << 20) break;
            n *= 2;
            clock.Restart();
        }
        return clock.Elapsed.TotalMilliseconds * 1000 / n;
    }
}
