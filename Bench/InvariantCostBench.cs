// What each registered invariant costs per check, on machines of growing size, after a warm-up
// of ~50 vmalloc/read/vfree steps (checking must stay cheap as state grows).
using System.Diagnostics;
using PropertySuite.Engine;
using PropertySuite.Engine.Scenario;
using Op = PropertySuite.Engine.Scenario.Op;
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
        var machines = args.Length > 1
            ? args[1..].Select(a => a.Split(":")).Select(p => (Config: p[0], Memory: p[1])).ToArray()
            : DefaultMachines;
        var invariants = InvariantRegistry.All;
        JitWarmUp(invariants);
        var steady = new double[invariants.Count, machines.Length];
        var perStep = new double[invariants.Count, machines.Length];
        for (int m = 0; m < machines.Length; m++)
        {
            var (cost, k) = PerStepCost(machines[m].Config, machines[m].Memory, steps, invariants);
            for (int i = 0; i < invariants.Count; i++)
            {
                perStep[i, m] = cost[i];
                steady[i, m] = Measure(invariants[i], k);
            }
        }
        foreach (var (title, costs) in new[] { ($"µs per check after each of {MeasuredSteps} more steps (best of {Rounds} runs)", perStep), ("µs per repeated check of an unchanged state", steady) })
        {
            var header = new List<string> { "invariant" };
            header.AddRange(machines.Select(x => $"{x.Config} {x.Memory}"));
            var table = new TextTable(header.ToArray());
            for (int i = 0; i < invariants.Count; i++)
            {
                var row = new List<object> { invariants[i].Name };
                for (int m = 0; m < machines.Length; m++) row.Add(costs[i, m]);
                table.Add(row.ToArray());
            }
            var total = new List<object> { "all" };
            for (int m = 0; m < machines.Length; m++) total.Add(Enumerable.Range(0, invariants.Count).Sum(i => costs[i, m]));
            table.Add(total.ToArray());
            Console.WriteLine($"Invariant cost, {title} (after {steps} warm-up vmalloc/read/vfree steps, 2 CPUs):");
            table.Write(Console.Out);
            Console.WriteLine();
        }
        return 0;
    }

    private const int MeasuredSteps = 200;

    /// <summary>A throwaway pass so that first-call costs (JIT, lazily built indexes' code
    /// paths) are not charged to the first machine measured.</summary>
    public static void JitWarmUp(IReadOnlyList<IInvariant> invariants)
    {
        var (k, rc, next) = Warm("x86_64-4k-l4", "256M", 20, 50);
        for (int n = 0; n < next.Length; n++)
        {
            k.BeginStep(21 + n);
            ScenarioRunner.Apply(k, rc, next[n]);
            foreach (var inv in invariants) inv.Check(k);
        }
    }

    /// <summary>Microseconds each invariant of <paramref name="invariants"/> costs per check,
    /// checked after each of <see cref="MeasuredSteps"/> workload steps that follow
    /// <paramref name="steps"/> warm-up steps: what a run pays, recomputation included. Best of
    /// <see cref="Rounds"/> fresh runs, since a GC pause lands on whichever check is running.
    /// Also returns the last run's kernel.</summary>
    public static (double[] Us, Kernel Last) PerStepCost(string config, string memory, int steps, IReadOnlyList<IInvariant> invariants)
    {
        var best = Enumerable.Repeat(double.MaxValue, invariants.Count).ToArray();
        Kernel? last = null;
        for (int round = 0; round < Rounds; round++)
        {
            var (k, rc, rest) = Warm(config, memory, steps, MeasuredSteps);
            var sum = new double[invariants.Count];
            var clock = new Stopwatch();
            for (int n = 0; n < rest.Length; n++)
            {
                k.BeginStep(steps + n + 1); // as ScenarioRunner does: the step's change records start empty
                ScenarioRunner.Apply(k, rc, rest[n]);
                for (int i = 0; i < invariants.Count; i++)
                {
                    clock.Restart();
                    var v = invariants[i].Check(k);
                    clock.Stop();
                    if (v is not null) throw new InvalidOperationException($"benchmark workload broke {v}");
                    sum[i] += clock.Elapsed.TotalMilliseconds * 1000 / rest.Length;
                }
            }
            for (int i = 0; i < invariants.Count; i++) best[i] = Math.Min(best[i], sum[i]);
            last = k;
        }
        return (best, last!);
    }
    private const int Rounds = 3;

    /// <summary>A kernel after <paramref name="steps"/> workload steps (all invariants passing),
    /// its run context, and the next <paramref name="more"/> operations of the same workload.</summary>
    public static (Kernel K, RunContext Rc, Op[] Next) Warm(string config, string memory, int steps, int more)
    {
        var s = Workload.Scenario(config, memory, 2, steps + more, seed: 3);
        var k = s.Boot();
        var rc = new RunContext(k);
        for (int i = 0; i < steps; i++)
        {
            k.BeginStep(i + 1);
            ScenarioRunner.Apply(k, rc, s.Ops[i]);
        }
        foreach (var inv in InvariantRegistry.All)
            if (inv.Check(k) is { } v) throw new InvalidOperationException($"warm-up broke {v}");
        return (k, rc, s.Ops.Skip(steps).ToArray());
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
