// The catalogue commands: variants, invariants, configs, ops, savings, and the shrink benchmark.
using System.CommandLine;
using PropertySuite.Engine;
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
            var rows = KernelVariants.All.Select(v => new[] { v.Name, v.Correct ? "correct" : "buggy", string.Join(",", VariantTargets.BreakNames(v.Name)), v.Description });
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

    /// <summary>`ops`: the verbs of the repro language with their arguments, then the other line forms.</summary>
    public static Command Ops(CliContext cx)
    {
        var format = FormatOption();
        var cmd = new Command("ops", "List the repro language: every operation verb with its arguments and the handle it binds, then the step/irq/expect forms.") { format };
        cmd.SetAction(p =>
        {
            var rows = OpsCatalogue.All.Select(v => new[] { v.Verb, v.Arguments, v.Binds, v.Description })
                .Concat(OpsCatalogue.Forms.Select(f => new[] { f.Form, "", "", f.Description }));
            Print(cx, p.GetValue(format)!, ["verb", "arguments", "binds", "what it does"], rows);
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary>`savings [--format tsv] [--scheme NAME] [--memory 1T] [--config NAME]`: vmemmap saved
    /// by HVO for every config (or one) and HugeTLB size, measured by allocating folios in the
    /// engine and counting frames (Engine/Hugetlb/Savings.cs). The memory is checked against every
    /// machine the measurement will boot before any runs.</summary>
    public static Command SavingsTable(CliContext cx)
    {
        var format = FormatOption();
        var scheme = new Option<string>("--scheme") { Description = "1-kept (v5.18+), 2-kept (v5.14) or all (default)", DefaultValueFactory = _ => "all" };
        scheme.AcceptOnlyFromAmong("1-kept", "2-kept", "all");
        var memory = new Option<string>("--memory") { Description = "HugeTLB memory actually allocated per row (e.g. 4G, 1T); per-TiB figures scale from it", DefaultValueFactory = _ => "4G" };
        var config = new Option<string?>("--config") { Description = "one configuration (default: every one); see 'configs'" };
        var cmd = new Command("savings", "Vmemmap saved by HugeTLB vmemmap optimization, per config and HugeTLB size, by running the engine.") { format, scheme, memory, config };
        cmd.SetAction(p =>
        {
            string m = p.GetValue(memory)!;
            if (!ArchConfig.TryParseSize(m, out long bytes) || bytes <= 0 || bytes > MachineConfig.MaxMemoryBytes / 2)
                throw new BadInputException($"--memory {m}: not a size between 1 and {ArchConfig.FormatSize(MachineConfig.MaxMemoryBytes / 2)} (e.g. 4G, 1T)");
            IReadOnlyList<ArchConfig>? configs = p.GetValue(config) is { } c ? [ArchConfig.ByName(c)] : null;
            IReadOnlyList<HvoScheme>? schemes = p.GetValue(scheme) switch
            {
                "1-kept" => [HvoScheme.OnePageKept],
                "2-kept" => [HvoScheme.TwoPagesKept],
                _ => null,
            };
            var options = new SavingsOptions(bytes, schemes, configs);
            // Every machine first: a size one configuration cannot hold is refused before the
            // others have spent minutes on it.
            foreach (var arch in options.ConfigsOrDefault)
                foreach (long size in arch.HugetlbSizes)
                {
                    var machine = Savings.MachineFor(arch, size, bytes);
                    try
                    {
                        machine.Validate(arch);
                    }
                    catch (ConfigException e)
                    {
                        throw new BadInputException($"--memory {m}: {ArchConfig.FormatSize(size)} folios on {arch.Name} need a {ArchConfig.FormatSize(machine.MemoryBytes)} machine, which the model refuses ({e.Message}); pass a smaller --memory or --config with a configuration that holds it");
                    }
                }
            var rows = Savings.Compute(options);
            cx.Out.Write(Savings.Format(rows, p.GetValue(format) == "tsv"));
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
            // Only the name column never wraps: a long claim or description wraps within the
            // width instead of squeezing the columns after it to "…".
            table.AddColumn(i == 0 ? column.NoWrap() : column);
        }
        foreach (var row in rows) table.AddRow(row.Select(c => (Spectre.Console.Rendering.IRenderable)new Text(c)).ToArray());
        cx.Console.Write(table);
    }
}
