// propertysuite: the command-line front end (see CliApp for the commands and exit codes).
// SIGINT and SIGTERM stop a fuzz run cleanly (summary so far, then exit 130 or 143); a second
// signal, or one during a command that cannot stop cleanly, keeps the default action.
using System.Runtime.InteropServices;
using PropertySuite.Cli;

var stop = new StopRequest();
void OnSignal(PosixSignalContext c, string name, int code)
{
    if (!stop.Observed || stop.Requested) return; // default action: the process ends
    c.Cancel = true;
    stop.Request(name, code);
}
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => OnSignal(c, "SIGINT", ExitCodes.Interrupted));
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => OnSignal(c, "SIGTERM", ExitCodes.Terminated));
return await CliApp.RunAsync(args, Console.Out, Console.Error, interactive: !Console.IsOutputRedirected, stop: stop);
