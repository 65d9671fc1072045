using System.Text;
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;
using PropertySuite.Properties.Infra;

namespace PropertySuite.Properties.Hgm;

/// <summary>
/// The expected outcomes of HGM × HVO × mapcount semantics (seed 002 and Mike Kravetz's concern
/// about v2), as an approved snapshot: (1) the thread's scenarios run as written under v1 and v2
/// mapcounts, with HVO on and off, with the counts they leave; (2) what random generation finds
/// for each, with the shrunk repro. It states, by running it, that v2 + HVO breaks (a high-
/// granularity mapping writes a tail struct page through read-only vmemmap) and v1 + HVO holds.
/// Deterministic: seeds come from the property names, no timing is printed.
/// </summary>
[Trait("Category", "hgm")]
public class HgmOutcomesSnapshotTests
{
    /// <summary>(variant, mapcount semantics, HVO) in the order of the matrix.</summary>
    private static readonly (string Variant, string Mapcount, string Hvo)[] Matrix =
    [
        ("default", "v1", "on"), ("hvo-off", "v1", "off"), ("hgm-v2-hvo", "v2", "on"), ("hgm-v2-hvo-off", "v2", "off"),
    ];

    private static readonly (string Name, string Body)[] Scenarios =
    [
        ("a 2M folio mapped by 512 PTEs (and its alias's PMD)", HgmExamples.Continued(512)),
        ("then collapsed to one PMD, the alias unmapped", HgmExamples.Continued(512, "madvise_collapse a1 0 2M\nhgm_munmap a2 0 2M\n")),
        ("one 4K piece at 1M (subpage 256, a tail the head's vmemmap page does not hold)", HgmExamples.Continued(0, "uffdio_continue a1 1M 4K\n")),
        ("one 4K piece at 64K (subpage 16, in the vmemmap page HVO keeps)", HgmExamples.Continued(0, "uffdio_continue a1 64K 4K\n")),
    ];

    public static string Render()
    {
        var sb = new StringBuilder();
        sb.Append("# HGM expected outcomes: mapcount semantics (v1 Jan 2023, v2 Feb 2023) against HVO (seed 002).\n");
        sb.Append("# Part 1: the thread's scenarios as written; counts of the folio afterwards.\n");
        foreach (var (name, body) in Scenarios)
        {
            sb.Append("\n## ").Append(name).Append('\n');
            foreach (var (v, mapcount, hvo) in Matrix)
            {
                Kernel? k = null;
                var r = ScenarioRunner.Run(Repro.Parse(HgmExamples.Header(v) + body), booted: x => k = x);
                sb.Append($"  {mapcount} HVO {hvo,-3} {v,-16} ").Append(r.Violation is null ? "no violation" : $"{r.FailedInvariant} at step {r.Step}");
                if (k!.Hgm.Files[0].PageCache.Values.FirstOrDefault() is { } f)
                {
                    var view = ((IKernelView)k).PeekView;
                    int entire = view.Read(k.Arch.PfnToPage(f.HeadPfn + 1)).EntireMapcount;
                    long subpages = 0, sum = 0;
                    for (long p = 0; p < f.NrPages; p++)
                    {
                        int m = view.Read(k.Arch.PfnToPage(f.HeadPfn + p)).Mapcount;
                        if (m != 0) { subpages++; sum += m; }
                    }
                    int refcount = view.Read(k.Arch.PfnToPage(f.HeadPfn)).Refcount;
                    sb.Append($"; _entire_mapcount {entire}, subpage _mapcounts {sum} over {subpages} subpages, refcount {refcount}");
                }
                sb.Append('\n');
            }
        }
        sb.Append("\n# Part 2: random generation at the meta-test budget (variant search effort where set).\n");
        foreach (var (v, mapcount, hvo) in Matrix)
        {
            VariantOutcome.Append(sb, $"{nameof(HgmOutcomesSnapshotTests)}/{v}", $"{mapcount} HVO {hvo}: {v}", v, "x86_64-4k-l4");
        }
        return sb.ToString();
    }

    [Fact]
    public void OutcomesMatchTheApprovedSnapshot() => Snapshot.Verify("hgm-outcomes", Render());
}
