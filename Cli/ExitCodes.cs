namespace PropertySuite.Cli;

/// <summary>The exit codes scripts rely on (docs/cli.md has the table).</summary>
public static class ExitCodes
{
    /// <summary>Nothing found, the command succeeded; `replay --check`: every outcome matched.</summary>
    public const int Ok = 0;
    /// <summary>fuzz and replay: an invariant was violated; `replay --check`: an outcome differs from its expect line.</summary>
    public const int Violation = 1;
    /// <summary>Bad input: an unknown option or name, a malformed number, size, duration or repro file, a bad PS_* variable, a bound exceeded. Nothing is written.</summary>
    public const int BadInput = 2;
    /// <summary>fuzz stopped by SIGINT (Ctrl-C), after printing the summary so far: 128 + 2.</summary>
    public const int Interrupted = 130;
    /// <summary>fuzz stopped by SIGTERM, after printing the summary so far: 128 + 15.</summary>
    public const int Terminated = 143;
}

/// <summary>Bad input detected by a command: reported on stderr, exit code 2.</summary>
public sealed class BadInputException(string message) : Exception(message);

/// <summary>
/// A request to stop, from a signal (Program.cs registers SIGINT and SIGTERM) or a test. A command
/// that can stop cleanly (fuzz) sets <see cref="Observed"/> while it runs; otherwise the signal
/// keeps its default action and ends the process.
/// </summary>
public sealed class StopRequest
{
    private readonly CancellationTokenSource _cts = new();

    public CancellationToken Token => _cts.Token;
    /// <summary>The signal's name (SIGINT, SIGTERM) once a stop was requested.</summary>
    public string? Signal { get; private set; }
    /// <summary>The exit code the stopped command returns.</summary>
    public int ExitCode { get; private set; }
    /// <summary>A running command checks <see cref="Token"/> and will stop cleanly.</summary>
    public bool Observed { get; set; }
    public bool Requested => Signal is not null;

    /// <summary>Requests a stop; the first request decides the signal and exit code.</summary>
    public void Request(string signal, int exitCode)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(signal);
        lock (_cts)
        {
            if (Signal is null)
            {
                Signal = signal;
                ExitCode = exitCode;
            }
        }
        _cts.Cancel();
    }
}
