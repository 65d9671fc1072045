// `find [N=5] [VARIANT...]`: time to the first failure and to the shrunk repro, for every buggy
// variant (or the ones named): the meta-tests'
// search (FsCheck through ScenarioProperty, the variant's search effort), repeated over several
// base seeds, medians and maxima printed. Wall clock, so run it in Release on a quiet machine.
//
// `find rates [N=4000] [VARIANT...]`: the search effort a variant needs, from data. N generated
// scenarios of the variant (fixed seeds, sizes 1..100 in turn, as FsCheck's size ramp gives a
// run) are generated and checked; the fraction p that violates an invariant the variant breaks
// is the chance that one test of a meta-test finds it, so a search of n tests misses with
// probability (1-p)^n, and n99 = ln(0.01) / ln(1-p) tests miss with probability below 1 %.
// Deterministic (no wall clock in the numbers).
using System.Globalization;
using PropertySuite.Engine.Config;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;

namespace PropertySuite.Bench;

public static class FindBench
{
    public static int Run(string[] args)
    {
        if (args.Length > 0 && args[0] == "rates") return Rates(args[1..]);
        int seeds = 5;
        var only = new HashSet<string>(StringComparer.Ordinal);
        foreach (var a in args)
        {
            if (int.TryParse(a, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0) seeds = n;
            else only.Add(KernelVariants.ByName(a).Name);
        }
        var table = new TextTable("variant", "found", "tests median", "find ms median", "find ms max", "shrink ms median", "shrink ms max", "repro ops max");
        foreach (var v in KernelVariants.All.Where(v => !v.Correct && (only.Count == 0 || only.Contains(v.Name))))
        {
            var r = Measure(v.Name, seeds);
            table.Add(v.Name, $"{r.Found}/{seeds}", r.TestsMedian.ToString("0", CultureInfo.InvariantCulture),
                r.FindMsMedian.ToString("0", CultureInfo.InvariantCulture), r.FindMsMax.ToString("0", CultureInfo.InvariantCulture),
                r.ShrinkMsMedian.ToString("0", CultureInfo.InvariantCulture), r.ShrinkMsMax.ToString("0", CultureInfo.InvariantCulture), r.ReproOpsMax);
        }
        table.Write(Console.Out);
        return 0;
    }

    /// <summary>What <see cref="Measure"/> returns: over the seeds, how many found a failure,
    /// and the medians and maxima of tests run, time to find, time to shrink, repro length.
    /// TotalMsMedian is find plus shrink per seed, median: the figure the performance goal is about.</summary>
    public sealed record FindFigures(int Found, double TestsMedian, double FindMsMedian, double FindMsMax, double ShrinkMsMedian, double ShrinkMsMax, int ReproOpsMax, double TotalMsMedian);

    /// <summary>The meta-test's search for <paramref name="variant"/> (its search effort) from
    /// <paramref name="seeds"/> base seeds (1000, 1001, ...).</summary>
    public static FindFigures Measure(string variant, int seeds)
    {
        var tests = new List<double>();
        var find = new List<double>();
        var shrink = new List<double>();
        var total = new List<double>();
        int found = 0, ops = 0;
        for (int i = 0; i < seeds; i++)
        {
            var env = new Dictionary<string, string?> { ["PS_SEED"] = (1000 + i).ToString(CultureInfo.InvariantCulture) };
            if (VariantTargets.Of(variant).SearchTests is > 0 and int effort) env["PS_TESTS"] = effort.ToString(CultureInfo.InvariantCulture);
            var budget = Budget.Parse(env);
            var r = ScenarioProperty.Check($"FindBench/{variant}", ScenarioOptions.For(variant, budget), budget);
            find.Add(r.TimeToFind.TotalMilliseconds);
            shrink.Add(r.TimeToShrink.TotalMilliseconds);
            total.Add(r.TimeToFind.TotalMilliseconds + r.TimeToShrink.TotalMilliseconds);
            tests.Add(r.Pbt.TestsRun);
            if (r.Failure is { } f) { found++; ops = Math.Max(ops, f.ReproOps); }
        }
        return new FindFigures(found, Median(tests), Median(find), find.Max(), Median(shrink), shrink.Max(), ops, Median(total));
    }

    private static int Rates(string[] args)
    {
        int n = 4000;
        var names = new List<string>();
        foreach (var a in args)
        {
            if (int.TryParse(a, NumberStyles.None, CultureInfo.InvariantCulture, out int k) && k > 0) n = k;
            else names.Add(KernelVariants.ByName(a).Name);
        }
        if (names.Count == 0) names.AddRange(VariantTargets.All.Select(t => t.Variant.Name));
        var table = new TextTable("variant", "scenarios", "found", "rate %", "n99", "search effort", "miss % at effort");
        foreach (var name in names)
        {
            var target = VariantTargets.Of(name);
            var options = new ScenarioOptions { Variant = name };
            int found = 0;
            for (int i = 0; i < n; i++)
            {
                var run = ScenarioGenerator.Generate(Shard.Single.SeedFor(PbtRunner.StableHash("FindBench.rates/" + name), i), 1 + i % 100, options).Run;
                if (run.FailedInvariant is { } inv && target.BreakNames.Contains(inv)) found++;
            }
            double p = (double)found / n;
            int effort = Math.Max(target.SearchTests, Budget.DefaultTests);
            string n99 = p <= 0 ? "-" : p >= 1 ? "1" : Math.Ceiling(Math.Log(0.01) / Math.Log(1 - p)).ToString("0", CultureInfo.InvariantCulture);
            string miss = (100 * Math.Pow(1 - p, effort)).ToString("0.####", CultureInfo.InvariantCulture);
            table.Add(name, n, found, (100 * p).ToString("0.00", CultureInfo.InvariantCulture), n99, effort, miss);
        }
        table.Write(Console.Out);
        return 0;
    }

    public static double Median(List<double> xs)
    {
        xs.Sort();
        return xs.Count == 0 ? 0 : xs.Count % 2 == 1 ? xs[xs.Count / 2] : (xs[xs.Count / 2 - 1] + xs[xs.Count / 2]) / 2;
    }
}
