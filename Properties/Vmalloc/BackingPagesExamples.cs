// Hand-written scenarios for the backing pages of vmalloc areas (BackingPagesIndependent).
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Vmalloc;

[Trait("Category", "vmalloc")]
public class BackingPagesExamples
{
    private static string Header(string variant, string config = "x86_64-4k-l4", int cpus = 2, string memory = "256M") =>
        $"propertysuite-repro 1\nconfig {config}\nmemory {memory}\ncpus {cpus}\nvariant {variant}\n";

    [Theory]
    [InlineData("x86_64-4k-l4")]
    [InlineData("arm64-4k-l4")]
    [InlineData("arm64-16k-l3")]
    public void CompoundBackingIsCaughtAndSplitBackingIsNot(string config)
    {
        string body = config.StartsWith("arm64-16k") ? "v1 = vmalloc_huge 32M\n" : "v1 = vmalloc_huge 2M\n";
        var inv = InvariantRegistry.ByName(nameof(BackingPagesIndependent));
        var r = ScenarioRunner.Run(Repro.Parse(Header("vmalloc-compound-backing", config, memory: "512M") + body), [inv]);
        Assert.True(r.FailedInvariant == inv.Name, r.ToString());
        Assert.Equal(1, r.Step);
        var ok = ScenarioRunner.Run(Repro.Parse(Header("default", config, memory: "512M") + body));
        Assert.True(ok.Violation is null, ok.ToString());
    }

    /// <summary>Found by CorrectVariantHoldsEveryInvariant/hvo-no-head-copy when the invariant
    /// still demanded refcount exactly 1: compaction's PFN walker takes a speculative reference
    /// (get_page_unless_zero) on a page-cache page that truncate frees and module_alloc reuses
    /// meanwhile, so the new backing page has refcount 2 until the walker drops it. The kernel
    /// allows that; the page is still independent.</summary>
    [Fact]
    public void ASpeculativeReferenceOnAReusedPageIsAllowed()
    {
        const string body = "vmalloc_huge 4M\np1 = filemap_add 64\nstart compact_pfn 0x2040\nstep cpu0 to PageLRU\n"
            + "cpu1: truncate p1\ncpu1: module_alloc 2M\nstep cpu0 to get_page_unless_zero\n";
        var r = ScenarioRunner.Run(Repro.Parse(Header("hvo-no-head-copy", memory: "512M") + body), [InvariantRegistry.ByName(nameof(BackingPagesIndependent))]);
        Assert.True(r.Violation is null, r.ToString());
    }
}
