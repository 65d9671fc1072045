// The failure database: the repro directory (PS_REPRO_DIR, `fuzz --out`) read back. Every repro
// a failing property or a fuzz run wrote there is replayed first by the next run of either
// whose options cover its variant and configuration, the way Hypothesis replays its example
// database before generating anything new. A file stays in the database until the user deletes
// it, or pins it: a file of the same name in Snapshots/Corpus is the regression corpus's
// business (CorpusTests replays it against its expect line), so the database skips it.
//
// Reading never changes the directory: a repro that passes now is reported, not deleted (the
// user decides whether the bug is fixed or the engine drifted), and a file that does not parse
// is reported with its line and reason and skipped.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;

namespace PropertySuite.Generators;

/// <summary>One database entry replayed.</summary>
/// <param name="Path">The repro file.</param>
/// <param name="Scenario">Its scenario, null when it did not parse.</param>
/// <param name="Run">Its replay, null when it did not parse.</param>
/// <param name="Error">Why it was skipped (parse error), else null.</param>
public sealed record StoredRepro(string Path, Scenario? Scenario, RunResult? Run, string? Error)
{
    /// <summary>The replay still violates an invariant.</summary>
    public bool StillFails => Run is { Failed: true };
}

public static class FailureDatabase
{
    public const string Extension = ".repro";

    /// <summary>Whether a run with <paramref name="options"/> could have produced <paramref name="s"/>:
    /// the same variant (or, when the options draw among the correct ones, a correct variant)
    /// and the same configuration when the options fix one.</summary>
    public static bool Covers(ScenarioOptions options, Scenario s)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(s);
        bool variant = options.Variant is { } v
            ? v == s.VariantName
            : KernelVariants.All.Any(n => n.Name == s.VariantName && n.Correct);
        bool config = options.Config is null || options.Config == s.Arch.Name;
        return variant && config;
    }

    /// <summary>The repro files of <paramref name="dir"/> that a run with <paramref name="options"/>
    /// replays first, each replayed, in file-name order (ordinal, so the same on every machine).
    /// Files pinned in <paramref name="pinnedDir"/> (same name) are skipped.</summary>
    public static IReadOnlyList<StoredRepro> Replay(string dir, ScenarioOptions options, string? pinnedDir = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dir);
        ArgumentNullException.ThrowIfNull(options);
        var result = new List<StoredRepro>();
        if (!Directory.Exists(dir)) return result;
        foreach (var path in Directory.GetFiles(dir, "*" + Extension).Order(StringComparer.Ordinal))
        {
            string name = System.IO.Path.GetFileName(path);
            if (name.StartsWith('.')) continue; // a temporary file of an atomic write
            if (pinnedDir is not null && File.Exists(System.IO.Path.Combine(pinnedDir, name))) continue;
            Scenario s;
            try
            {
                var info = new FileInfo(path);
                if (info.Length > Repro.MaxBytes)
                {
                    result.Add(new StoredRepro(path, null, null, $"{path}: file is {info.Length} bytes; a repro file has at most {Repro.MaxBytes}"));
                    continue;
                }
                s = Repro.Parse(File.ReadAllText(path));
            }
            catch (ReproParseException e)
            {
                result.Add(new StoredRepro(path, null, null, $"{path}:{e.Line}:{e.Column}: {e.Reason}"));
                continue;
            }
            catch (ConfigException e)
            {
                result.Add(new StoredRepro(path, null, null, $"{path}: {e.Message}"));
                continue;
            }
            if (!Covers(options, s)) continue;
            result.Add(new StoredRepro(path, s, ScenarioRunner.Run(s), null));
        }
        return result;
    }

    /// <summary>Snapshots/Corpus of the repository holding <paramref name="startDirectory"/>, or null.</summary>
    public static string? CorpusDirectory(string startDirectory) =>
        Budget.FindRepositoryRoot(startDirectory) is { } root ? System.IO.Path.Combine(root, "Snapshots", "Corpus") : null;
}
