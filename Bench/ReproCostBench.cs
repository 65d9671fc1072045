// `repro-cost FILE [RUNS=20]`: where the time of one run of a repro goes. The scenario is run
// RUNS times with no invariant, with every invariant, and with each invariant alone; each row is
// the median milliseconds per run and the share over the unchecked run. What a slow shrink
// (hundreds of candidate runs of one scenario) pays per candidate, broken down.
using System.Diagnostics;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Bench;

public static class ReproCostBench
{
    public static int Run(string[] args)
    {
        if (args.Length is < 1 or > 2) { Console.Error.WriteLine("usage: repro-cost FILE [RUNS=20]"); return 2; }
        int runs = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 20;
        var s = Repro.Parse(File.ReadAllText(args[0]));
        var table = new TextTable("invariants", "ms per run", "over unchecked");
        double none = Time(s, [], runs);
        table.Add("none", none, 1.0);
        table.Add("all", Time(s, InvariantRegistry.All, runs), Time(s, InvariantRegistry.All, runs) / none);
        foreach (var inv in InvariantRegistry.All)
        {
            double t = Time(s, [inv], runs);
            table.Add(inv.Name, t, t / none);
        }
        Console.WriteLine($"{args[0]}: {s.Ops.Length} operations, {s.Arch.Name}, median of {runs} runs");
        table.Write(Console.Out);
        return 0;
    }

    private static double Time(Scenario s, IReadOnlyList<IInvariant> invariants, int runs)
    {
        ScenarioRunner.Run(s, invariants); // JIT
        var ms = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            var clock = Stopwatch.StartNew();
            ScenarioRunner.Run(s, invariants);
            ms.Add(clock.Elapsed.TotalMilliseconds);
        }
        return FindBench.Median(ms);
    }
}
