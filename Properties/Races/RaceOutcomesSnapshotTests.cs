using System.Text;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;
using PropertySuite.Properties.Infra;

namespace PropertySuite.Properties.Races;

/// <summary>
/// The expected outcomes of S001, as an approved snapshot: for every speculative-get primitive
/// and vmemmap update strategy, (1) what the thread's own interleavings do under it, and (2)
/// what random generation finds, with the shrunk repro. A change in the model or an invariant
/// that moves any of these shows up for approval. Everything here is deterministic: seeds come
/// from the property names, and no timing is printed.
/// </summary>
[Trait("Category", "races")]
public class RaceOutcomesSnapshotTests
{
    private static readonly string[] Variants =
    [
        "default", "hvo-off", "spec-get-pre-fix", "spec-get-writable-tails", "muchun-drop-on-mismatch",
        "bd225530-without-synchronize-rcu", "arm64-hvo-in-place", "arm64-hvo-fault-handler",
        "arm64-hvo-stop-machine", "arm64-hvo-bbml2",
    ];

    /// <summary>The thread's interleavings, each for the architecture it was argued on.</summary>
    private static readonly (string Name, string Config, int Cpus, string Body)[] Interleavings =
    [
        ("Matthew Wilcox: page-cache reader vs truncate + HVO", "x86_64-4k-l4", 2,
            "p1 = filemap_add 65\ncpu1: start spec_lookup p1 64\nstep cpu1 to xa_load\ntruncate p1\nf1 = hugetlb_alloc 2M\nstep cpu1 until done\nstep cpu0 until done\nstep cpu1 until done\n"),
        ("Yu Zhao: PFN walker vs free + HVO", "x86_64-4k-l4", 2,
            "p1 = filemap_add 65\ncpu1: start pfn_walk p1 64\nstep cpu1 to PageLRU\ntruncate p1\nf1 = hugetlb_alloc 2M\nstep cpu1 until done\nstep cpu0 until done\nstep cpu1 until done\n"),
        ("check passed, then freed and remapped before the add", "x86_64-4k-l4", 2,
            "p1 = filemap_add 65\ncpu1: start spec_lookup p1 64\nstep cpu1 to page_ref_count\ntruncate p1\nf1 = hugetlb_alloc 2M\nstep cpu1 until done\nstep cpu0 until done\nstep cpu1 until done\n"),
        ("arm64: HVO of one 2M folio", "arm64-4k-l4", 2, "f1 = hugetlb_alloc 2M\nhugetlb_free f1\nhugetlb_pool 2M 0\n"),
        ("arm64: interrupt on the updating CPU reads a struct page in the window", "arm64-4k-l4", 2,
            "start f1 = hugetlb_alloc 2M\nstep cpu0 to flush_tlb_kernel_range\nirq cpu0 read_folio_page f1 64\nstep cpu0 until done\nstep cpu0 until done\n"),
    ];

    public static string Render()
    {
        var sb = new StringBuilder();
        sb.Append("# S001 expected outcomes: speculative references against HVO, and arm64 break-before-make.\n");
        sb.Append("# Part 1: the thread's interleavings, run as written, under every variant.\n");
        foreach (var (name, config, cpus, body) in Interleavings)
        {
            sb.Append("\n## ").Append(name).Append(" (").Append(config).Append(")\n");
            foreach (var v in Variants)
            {
                var nv = KernelVariants.ByName(v);
                if (nv.Arch is { } need && need != config) continue;
                var r = ScenarioRunner.Run(Repro.Parse($"propertysuite-repro 1\nconfig {config}\nmemory 256M\ncpus {cpus}\nvariant {v}\n{body}"));
                sb.Append($"  {v,-34} ").Append(r.Violation is null ? "no violation" : $"{r.FailedInvariant} at step {r.Step}").Append('\n');
            }
        }
        sb.Append("\n# Part 2: random generation at the meta-test budget (variant search effort where set).\n");
        foreach (var v in Variants)
        {
            VariantOutcome.Append(sb, $"{nameof(RaceOutcomesSnapshotTests)}/{v}", v, v);
        }
        return sb.ToString();
    }

    [Fact]
    public void OutcomesMatchTheApprovedSnapshot() => Snapshot.Verify("race-outcomes", Render());
}
