// propertysuite: the command-line front end. Scripts and CI depend on this surface:
//
//   fuzz [--time 60s] [--count N] [--seed N] [--variant NAME] [--config NAME] [--out DIR] [--max-steps N]
//   replay FILE [--trace]
//   variants [--format table|tsv]
//   invariants [--format table|tsv]
//   configs
//   shrink-bench
//
// Exit codes: 0 nothing found / success, 1 a violation was found (fuzz, replay), 2 bad input
// (unknown option or name, malformed number, duration or repro file, bad PS_* variable). Output
// is deterministic for the same arguments except the lines that report wall-clock time (and,
// for a --time bound run, how many scenarios fit in it).
using System.CommandLine;
using Spectre.Console;

namespace PropertySuite.Cli;

/// <summary>Where a command writes (plain text to Out and Err, tables through Console) and the
/// PS_* variables it reads (null: the process environment).</summary>
public sealed record CliContext(TextWriter Out, TextWriter Err, IAnsiConsole Console, bool Interactive, IReadOnlyDictionary<string, string?>? Environment)
{
    public Generators.Harness.Budget Budget() =>
        Environment is null ? Generators.Harness.Budget.FromEnvironment() : Generators.Harness.Budget.Parse(Environment);
}

public static class CliApp
{
    /// <summary>Width of tables when output is not a terminal: fixed, so output does not depend on one.</summary>
    public const int RedirectedWidth = 200;

    /// <summary>Parses and runs one command line; returns the exit code.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, bool interactive = false, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(stdout),
            Interactive = interactive ? InteractionSupport.Yes : InteractionSupport.No,
            Ansi = interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        });
        if (!interactive) console.Profile.Width = RedirectedWidth;
        var cx = new CliContext(stdout, stderr, console, interactive, environment);

        var root = new RootCommand("PropertySuite: property-based verification of Linux kernel memory-management designs.")
        {
            FuzzCommand.Create(cx),
            ReplayCommand.Create(cx),
            CatalogueCommands.Variants(cx),
            CatalogueCommands.Invariants(cx),
            CatalogueCommands.Configs(cx),
            CatalogueCommands.ShrinkBench(cx),
            CatalogueCommands.SavingsTable(cx),
        };
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors) stderr.WriteLine($"error: {error.Message}");
            stderr.WriteLine("Run 'propertysuite --help' for usage.");
            return ExitCodes.BadInput;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration { Output = stdout, Error = stderr });
    }
}
