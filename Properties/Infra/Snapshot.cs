// Approved-file snapshots (docs/ARCHITECTURE.md), following Verify's file conventions:
//
//   Snapshots/<name>.verified.txt   committed; what a reviewer approved
//   Snapshots/<name>.received.txt   written on mismatch, git-ignored; what the code produced
//
// A mismatch fails the test with a line diff and the commands that accept it: the script
// accept-snapshots.sh at the repository root (renames received files to verified), or, without
// bash, `PS_ACCEPT_SNAPSHOTS=1 dotnet test` (as Verify's auto-accept does): every mismatching
// snapshot is then written as the verified file and the test passes; review `git diff` after. Text is compared after normalising
// line endings to \n and ensuring one trailing newline, so a checkout with CRLF endings
// and an editor that adds a final newline do not make snapshots fail.

using System.Globalization;
using System.Text;
using PropertySuite.Generators.Harness;
using Xunit.Sdk;

namespace PropertySuite.Properties.Infra;

public static class Snapshot
{
    public const string DirectoryName = "Snapshots";
    public const string VerifiedSuffix = ".verified.txt";
    public const string ReceivedSuffix = ".received.txt";
    public const string AcceptScript = "accept-snapshots.sh";
    /// <summary>Set to 1 to accept every mismatching snapshot as the test runs (no bash needed).</summary>
    public const string AcceptVariable = "PS_ACCEPT_SNAPSHOTS";

    /// <summary>Whether this run accepts snapshots: <see cref="AcceptVariable"/> is 1.</summary>
    public static bool AcceptFromEnvironment() =>
        Environment.GetEnvironmentVariable(AcceptVariable) is { } v && v.Trim() == "1";

    /// <summary>How many differing lines a failure message shows before summarising the rest.</summary>
    public const int MaxDiffLines = 40;

    /// <summary>
    /// Above this many cells the line diff stops aligning lines (quadratic time and memory)
    /// and compares them position by position; 4M cells is ~2,000 × 2,000 differing lines.
    /// </summary>
    private const long MaxAlignmentCells = 4_000_000;

    private static readonly UTF8Encoding Utf8NoBom = new(encoderShouldEmitUTF8Identifier: false);

    /// <summary>
    /// Compares <paramref name="text"/> with Snapshots/<paramref name="name"/>.verified.txt
    /// under the repository root (the directory holding PropertySuite.sln).
    /// </summary>
    /// <param name="name">Path below Snapshots/ without suffix, '/'-separated, e.g.
    /// <c>Catalogue/Invariants</c>; segments use letters, digits, '.', '_' and '-'.</param>
    /// <exception cref="XunitException">The verified file is missing or differs; the
    /// received file has been written.</exception>
    public static void Verify(string name, string text) => Verify(FindRepositoryRoot(), name, text, AcceptFromEnvironment());

    /// <summary><see cref="Verify(string, string)"/> against an explicit root, for tests of this helper;
    /// <paramref name="accept"/>: write a mismatch as the verified file instead of failing.</summary>
    internal static void Verify(string repositoryRoot, string name, string text, bool accept = false)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(repositoryRoot);
        ArgumentNullException.ThrowIfNull(text);
        var relative = CheckName(name);
        var basePath = Path.Combine([repositoryRoot, DirectoryName, .. relative.Split('/')]);
        var verifiedPath = basePath + VerifiedSuffix;
        var receivedPath = basePath + ReceivedSuffix;

        var received = Normalize(text);
        string? verified = File.Exists(verifiedPath) ? Normalize(File.ReadAllText(verifiedPath, Utf8NoBom)) : null;
        if (verified == received)
        {
            File.Delete(receivedPath); // stale from an earlier failure; no-op when absent
            return;
        }

