using System.Diagnostics;
using Xunit.Sdk;

namespace PropertySuite.Properties.Infra;

/// <summary>Tests of the snapshot helper itself, each in its own temporary repository root.</summary>
[Trait("Category", "infra")]
public sealed class SnapshotTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "ps-snapshots-" + Guid.NewGuid().ToString("N"));

    public SnapshotTests() => Directory.CreateDirectory(_root);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string PathOf(string name, string suffix) =>
        Path.Combine([_root, "Snapshots", .. name.Split('/')]) + suffix;

    private void WriteVerified(string name, string text)
    {
        var path = PathOf(name, Snapshot.VerifiedSuffix);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }

    private XunitException Mismatch(string name, string text) =>
        Assert.Throws<XunitException>(() => Snapshot.Verify(_root, name, text));

    [Fact]
    public void MissingVerifiedFileFailsWritesReceivedAndShowsEveryLineAsAdded()
    {
        var error = Mismatch("Catalogue/Invariants", "alpha\nbeta");

        Assert.Equal("alpha\nbeta\n", File.ReadAllText(PathOf("Catalogue/Invariants", Snapshot.ReceivedSuffix)));
        Assert.Contains("Snapshots/Catalogue/Invariants.verified.txt does not exist yet", error.Message);
        Assert.Contains("+   1 | alpha\n+   2 | beta\n", error.Message);
        Assert.Contains("./accept-snapshots.sh Catalogue/Invariants", error.Message);
    }

    [Fact]
    public void MatchPassesAndDeletesAStaleReceivedFile()
    {
        WriteVerified("Table", "a\nb\n");
        Mismatch("Table", "a\nc\n");
        Assert.True(File.Exists(PathOf("Table", Snapshot.ReceivedSuffix)));

        Snapshot.Verify(_root, "Table", "a\nb\n");

        Assert.False(File.Exists(PathOf("Table", Snapshot.ReceivedSuffix)));
    }

    [Theory]
    [InlineData("a\r\nb\r\n")]
    [InlineData("a\nb")]
    [InlineData("a\rb\r")]
    public void LineEndingsAndTheFinalNewlineDoNotMatter(string text)
    {
        WriteVerified("Endings", "a\r\nb");

        Snapshot.Verify(_root, "Endings", text);
    }

    [Fact]
    public void MismatchShowsOnlyChangedLinesWithTheirOwnLineNumbers()
    {
        WriteVerified("Diff", "one\ntwo\nthree\nfour\n");

        var error = Mismatch("Diff", "one\ninserted\ntwo\nthree\nFOUR\n");

        Assert.Contains("Snapshot 'Diff' differs from Snapshots/Diff.verified.txt", error.Message);
        Assert.Contains("Received: Snapshots/Diff.received.txt", error.Message);
        Assert.Contains("+   2 | inserted\n-   4 | four\n+   5 | FOUR\n", error.Message);
        Assert.DoesNotContain("| one", error.Message);
        Assert.DoesNotContain("| three", error.Message);
    }

    [Fact]
    public void DiffShowsAtMostFortyLinesAndCountsTheRest()
    {
        var expected = string.Concat(Enumerable.Range(1, 100).Select(i => $"line {i}\n"));
        var actual = string.Concat(Enumerable.Range(1, 100).Select(i => $"LINE {i}\n"));

        var diff = Snapshot.Diff(expected, actual);

        var lines = diff.TrimEnd('\n').Split('\n');
        Assert.Equal(41, lines.Length);
        Assert.Equal("... and 160 more differing line(s)", lines[^1]);
    }

    [Fact]
    public void DiffOfEqualTextsIsEmpty()
    {
        Assert.Equal("", Snapshot.Diff("a\nb\n", "a\nb\n"));
    }

    [Theory]
    [InlineData("../Escape")]
    [InlineData("a//b")]
    [InlineData(".hidden")]
    [InlineData("with space")]
    [InlineData("back\\slash")]
    public void UnsafeNamesAreRefused(string name)
    {
        Assert.Throws<ArgumentException>(() => Snapshot.Verify(_root, name, "x"));
    }

    [Fact]
    public void NormalizeEndsWithExactlyTheTextsOwnLines()
    {
        Assert.Equal("\n", Snapshot.Normalize(""));
        Assert.Equal("a\n", Snapshot.Normalize("a"));
        Assert.Equal("a\n\n", Snapshot.Normalize("a\r\n\r\n"));
    }

    [Fact]
    public void AcceptSwitchWritesTheVerifiedFileAndPasses()
    {
        Assert.Throws<XunitException>(() => Snapshot.Verify(_root, "Accepted", "old\n"));
        Snapshot.Verify(_root, "Accepted", "new\n", accept: true);
        string basePath = Path.Combine(_root, Snapshot.DirectoryName, "Accepted");
        Assert.Equal("new\n", File.ReadAllText(basePath + Snapshot.VerifiedSuffix));
        Assert.False(File.Exists(basePath + Snapshot.ReceivedSuffix));
        Snapshot.Verify(_root, "Accepted", "new\n"); // now approved
    }

    [Fact]
    public void AcceptScriptHelpNamesSnapshotsThatExist()
    {
        string script = File.ReadAllText(Path.Combine(Snapshot.FindRepositoryRoot(), Snapshot.AcceptScript));
        string help = string.Join('\n', script.Split('\n').Skip(1).TakeWhile(l => l.StartsWith('#')));
        var names = System.Text.RegularExpressions.Regex.Matches(help, @"e\.g\. '?([A-Za-z0-9_./*-]+)'?").Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(names);
        var snapshots = Path.Combine(Snapshot.FindRepositoryRoot(), Snapshot.DirectoryName);
        foreach (var n in names)
        {
            var dir = Path.GetDirectoryName(Path.Combine(snapshots, n))!;
            var pattern = Path.GetFileName(n) + Snapshot.VerifiedSuffix;
            Assert.True(Directory.Exists(dir) && Directory.GetFiles(dir, pattern).Length > 0, $"accept-snapshots.sh's help names '{n}', which matches no Snapshots/*{Snapshot.VerifiedSuffix}");
        }
        Assert.Contains(Snapshot.AcceptVariable, help, StringComparison.Ordinal);
    }

    [Fact]
    public void AcceptScriptRenamesReceivedFilesMatchingTheFilter()
    {
        var script = Path.Combine(Snapshot.FindRepositoryRoot(), Snapshot.AcceptScript);
        File.Copy(script, Path.Combine(_root, Snapshot.AcceptScript));
        Mismatch("Catalogue/Invariants", "new catalogue");
        Mismatch("Savings", "new savings");

        var (code, output) = RunAcceptScript("Catalogue/*");

        Assert.Equal(0, code);
        Assert.Contains("accepted Snapshots/Catalogue/Invariants.verified.txt", output);
        Snapshot.Verify(_root, "Catalogue/Invariants", "new catalogue");
        Assert.True(File.Exists(PathOf("Savings", Snapshot.ReceivedSuffix)));

        Assert.NotEqual(0, RunAcceptScript("NoSuchSnapshot").Code);

        (code, output) = RunAcceptScript(null);
        Assert.Equal(0, code);
        Assert.Contains("1 snapshot(s) accepted", output);
        Snapshot.Verify(_root, "Savings", "new savings");
    }

    private (int Code, string Output) RunAcceptScript(string? filter)
    {
        var start = new ProcessStartInfo("bash")
        {
            WorkingDirectory = _root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(_root, Snapshot.AcceptScript));
        if (filter != null)
            start.ArgumentList.Add(filter);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout + stderr.Result);
    }
}
