// propertysuite: the command-line front end. Scripts and CI depend on this surface
// (docs/cli.md describes every command and option):
//
//   fuzz [--time 60s] [--count N] [--seed N] [--variant NAME] [--config NAME] [--out DIR] [--max-steps N]
//        [--stop-on-first] [--scenario-seed N --size S]
//   replay FILE-or-DIR [--trace] [--check]
//   variants [--format table|tsv]
//   invariants [--format table|tsv]
//   configs
//   ops
//   savings [--format tsv] [--scheme NAME] [--memory SIZE] [--config NAME]
//   shrink-bench
//
// Exit codes (ExitCodes): 0 nothing found / success, 1 a violation was found (fuzz, replay) or
// an outcome differs from its expect line (replay --check), 2 bad input (unknown option or name,
// malformed number, size, duration or repro file, bad PS_* variable, a bound exceeded), 130/143
// fuzz stopped by SIGINT/SIGTERM after printing its summary. A user error is one line on stderr,
// never a stack trace. Output is deterministic for the same arguments except the lines that
// report wall-clock time (and, for a --time bound run, how many scenarios fit in it).
//
// The program is run from the repository root as `dotnet run --project Cli -c Release -- ...`
// (Invocation); every command line it prints starts that way, so it can be pasted into a shell.
using System.CommandLine;
using Spectre.Console;

namespace PropertySuite.Cli;

/// <summary>Where a command writes (plain text to Out and Err, tables through Console) and the
/// PS_* variables it reads (null: the process environment).</summary>
public sealed record CliContext(TextWriter Out, TextWriter Err, IAnsiConsole Console, bool Interactive, IReadOnlyDictionary<string, string?>? Environment)
{
    /// <summary>Signals (or a test) asking a running command to stop.</summary>
    public StopRequest Stop { get; init; } = new();

    public Generators.Harness.Budget Budget() =>
        Environment is null ? Generators.Harness.Budget.FromEnvironment() : Generators.Harness.Budget.Parse(Environment);
}

public static class CliApp
{
    /// <summary>Width of tables when output is not a terminal: fixed, so output does not depend on one.</summary>
    public const int RedirectedWidth = 200;

    /// <summary>How the program is run from the repository root; printed commands start with it.</summary>
    public const string Invocation = "dotnet run --project Cli -c Release --";

    /// <summary>Parses and runs one command line; returns the exit code.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, bool interactive = false, IReadOnlyDictionary<string, string?>? environment = null, StopRequest? stop = null, int? width = null)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(stdout),
            Interactive = interactive ? InteractionSupport.Yes : InteractionSupport.No,
            Ansi = interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        });
        if (width is { } w) console.Profile.Width = w;
        else if (!interactive) console.Profile.Width = RedirectedWidth;
        var cx = new CliContext(stdout, stderr, console, interactive, environment) { Stop = stop ?? new StopRequest() };

        var root = new RootCommand("PropertySuite: property-based verification of Linux kernel memory-management designs.")
        {
            FuzzCommand.Create(cx),
            ReplayCommand.Create(cx),
            CatalogueCommands.Variants(cx),
            CatalogueCommands.Invariants(cx),
            CatalogueCommands.Configs(cx),
            CatalogueCommands.Ops(cx),
            CatalogueCommands.ShrinkBench(cx),
            CatalogueCommands.SavingsTable(cx),
        };
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors) stderr.WriteLine($"error: {error.Message}");
            stderr.WriteLine($"Run '{Invocation} --help' for usage.");
            return ExitCodes.BadInput;
        }
        try
        {
            // Signals are ours (Program.cs, StopRequest); exceptions too: a user error is one line.
            return await parsed.InvokeAsync(new InvocationConfiguration
            {
                Output = stdout, Error = stderr, ProcessTerminationTimeout = null, EnableDefaultExceptionHandler = false,
            });
        }
        catch (Exception e) when (e is BadInputException or Engine.Config.ConfigException or Generators.Harness.BudgetException)
        {
            stderr.WriteLine($"error: {e.Message}");
            return ExitCodes.BadInput;
        }
    }
}
