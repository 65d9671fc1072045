// Runs one internal command of this executable in a fresh child process and parses the one
// line of key=value pairs it prints: used where a figure is a peak RSS (VmHWM), which must
// belong to the measured work alone, not to whatever the parent measured before it.
using System.Diagnostics;

namespace PropertySuite.Bench;

public static class ChildProcess
{
    /// <summary>Runs `self <paramref name="args"/>` and returns its key=value pairs.</summary>
    public static Dictionary<string, string> Run(params string[] args)
    {
        string self = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
            psi.ArgumentList.Add(typeof(ChildProcess).Assembly.Location); // run as `dotnet bench.dll`
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {self}");
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{string.Join(' ', args)} exited {p.ExitCode}: {output}");
        return output.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries)
            .Select(kv => kv.Split('=', 2)).Where(kv => kv.Length == 2).ToDictionary(kv => kv[0], kv => kv[1], StringComparer.Ordinal);
    }
}
