// `all [SEEDS=3] [--tsv FILE]`: every figure of the performance table (README, Benchmarks),
// each next to its goal, in one process; ratios are measured in this one process (checked and
// unchecked runs of one scenario back to back), so a loaded machine moves both sides.
//
//   checked vs unchecked scenario steps   x86-64 1G, arm64 16K 1G, x86-64 1T   ≤ 1.5×
//   checked scenario steps/s               x86-64 1G                            ≥ 500,000
//   checked per-step cost, 64T over 4G     x86-64                               ≤ 1.2×
//   each invariant's cost per check        1G, 1T, 64T; the 64T/1G ratio        flat (≤ 1.2×)
//   the 1 TiB pool of 2M folios with HVO   fresh child process                  ≤ 10 s, ≤ 2 GiB peak RSS
//   find + shrink, every buggy variant     median over SEEDS base seeds         ≤ 1 s
//   scenario shrinker, 3 among 3,000 steps median CPU of 3 trials (shrink-bench) ≤ 100 ms
//
// `--tsv FILE` also writes the figures as tab-separated rows (figure, machine, value, unit,
// goal, met) so that `compare A.tsv B.tsv` can set two commits side by side. Wall clock: run it
// in Release on a quiet machine; nothing here is a test.
using System.Globalization;
using PropertySuite.Engine.Config;
using PropertySuite.Generators;
using PropertySuite.Invariants;

namespace PropertySuite.Bench;

public static class AllBench
{
    /// <summary>One measured figure; <see cref="Met"/> is null where the figure has no goal.</summary>
    public sealed record Figure(string Name, string Machine, double Value, string Unit, string Goal, bool? Met);

    private const string X86 = "x86_64-4k-l4";
    private const string Arm16k = "arm64-16k-l3";
    private const int ScenarioSteps = 4000;
    private const int WarmSteps = 50;

    public static int Run(string[] args)
    {
        int seeds = 3;
        string? tsv = null;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--tsv" && i + 1 < args.Length) tsv = args[++i];
            else if (int.TryParse(args[i], NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0) seeds = n;
            else { Console.Error.WriteLine($"all: unexpected argument '{args[i]}' (usage: all [SEEDS=3] [--tsv FILE])"); return 2; }
        }
        var figures = new List<Figure>();
        void Progress(string what) => Console.Error.WriteLine($"all: {what}");

        Progress("scenario steps, checked and unchecked");
        foreach (var (config, memory) in new[] { (X86, "1G"), (Arm16k, "1G"), (X86, "1T") })
        {
            var s = Workload.Scenario(config, memory, 2, ScenarioSteps, seed: 1);
            var (checkedSteps, checkedS) = ThroughputBench.TimeScenario(s, InvariantRegistry.All);
            var (plainSteps, plainS) = ThroughputBench.TimeScenario(s, []);
            double checkedRate = checkedSteps / checkedS, plainRate = plainSteps / plainS;
            string machine = $"{config} {memory}";
            figures.Add(new("scenario steps/s, all invariants", machine, checkedRate, "steps/s",
                machine == $"{X86} 1G" ? "≥ 500000" : "", machine == $"{X86} 1G" ? checkedRate >= 500_000 : null));
            figures.Add(new("scenario steps/s, no invariants", machine, plainRate, "steps/s", "", null));
            figures.Add(new("checked / unchecked step cost", machine, plainRate / checkedRate, "×", "≤ 1.5", plainRate / checkedRate <= 1.5));
        }

        Progress("checked per-step cost at 4G and 64T");
        var (steps4g, s4g) = ThroughputBench.TimeScenario(Workload.Scenario(X86, "4G", 2, ScenarioSteps, seed: 1), InvariantRegistry.All);
        var (steps64t, s64t) = ThroughputBench.TimeScenario(Workload.Scenario(X86, "64T", 2, ScenarioSteps, seed: 1), InvariantRegistry.All);
        double us4g = s4g * 1e6 / steps4g, us64t = s64t * 1e6 / steps64t;
        figures.Add(new("checked step cost", $"{X86} 4G", us4g, "µs", "", null));
        figures.Add(new("checked step cost", $"{X86} 64T", us64t, "µs", "", null));
        figures.Add(new("checked step cost, 64T / 4G", X86, us64t / us4g, "×", "≤ 1.2", us64t / us4g <= 1.2));

        Progress("each invariant's cost per check at 1G, 1T and 64T");
        var invariants = InvariantRegistry.All;
        InvariantCostBench.JitWarmUp(invariants);
        var sizes = new[] { "1G", "1T", "64T" };
        var cost = sizes.Select(size => InvariantCostBench.PerStepCost(X86, size, WarmSteps, invariants).Us).ToArray();
        for (int i = 0; i < invariants.Count; i++)
        {
            for (int m = 0; m < sizes.Length; m++)
                figures.Add(new($"{invariants[i].Name} per check", $"{X86} {sizes[m]}", cost[m][i], "µs", "", null));
            // Below a microsecond a ratio is noise; flat then means staying below one.
            double ratio = cost[^1][i] / Math.Max(cost[0][i], 1.0);
            figures.Add(new($"{invariants[i].Name} per check, 64T / 1G", X86, ratio, "×", "≤ 1.2", ratio <= 1.2));
        }

        Progress("the 1 TiB pool of 2M folios with HVO (child process)");
        var hvo = ChildProcess.Run(HvoBench.ChildCommand);
        double hvoSeconds = double.Parse(hvo["s"], CultureInfo.InvariantCulture);
        double hvoGiB = long.Parse(hvo["hwm"], CultureInfo.InvariantCulture) / (1024.0 * 1024);
        figures.Add(new("1 TiB pool of 2M folios with HVO, time", $"{X86} 1T", hvoSeconds, "s", "≤ 10", hvoSeconds <= 10));
        figures.Add(new("1 TiB pool of 2M folios with HVO, peak RSS", $"{X86} 1T", hvoGiB, "GiB", "≤ 2", hvoGiB <= 2));

        foreach (var v in KernelVariants.All.Where(v => !v.Correct))
        {
            Progress($"find + shrink {v.Name} ({seeds} seeds)");
            var f = FindBench.Measure(v.Name, seeds);
            figures.Add(new($"find + shrink {v.Name}, median", "search effort", f.TotalMsMedian, "ms", "≤ 1000", f.Found == seeds && f.TotalMsMedian <= 1000));
            figures.Add(new($"find + shrink {v.Name}, seeds that found it", "search effort", f.Found, $"of {seeds}", $"{seeds}", f.Found == seeds));
        }

        Progress("the scenario shrinker (shrink-bench)");
        foreach (var group in ScenarioShrinkBenchmark.Run(TextWriter.Null).GroupBy(r => r.BenignSteps))
        {
            double cpu = FindBench.Median(group.Select(r => r.CpuMilliseconds).ToList());
            bool goal = group.Key == 3_000;
            figures.Add(new($"scenario shrinker, 3 steps among {group.Key}, median CPU", $"{group.Count()} trials", cpu, "ms",
                goal ? "≤ 100" : "", goal ? cpu <= 100 : null));
        }

        var table = new TextTable("figure", "machine", "value", "unit", "goal", "met");
        foreach (var f in figures) table.Add(f.Name, f.Machine, f.Value, f.Unit, f.Goal, Verdict(f.Met));
        Console.WriteLine("Performance figures (Release build; wall clock; ratios measured in this process):");
        table.Write(Console.Out);
        int met = figures.Count(f => f.Met == true), goals = figures.Count(f => f.Met is not null);
        Console.WriteLine($"{met} of {goals} goals met");
        if (tsv is not null) WriteTsv(tsv, figures);
        return 0;
    }

