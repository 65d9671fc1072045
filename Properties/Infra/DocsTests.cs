using System.Text.RegularExpressions;
using PropertySuite.Cli;

namespace PropertySuite.Properties.Infra;

/// <summary>
/// The documentation a clone contains is the documentation it needs: README links every page of
/// docs/, every relative link resolves, no project file points at documents a clone lacks, every
/// seed tag used in the sources is explained in docs/seeds.md, every exit code is in the table of
/// docs/cli.md, and .ci/run runs README's test command.
/// </summary>
[Trait("Category", "infra")]
public partial class DocsTests
{
    private static readonly string Root = Snapshot.FindRepositoryRoot();

    private static IEnumerable<string> ProjectFiles() =>
        Directory.EnumerateFiles(Root, "*", SearchOption.AllDirectories)
            .Where(f => !Path.GetRelativePath(Root, f).Split(Path.DirectorySeparatorChar)
                .Any(part => part is ".git" or "bin" or "obj" or "TestResults" or "out" or "repros" or "node_modules"))
            .Where(f => Path.GetExtension(f) is ".cs" or ".md" or ".sh" or ".yml" or ".json" or ".csproj" or ".props" or ".mjs" or ""
                && !f.EndsWith(".received.txt", StringComparison.Ordinal));

    [GeneratedRegex(@"\]\(([^)#\s]+)(#[^)]*)?\)")]
    private static partial Regex MarkdownLink();

    [Fact]
    public void ReadmeLinksEveryDocsPageAndEveryRelativeLinkResolves()
    {
        string readme = File.ReadAllText(Path.Combine(Root, "README.md"));
        foreach (var page in Directory.GetFiles(Path.Combine(Root, "docs"), "*.md"))
            Assert.True(readme.Contains($"](docs/{Path.GetFileName(page)})", StringComparison.Ordinal), $"README.md does not link docs/{Path.GetFileName(page)}");
        foreach (var md in new[] { Path.Combine(Root, "README.md") }.Concat(Directory.GetFiles(Path.Combine(Root, "docs"), "*.md")))
            foreach (Match m in MarkdownLink().Matches(File.ReadAllText(md)))
            {
                string target = m.Groups[1].Value;
                if (target.Contains("://", StringComparison.Ordinal)) continue;
                string full = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(md)!, target));
                Assert.True(File.Exists(full) || Directory.Exists(full), $"{Path.GetRelativePath(Root, md)} links {target}, which does not exist");
            }
    }

    [Fact]
    public void NoProjectFilePointsAtDocumentsACloneLacks()
    {
        // Spelled in pieces so that this file does not match itself.
        string[] outside = ["KERNEL-" + "MODEL", "DESIGN" + ".md", "FSCHECK-" + "NOTES", "../" + "shared", "ANCHORS" + ".md", "STYLE" + ".md"];
        foreach (var f in ProjectFiles())
        {
            string text = File.ReadAllText(f);
            foreach (var o in outside)
                Assert.False(text.Contains(o, StringComparison.Ordinal), $"{Path.GetRelativePath(Root, f)} refers to {o}, which a clone does not contain; point to docs/ instead");
        }
    }

    [GeneratedRegex(@"\bS00[0-9]\b")]
    private static partial Regex SeedTag();

    [Fact]
    public void EverySeedTagInTheSourcesIsExplained()
    {
        string seeds = File.ReadAllText(Path.Combine(Root, "docs", "seeds.md"));
        var tags = ProjectFiles().Where(f => f.EndsWith(".cs", StringComparison.Ordinal))
            .SelectMany(f => SeedTag().Matches(File.ReadAllText(f)).Select(m => m.Value)).ToHashSet();
        Assert.NotEmpty(tags);
        foreach (var tag in tags)
            Assert.True(seeds.Contains($"| {tag} |", StringComparison.Ordinal), $"{tag} is used in the sources but has no row in docs/seeds.md");
    }

    [Fact]
    public void EveryExitCodeIsInTheTableAndCiRunsReadmesTestCommand()
    {
        string cli = File.ReadAllText(Path.Combine(Root, "docs", "cli.md"));
        foreach (var code in typeof(ExitCodes).GetFields().Where(f => f.IsLiteral).Select(f => (int)f.GetRawConstantValue()!))
            Assert.True(cli.Contains($"\n| {code} |", StringComparison.Ordinal), $"exit code {code} has no row in docs/cli.md");

        string readme = File.ReadAllText(Path.Combine(Root, "README.md"));
        int block = readme.IndexOf("```sh\n", StringComparison.Ordinal);
        string first = readme[(block + 6)..readme.IndexOf("```", block + 6, StringComparison.Ordinal)];
        var commands = first.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('#')[0].Trim()).ToList();
        Assert.Equal(["dotnet run --project Cli -c Release -- fuzz --time 60s", "dotnet test"], commands);
        string run = File.ReadAllText(Path.Combine(Root, ".ci", "run"));
        Assert.Contains("\ndotnet test 2>&1 | tee", run, StringComparison.Ordinal);
    }
}
