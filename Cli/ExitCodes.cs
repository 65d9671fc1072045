namespace PropertySuite.Cli;

/// <summary>The exit codes scripts rely on.</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    public const int Violation = 1;
    public const int BadInput = 2;
}

/// <summary>Bad input detected by a command: reported on stderr, exit code 2.</summary>
public sealed class BadInputException(string message) : Exception(message);
