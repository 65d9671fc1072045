using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Hugetlb;

/// <summary>
/// Hand-written scenarios for the HugeTLB/HVO invariants: each buggy variant is caught by the
/// invariant it targets at the step where the damage becomes observable, and the correct kernel
/// (today's, or the correct variant of the same design) runs the same scenario clean.
/// `step cpu0 to ACTION` stops a task right after the kernel function named (see the comments).
/// </summary>
[Trait("Category", "hugetlb")]
public class HugetlbInvariantExamples
{
    private static string Header(string variant, string config = "x86_64-4k-l4", string memory = "1G", int cpus = 2) =>
        $"propertysuite-repro 1\nconfig {config}\nmemory {memory}\ncpus {cpus}\nvariant {variant}\n";

    // alloc_hugetlb_folio on an empty pool: dequeue nothing, the surplus check, frames allocated
    // (f1 bound), prep_compound_page, [init_new_hugetlb_folio: the hugetlb flag], then optimize:
    // synchronize_rcu, optimized flag, head copy, PMD read, split, 8 PTEs, flush, and
    // free_vmemmap_page_list. Under hvo-before-hugetlb-flag the hugetlb flag is set only after
    // that, so stopping there is inside the window where the folio is optimized but not hugetlb.
    private const string HvoWindow = "start f1 = hugetlb_alloc 2M\nstep cpu0 to free_vmemmap_page_list\n";

    // free_huge_folio of a surplus folio: folio_put, remove_hugetlb_folio, then restore: checks,
    // synchronize_rcu, allocate, PMD, PTEs, flush, and the optimized flag cleared.
    private const string AfterRestore = "f1 = hugetlb_alloc 2M\nstart hugetlb_free f1\nstep cpu0 to folio_clear_hugetlb_vmemmap_optimized\n";

    [Theory]
    [InlineData("hugetlb-folio-misaligned", "default", "x86_64-4k-l4", "f1 = hugetlb_alloc 2M\n", "NoSharedLeafEntries", 1)]
    [InlineData("hvo-remaps-pmd-without-split", "default", "x86_64-4k-l4", "f1 = hugetlb_alloc 2M\n", "NoSharedLeafEntries", 1)]
    [InlineData("flush-dcache-page-on-tail", "arm64-hvo-stop-machine", "arm64-4k-l4", "f1 = hugetlb_alloc 2M\nflush_dcache_page f1 64\n", "NoWriteThroughReadOnlyVmemmap", 2)]
    [InlineData("hvo-before-hugetlb-flag", "default", "x86_64-4k-l4", HvoWindow, "OptimizedImpliesHugetlb", 2)]
    [InlineData("restore-after-hugetlb-flag-cleared", "default", "x86_64-4k-l4", "hvo_knob off\nhugetlb_pool 2M 1\nf1 = hugetlb_alloc 2M\nhugetlb_free f1\ndissolve f1\n", "NoKernelOops", 5)]
    [InlineData("restore-after-hugetlb-flag-cleared", "default", "x86_64-4k-l4", "hvo_knob off\nhugetlb_pool 2M 1\nf1 = hugetlb_alloc 2M\nhugetlb_free f1\nmemory_failure f1 7\n", "NoKernelOops", 5)]
    [InlineData("broken-hvo-skips-last-pte", "default", "x86_64-4k-l4", "f1 = hugetlb_alloc 2M\n", "HvoShape", 1)]
    [InlineData("broken-restore-leaks-partial-alloc", "default", "x86_64-4k-l4", "f1 = hugetlb_alloc 2M\nfail_alloc 1 1\nhugetlb_free f1\n", "HvoFrameConservation", 3)]
    [InlineData("broken-restore-skips-reset", "default", "x86_64-4k-l4", AfterRestore, "CompoundHeadResolvesRealHead", 3)]
    [InlineData("broken-restore-skips-reset", "default", "x86_64-4k-l4", "f1 = hugetlb_alloc 2M\nhugetlb_free f1\n", "NoKernelOops", 2)]
    [InlineData("dissolve-ignores-surplus", "default", "x86_64-4k-l4", "f1 = hugetlb_alloc 2M\nfail_alloc 0 1\nhugetlb_free f1\ndissolve f1\n", "HugetlbPoolAccounting", 4)]
    public void BuggyVariantIsCaughtAndTheCorrectKernelIsNot(string variant, string correct, string config, string body, string invariant, int step)
    {
        var r = ScenarioRunner.Run(Repro.Parse(Header(variant, config) + body));
        Assert.True(r.FailedInvariant == invariant && r.Step == step, $"expected {invariant} at {step}, got {r}");
        Assert.Contains(invariant, Generators.VariantTargets.Of(variant).BreakNames);

        var ok = ScenarioRunner.Run(Repro.Parse(Header(correct, config) + body));
        Assert.True(ok.Violation is null, ok.ToString());
    }

    [Fact]
    public void MemoryFailureInTheHvoBeforeFlagWindowWritesAReadOnlyTail()
    {
        // Before d8f5f7e445f0: the folio is optimized but not yet hugetlb; memory_failure takes the ordinary
        // compound-page path and TestSetPageHWPoison stores to subpage 64's struct page, which
        // lives in a read-only alias of the head page.
        var body = HvoWindow + "cpu1: memory_failure f1 64\n";
        var only = new IInvariant[] { new NoWriteThroughReadOnlyVmemmap() };
        var r = ScenarioRunner.Run(Repro.Parse(Header("hvo-before-hugetlb-flag") + body), only);
        Assert.True(r.FailedInvariant == "NoWriteThroughReadOnlyVmemmap" && r.Step == 3, r.ToString());
        Assert.Contains("TestSetPageHWPoison", r.Violation!.Evidence);

        var ok = ScenarioRunner.Run(Repro.Parse(Header("default") + body));
        Assert.True(ok.Violation is null, ok.ToString());
        Assert.Equal(1, ok.Reached.GetValueOrDefault("mf.hugetlb"));
    }
}
