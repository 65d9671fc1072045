// The independent restatements of issue 9 (items 5 and 6) on hand-written scenarios: each
// breakage is caught by the invariant written for it at the step the damage happens, and the
// correct kernel runs the same scenario clean.
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Core;

[Trait("Category", "core")]
public class InvariantTeethExamples
{
    private static string Header(string variant, string config = "x86_64-4k-l4", int cpus = 2) =>
        $"propertysuite-repro 1\nconfig {config}\nmemory 256M\ncpus {cpus}\nvariant {variant}\n";

    [Theory]
    [InlineData("broken-truncate-frees-twice", "p1 = filemap_add 1\ntruncate p1\n", "BuddyWellFormed", 2)]
    [InlineData("broken-truncate-frees-twice", "p1 = filemap_add 3\ntruncate p1\n", "BuddyWellFormed", 2)]
    // A pool of two persistent folios, a third (surplus) one handed out and freed: surplus stays 1
    // while nr is back to 2, which the bounds 0 <= surplus <= nr accept; the persistent pool
    // (2 - 1) is below max_huge_pages (2).
    [InlineData("broken-free-surplus-skips-decrement", "hugetlb_pool 2M 2\nf1 = hugetlb_alloc 2M\nf2 = hugetlb_alloc 2M\nf3 = hugetlb_alloc 2M\nhugetlb_free f3\n", "HugetlbPoolAccounting", 5)]
    [InlineData("broken-pfn-walk-skips-put", "p1 = filemap_add 1\npfn_walk p1 0\n", "RefcountAudit", 2)]
    [InlineData("broken-hvo-reserve-off-by-one", "f1 = hugetlb_alloc 2M\n", "HvoShape", 1)]
    [InlineData("broken-hvo-reserve-off-by-one", "f1 = hugetlb_alloc 2M\n", "HvoShape", 1, "x86_64-4k-l5")]
    // A surplus folio freed to the buddy with its vmemmap still optimized: no vmemmap entry
    // changes in that step, only the owner of the struct pages under the aliased leaves.
    [InlineData("broken-free-skips-vmemmap-restore", "f1 = hugetlb_alloc 2M\nhugetlb_free f1\n", "NoSharedLeafEntries", 2)]
    [InlineData("broken-free-skips-vmemmap-restore", "f1 = hugetlb_alloc 2M\nhugetlb_free f1\n", "NoSharedLeafEntries", 2, "x86_64-4k-l5")]
    public void BrokenPathIsCaughtByItsInvariant(string variant, string body, string invariant, int step, string config = "x86_64-4k-l4")
    {
        var r = ScenarioRunner.Run(Repro.Parse(Header(variant, config) + body));
        Assert.True(r.FailedInvariant == invariant && r.Step == step, r.ToString());
        var ok = ScenarioRunner.Run(Repro.Parse(Header("default", config) + body));
        Assert.True(ok.Violation is null, ok.ToString());
    }

    /// <summary>A frame the buddy holds twice is a violation with the two blocks as evidence, not
    /// a model exception (FrameConservation too reports the count, with its evidence).</summary>
    [Fact]
    public void DoubleFreeIsReportedWithTheBlocks()
    {
        var s = Repro.Parse(Header("broken-truncate-frees-twice") + "p1 = filemap_add 1\ntruncate p1\n");
        var r = ScenarioRunner.Run(s);
        Assert.Contains("free lists count", r.Violation!.Evidence);
        var only = ScenarioRunner.Run(s, invariants: [new FrameConservation()]);
        Assert.Equal("FrameConservation", only.FailedInvariant);
    }