    private static string Verdict(bool? met) => met switch { true => "yes", false => "no", null => "" };

    private static void WriteTsv(string path, IReadOnlyList<Figure> figures)
    {
        var lines = new List<string> { "figure\tmachine\tvalue\tunit\tgoal\tmet" };
        lines.AddRange(figures.Select(f => string.Join('\t', f.Name, f.Machine,
            f.Value.ToString("R", CultureInfo.InvariantCulture), f.Unit, f.Goal, Verdict(f.Met))));
        string tmp = path + ".tmp";
        File.WriteAllLines(tmp, lines);
        File.Move(tmp, path, overwrite: true); // nothing half-written
        Console.WriteLine($"figures written to {path}");
    }

    /// <summary>`compare A.tsv B.tsv`: every figure of both files, B's value over A's.</summary>
    public static int Compare(string[] args)
    {
        if (args.Length != 2) { Console.Error.WriteLine("usage: compare A.tsv B.tsv (files written by all --tsv)"); return 2; }
        var a = ReadTsv(args[0]);
        var b = ReadTsv(args[1]);
        if (a is null || b is null) return 2;
        var table = new TextTable("figure", "machine", "A", "B", "B / A", "unit", "goal", "met in B");
        foreach (var (key, fa) in a)
        {
            if (!b.TryGetValue(key, out var fb)) { table.Add(fa.Name, fa.Machine, fa.Value, "-", "-", fa.Unit, fa.Goal, ""); continue; }
            table.Add(fa.Name, fa.Machine, fa.Value, fb.Value, fa.Value == 0 ? "-" : (fb.Value / fa.Value).ToString("0.00", CultureInfo.InvariantCulture), fa.Unit, fb.Goal, Verdict(fb.Met));
        }
        foreach (var (key, fb) in b)
            if (!a.ContainsKey(key)) table.Add(fb.Name, fb.Machine, "-", fb.Value, "-", fb.Unit, fb.Goal, Verdict(fb.Met));
        table.Write(Console.Out);
        return 0;
    }

    /// <summary>Figures by (name, machine), in file order; null (with the reason on stderr) for a
    /// file that is missing or not of the format <see cref="WriteTsv"/> writes.</summary>
    private static Dictionary<(string, string), Figure>? ReadTsv(string path)
    {
        if (!File.Exists(path)) { Console.Error.WriteLine($"compare: {path}: no such file"); return null; }
        var figures = new Dictionary<(string, string), Figure>();
        var lines = File.ReadAllLines(path);
        if (lines.Length == 0 || lines[0] != "figure\tmachine\tvalue\tunit\tgoal\tmet")
        {
            Console.Error.WriteLine($"compare: {path} line 1: not a figures file (written by all --tsv)");
            return null;
        }
        for (int n = 1; n < lines.Length; n++)
        {
            var c = lines[n].Split('\t');
            if (c.Length != 6 || !double.TryParse(c[2], NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
            {
                Console.Error.WriteLine($"compare: {path} line {n + 1}: expected six tab-separated fields with a number third");
                return null;
            }
            figures[(c[0], c[1])] = new Figure(c[0], c[1], value, c[3], c[4], c[5] switch { "yes" => true, "no" => false, _ => null });
        }
        return figures;
    }
}
