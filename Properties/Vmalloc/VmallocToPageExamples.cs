// vmalloc_to_page as a walker task: one table per step, holding what it reads, interleaved with
// a huge mapping that replaces a leftover PTE table through pmd_free_pte_page elsewhere in the
// vmalloc range (safe: that table maps only the new area), and finding the right page.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Vmalloc;

[Trait("Category", "vmalloc")]
public class VmallocToPageExamples
{
    [Theory]
    [InlineData("x86_64-4k-l4")]
    [InlineData("arm64-4k-l4")]
    public void TheWalkInterleavesWithATableReplacementAndFindsThePage(string config)
    {
        string repro = $"propertysuite-repro 1\nconfig {config}\nmemory 256M\ncpus 2\nvariant default\n"
            + "v1 = vmalloc 4K\nv2 = vmalloc 4K\ncpu1: start vmalloc_to_page v1 0\nstep cpu1 2\n"
            + "vfree v2\nvm_unmap_aliases\nv3 = vmalloc_huge 2M\nstep cpu1 until done\n";
        Kernel? last = null;
        int maxHeld = 0;
        var r = ScenarioRunner.Run(Repro.Parse(repro), trace: (_, _, k) => { last = k; maxHeld = Math.Max(maxHeld, k.Hotplug.Walkers.Held.Count); });
        Assert.True(r.Violation is null, r.ToString());
        Assert.True(maxHeld >= 2, $"the walk held {maxHeld} tables at most");
        Assert.Empty(last!.Hotplug.Walkers.Held);
        var v1 = last.Vmalloc.Areas.First();
        Assert.Equal(v1.Pages[0], last.Vmalloc.LastVmallocToPage);
    }

    [Fact]
    public void TheWalkStopsAtAHugeLeafWithTheSubpage()
    {
        const string repro = "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 1\nvariant default\nv1 = vmalloc_huge 2M\nvmalloc_to_page v1 20K\n";
        Kernel? last = null;
        var r = ScenarioRunner.Run(Repro.Parse(repro), trace: (_, _, k) => last = k);
        Assert.True(r.Violation is null, r.ToString());
        var v1 = last!.Vmalloc.Areas.First();
        Assert.Equal(9, v1.PageOrder);
        Assert.Equal(v1.Pages[5], last.Vmalloc.LastVmallocToPage);
    }
}