    /// <summary>The surplus breakage keeps surplus_huge_pages within [0, nr_huge_pages] — the
    /// bounds the invariant used to check — so only the recount against the persistent pool sees it.</summary>
    [Fact]
    public void SurplusOffByOneStaysInsideTheOldBounds()
    {
        var s = Repro.Parse(Header("broken-free-surplus-skips-decrement") + "hugetlb_pool 2M 2\nf1 = hugetlb_alloc 2M\nf2 = hugetlb_alloc 2M\nf3 = hugetlb_alloc 2M\nhugetlb_free f3\n");
        long nr = -1, surplus = -1;
        var r = ScenarioRunner.Run(s, invariants: [], trace: (i, _, k) =>
        {
            var h = k.Hugetlb.Hstates.First(x => x.Name == "2M");
            (nr, surplus) = (h.NrHugePages, h.SurplusHugePages);
        });
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal((2L, 1L), (nr, surplus));
    }

    /// <summary>The lost put_page is seen by nothing but the audit: with RefcountAudit left out,
    /// every other invariant holds after the walk, after the truncate that should have freed the
    /// page, and after more page-cache traffic.</summary>
    [Fact]
    public void LostPutIsSeenByTheAuditAlone()
    {
        var others = InvariantRegistry.All.Where(i => i is not RefcountAudit).ToList();
        var s = Repro.Parse(Header("broken-pfn-walk-skips-put") + "p1 = filemap_add 2\npfn_walk p1 0\ntruncate p1\np2 = filemap_add 2\nspec_lookup p2 1\ntruncate p2\n");
        var r = ScenarioRunner.Run(s, invariants: others);
        Assert.True(r.Violation is null, r.ToString());
        var all = ScenarioRunner.Run(s);
        Assert.True(all.FailedInvariant == "RefcountAudit" && all.Step == 2, all.ToString());
        Assert.Contains("was never put", all.Violation!.Evidence);
    }

    /// <summary>The shape HVO leaves under the reserve breakage agrees with the engine's own
    /// reserve count (what HvoShape used to read): pages 0..R-1 distinct, R..V-1 on page R-1, with
    /// R = k.Hugetlb.ReservePages = 2. Only the scheme's own R (1 since v5.18) shows it wrong.</summary>
    [Fact]
    public void ReserveOffByOneLooksRightAgainstTheEnginesReserve()
    {
        var s = Repro.Parse(Header("broken-hvo-reserve-off-by-one") + "f1 = hugetlb_alloc 2M\n");
        bool consistent = false;
        var r = ScenarioRunner.Run(s, invariants: [], trace: (_, _, k) =>
        {
            var f = k.Hugetlb.AllFoliosByPfn().Single();
            int reserve = k.Hugetlb.ReservePages;
            long nv = f.Hstate.VmemmapPages;
            ulong start = k.Hugetlb.FolioPage(f);
            var frames = Enumerable.Range(0, (int)nv).Select(i => k.Mmu.FrameOf(start + (ulong)(i * k.Arch.PageSize), out _)).ToArray();
            consistent = reserve == 2 && frames.Take(reserve).Distinct().Count() == reserve && frames.Skip(reserve).All(x => x == frames[reserve - 1]);
        });
        Assert.True(r.Violation is null, r.ToString());
        Assert.True(consistent, "the broken shape should match the engine's reserve of 2");
        Assert.Equal("HvoShape", ScenarioRunner.Run(s).FailedInvariant);
    }

    /// <summary>The same under random generation: of 150 generated scenarios of the lost-put
    /// breakage, the audit breaks in many, and with the audit left out no other invariant breaks
    /// in any (a lost reference keeps every book balanced).</summary>
    [Fact]
    public void LostPutUnderGenerationIsSeenByTheAuditAlone()
    {
        var others = InvariantRegistry.All.Where(i => i is not RefcountAudit).ToList();
        var options = new ScenarioOptions { Variant = "broken-pfn-walk-skips-put", Invariants = [] };
        int audit = 0;
        for (ulong seed = 1; seed <= 150; seed++)
        {
            var s = ScenarioGenerator.Build(seed, 30, options);
            var r = ScenarioRunner.Run(s, invariants: others);
            Assert.True(r.Violation is null, $"seed {seed}: {r}\n{s}");
            if (ScenarioRunner.Run(s).FailedInvariant == "RefcountAudit") audit++;
        }
        Assert.True(audit >= 10, $"the audit broke in only {audit} of 150 scenarios");
    }
}
