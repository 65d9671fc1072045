// The catalogue commands: variants, invariants, configs, and the shrink benchmark.
using System.CommandLine;
using PropertySuite.Engine.Config;
using PropertySuite.Generators;
using PropertySuite.Invariants;
using Spectre.Console;

namespace PropertySuite.Cli;

public static class CatalogueCommands
{
    private static Option<string> FormatOption()
    {
        var format = new Option<string>("--format") { Description = "table (default) or tsv", DefaultValueFactory = _ => "table" };
        format.AcceptOnlyFromAmong("table", "tsv");
        return format;
    }

    /// <summary>`variants`: name, correct|buggy, invariants it breaks, description.</summary>
    public static Command Variants(CliContext cx)
    {
        var format = FormatOption();
        var cmd = new Command("variants", "List the kernel variants: name, correct or buggy, the invariants a buggy one breaks, description.") { format };
        cmd.SetAction(p =>
        {
            var rows = KernelVariants.All.Select(v => new[] { v.Name, v.Correct ? "correct" : "buggy", string.Join(",", v.Breaks), v.Description });
            Print(cx, p.GetValue(format)!, ["variant", "kind", "breaks", "description"], rows);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary>`invariants`: name, claim, source.</summary>
    public static Command Invariants(CliContext cx)
    {
        var format = FormatOption();
        var cmd = new Command("invariants", "List the invariants checked after every step: name, claim, source.") { format };
        cmd.SetAction(p =>
        {
            var rows = InvariantRegistry.All.Select(i => new[] { i.Name, i.Claim, i.Source });
            Print(cx, p.GetValue(format)!, ["invariant", "claim", "source"], rows);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary>`configs`: the names --config accepts, one per line.</summary>
    public static Command Configs(CliContext cx)
    {
        var cmd = new Command("configs", "List the configuration names --config accepts, one per line.");
        cmd.SetAction(_ =>
        {
            foreach (var a in ArchConfig.All) cx.Out.WriteLine(a.Name);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary>`shrink-bench`: the scenario shrink benchmark (build with -c Release).</summary>
    public static Command ShrinkBench(CliContext cx)
    {
        var cmd = new Command("shrink-bench", "Benchmark the scenario shrinker: a 3-step bug planted among 1,000 and 3,000 benign steps.");
        cmd.SetAction(_ =>
        {
            ScenarioShrinkBenchmark.Run(cx.Out);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static void Print(CliContext cx, string format, string[] header, IEnumerable<string[]> rows)
    {
        if (format == "tsv")
        {
            foreach (var row in rows) cx.Out.WriteLine(string.Join('\t', row.Select(c => c.Replace('\t', ' '))));
            return;
        }
        var table = new Table().Border(TableBorder.Simple);
        for (int i = 0; i < header.Length; i++)
        {
            var column = new TableColumn(new Text(header[i]));
            table.AddColumn(i < header.Length - 1 ? column.NoWrap() : column); // names never wrap; the last column does
        }
        foreach (var row in rows) table.AddRow(row.Select(c => (Spectre.Console.Rendering.IRenderable)new Text(c)).ToArray());
        cx.Console.Write(table);
    }
}