        if (accept)
        {
            PbtRunner.WriteReproAtomically(Path.GetDirectoryName(verifiedPath)!, Path.GetFileName(verifiedPath), received);
            File.Delete(receivedPath);
            return;
        }
        PbtRunner.WriteReproAtomically(Path.GetDirectoryName(receivedPath)!, Path.GetFileName(receivedPath), received);
        throw new XunitException(FailureMessage(relative, verified, received));
    }

    /// <summary>Line endings as \n, and exactly the text's own lines followed by one \n.</summary>
    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var s = text.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        return s.EndsWith('\n') ? s : s + "\n";
    }

    /// <summary>
    /// A line diff of two normalised texts: lines only in <paramref name="expected"/> as
    /// <c>-  12 | text</c>, lines only in <paramref name="actual"/> as <c>+  12 | text</c>
    /// (each with its own file's line number), at most <paramref name="maxLines"/> of them.
    /// </summary>
    public static string Diff(string expected, string actual, int maxLines = MaxDiffLines)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(actual);
        ArgumentOutOfRangeException.ThrowIfNegative(maxLines);
        var edits = LineEdits(SplitLines(expected), SplitLines(actual));
        var width = Math.Max(3, edits.Count == 0 ? 0 : edits.Max(e => e.LineNumber).ToString(CultureInfo.InvariantCulture).Length);
        var text = new StringBuilder();
        foreach (var edit in edits.Take(maxLines))
        {
            var number = edit.LineNumber.ToString(CultureInfo.InvariantCulture).PadLeft(width);
            text.Append(edit.Sign).Append(' ').Append(number).Append(" | ").Append(edit.Text).Append('\n');
        }
        if (edits.Count > maxLines)
            text.Append(CultureInfo.InvariantCulture, $"... and {edits.Count - maxLines} more differing line(s)\n");
        return text.ToString();
    }

    /// <summary>The repository root, found by searching upward for PropertySuite.sln from the
    /// current directory and then from the test assembly's directory.</summary>
    public static string FindRepositoryRoot() =>
        Budget.FindRepositoryRoot(Directory.GetCurrentDirectory())
        ?? Budget.FindRepositoryRoot(AppContext.BaseDirectory)
        ?? throw new InvalidOperationException(
            $"No {Budget.SolutionFileName} above '{Directory.GetCurrentDirectory()}' or '{AppContext.BaseDirectory}'; "
            + "snapshots are only verified inside the repository.");

    private static string CheckName(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        foreach (var segment in name.Split('/'))
        {
            var valid = segment.Length > 0
                && segment[0] != '.'
                && segment.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');
            if (!valid)
            {
                throw new ArgumentException(
                    $"snapshot name '{name}' must be '/'-separated segments of letters, digits, '.', '_' or '-', "
                    + "none empty or starting with '.'", nameof(name));
            }
        }
        return name;
    }

    private static string FailureMessage(string name, string? verified, string received)
    {
        var verifiedRel = $"{DirectoryName}/{name}{VerifiedSuffix}";
        var receivedRel = $"{DirectoryName}/{name}{ReceivedSuffix}";
        var text = new StringBuilder();
        text.Append(verified == null
            ? $"Snapshot '{name}': {verifiedRel} does not exist yet.\n"
            : $"Snapshot '{name}' differs from {verifiedRel}.\n");
        text.Append(CultureInfo.InvariantCulture, $"Received: {receivedRel}\n");
        text.Append("Diff (- verified, + received):\n");
        text.Append(Diff(verified ?? "", received));
        text.Append(CultureInfo.InvariantCulture,
            $"Review the diff, then accept from the repository root with: ./{AcceptScript} {name}\n"
            + $"(without bash: {AcceptVariable}=1 dotnet test --filter ..., which writes every mismatching snapshot as verified)\n");
        return text.ToString();
    }

    /// <summary>Lines of a normalised text; "" has none, "a\n" has one.</summary>
    private static string[] SplitLines(string normalized)
    {
        if (normalized.Length == 0)
            return [];
        var body = normalized.EndsWith('\n') ? normalized[..^1] : normalized;
        return body.Split('\n');
    }

    private readonly record struct LineEdit(char Sign, int LineNumber, string Text);

    /// <summary>
    /// The deletions and insertions turning <paramref name="a"/> into <paramref name="b"/>,
    /// in file order. Common leading and trailing lines are skipped; the middle is aligned
    /// by a longest common subsequence when small enough, otherwise line by line.
    /// </summary>
    private static List<LineEdit> LineEdits(string[] a, string[] b)
    {
        var prefix = 0;
        while (prefix < a.Length && prefix < b.Length && a[prefix] == b[prefix])
            prefix++;
        var suffix = 0;
        while (suffix < a.Length - prefix && suffix < b.Length - prefix
               && a[a.Length - 1 - suffix] == b[b.Length - 1 - suffix])
            suffix++;
        var n = a.Length - prefix - suffix;
        var m = b.Length - prefix - suffix;

        var edits = new List<LineEdit>();
        if ((long)(n + 1) * (m + 1) > MaxAlignmentCells)
        {
            for (var i = 0; i < Math.Max(n, m); i++)
            {
                var (ai, bi) = (prefix + i, prefix + i);
                if (i < n && i < m && a[ai] == b[bi])
                    continue;
                if (i < n)
                    edits.Add(new LineEdit('-', ai + 1, a[ai]));
                if (i < m)
                    edits.Add(new LineEdit('+', bi + 1, b[bi]));
            }
            return edits;
        }

        // lcs[i, j] = length of the LCS of a[prefix+i ..] and b[prefix+j ..] within the middle.
        var lcs = new int[n + 1, m + 1];
        for (var i = n - 1; i >= 0; i--)
        {
            for (var j = m - 1; j >= 0; j--)
            {
                lcs[i, j] = a[prefix + i] == b[prefix + j]
                    ? lcs[i + 1, j + 1] + 1
                    : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);
            }
        }
        int x = 0, y = 0;
        while (x < n || y < m)
        {
            if (x < n && y < m && a[prefix + x] == b[prefix + y])
            {
                x++;
                y++;
            }
            else if (y == m || (x < n && lcs[x + 1, y] >= lcs[x, y + 1]))
            {
                edits.Add(new LineEdit('-', prefix + x + 1, a[prefix + x]));
                x++;
            }
            else
            {
                edits.Add(new LineEdit('+', prefix + y + 1, b[prefix + y]));
                y++;
            }
        }
        return edits;
    }
}
