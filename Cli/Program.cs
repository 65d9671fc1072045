// propertysuite: the command-line front end (see CliApp for the commands and exit codes).
using PropertySuite.Cli;

return await CliApp.RunAsync(args, Console.Out, Console.Error, interactive: !Console.IsOutputRedirected);
