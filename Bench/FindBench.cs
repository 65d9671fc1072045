// Time to the first failure and to the shrunk repro, for every buggy variant: the meta-tests'
// search (FsCheck through ScenarioProperty, the variant's search effort), repeated over several
// base seeds, medians and maxima printed. Wall clock, so run it in Release on a quiet machine.
using System.Globalization;
using PropertySuite.Engine.Config;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;

namespace PropertySuite.Bench;

public static class FindBench
{
    public static int Run(string[] args)
    {
        int seeds = args.Length > 0 && int.TryParse(args[0], NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0 ? n : 5;
        var table = new TextTable("variant", "found", "tests median", "find ms median", "find ms max", "shrink ms median", "shrink ms max", "repro ops max");
        foreach (var v in KernelVariants.All.Where(v => !v.Correct))
        {
            var tests = new List<long>();
            var find = new List<double>();
            var shrink = new List<double>();
            int found = 0, ops = 0;
            for (int i = 0; i < seeds; i++)
            {
                var env = new Dictionary<string, string?> { ["PS_SEED"] = (1000 + i).ToString(CultureInfo.InvariantCulture) };
                if (VariantTargets.Of(v.Name).SearchTests is > 0 and int effort) env["PS_TESTS"] = effort.ToString(CultureInfo.InvariantCulture);
                var budget = Budget.Parse(env);
                var r = ScenarioProperty.Check($"FindBench/{v.Name}", ScenarioOptions.For(v.Name, budget), budget);
                find.Add(r.TimeToFind.TotalMilliseconds);
                shrink.Add(r.TimeToShrink.TotalMilliseconds);
                tests.Add(r.Pbt.TestsRun);
                if (r.Failure is { } f) { found++; ops = Math.Max(ops, f.ReproOps); }
            }
            table.Add(v.Name, $"{found}/{seeds}", Median(tests.Select(t => (double)t).ToList()).ToString("0", CultureInfo.InvariantCulture),
                Median(find).ToString("0", CultureInfo.InvariantCulture), find.Max().ToString("0", CultureInfo.InvariantCulture),
                Median(shrink).ToString("0", CultureInfo.InvariantCulture), shrink.Max().ToString("0", CultureInfo.InvariantCulture), ops);
        }
        table.Write(Console.Out);
        return 0;
    }

    private static double Median(List<double> xs)
    {
        xs.Sort();
        return xs.Count == 0 ? 0 : xs.Count % 2 == 1 ? xs[xs.Count / 2] : (xs[xs.Count / 2 - 1] + xs[xs.Count / 2]) / 2;
    }
}
