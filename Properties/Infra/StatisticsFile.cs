// Statistics of properties where a reader finds them without raising `dotnet test`'s verbosity:
// one text file per property under TestResults/statistics/ at the repository root (beside the
// TRX files the nightly writes to TestResults/). Written atomically; the directory is git-ignored.
using System.Text;
using PropertySuite.Generators.Harness;

namespace PropertySuite.Properties.Infra;

public static class StatisticsFile
{
    public const string RelativeDirectory = "TestResults/statistics";

    /// <summary>The file name for a property: its name with every character outside
    /// [A-Za-z0-9._-] replaced by '_', then ".txt".</summary>
    public static string FileName(string property)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(property);
        var sb = new StringBuilder(property.Length + 4);
        foreach (char c in property) sb.Append(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' ? c : '_');
        return sb.Append(".txt").ToString();
    }

    /// <summary>Writes the statistics of <paramref name="property"/>; returns the path.</summary>
    public static string Write(string property, string statistics)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        string dir = Path.Combine(Snapshot.FindRepositoryRoot(), RelativeDirectory);
        return PbtRunner.WriteReproAtomically(dir, FileName(property), $"{property}\n{statistics}");
    }
}
