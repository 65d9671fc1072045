using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Hugetlb;

[Trait("Category", "hugetlb")]
public class SmokeTests
{
    [Theory]
    [InlineData("default", "x86_64-4k-l4", "2M")]
    [InlineData("default", "x86_64-4k-l4", "1G")]
    [InlineData("hvo-v5.14", "x86_64-4k-l4", "2M")]
    [InlineData("hvo-off", "x86_64-4k-l4", "2M")]
    [InlineData("arm64-hvo-stop-machine", "arm64-4k-l4", "2M")]
    [InlineData("default", "arm64-4k-l4", "2M")]
    public void PoolLifecycleRunsClean(string variant, string config, string size)
    {
        var s = Repro.Parse($"propertysuite-repro 1\nconfig {config}\nmemory 4G\ncpus 2\nvariant {variant}\n" +
            $"hugetlb_pool {size} 2\nf1 = hugetlb_alloc {size}\nf2 = hugetlb_alloc {size}\nf3 = hugetlb_alloc {size}\nhugetlb_free f1\nhugetlb_free f3\nhugetlb_pool {size} 0\nhugetlb_free f2\n");
        var r = ScenarioRunner.Run(s);
        Assert.True(r.Violation is null, r + "\n" + string.Join(", ", r.Reached.Select(kv => $"{kv.Key}={kv.Value}")));
    }
}
