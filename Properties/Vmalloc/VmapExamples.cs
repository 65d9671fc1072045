// Hand-written scenarios for vmap of a caller's pages and vunmap_range of part of an area: the
// breakage of vunmap_range is caught by VmallocMappingsExact on its own, a range that cuts a huge
// leaf is cleared whole with the kernel's WARN (61ef8ddaa35e), and bad input is a value.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Vmalloc;

[Trait("Category", "vmalloc")]
public class VmapExamples
{
    private static string Header(string variant, string config = "x86_64-4k-l4", int cpus = 2) =>
        $"propertysuite-repro 1\nconfig {config}\nmemory 256M\ncpus {cpus}\nvariant {variant}\n";

    [Theory]
    [InlineData("x86_64-4k-l4")]
    [InlineData("arm64-4k-l4")]
    public void OvershootingVunmapRangeIsCaughtByVmallocMappingsExact(string config)
    {
        const string body = "v1 = vmap 4\nvunmap_range v1 4K 1\n";
        var r = ScenarioRunner.Run(Repro.Parse(Header("broken-vunmap-range-overshoots", config) + body), [InvariantRegistry.ByName("VmallocMappingsExact")]);
        Assert.True(r.FailedInvariant == "VmallocMappingsExact", r.ToString());
        Assert.Equal(2, r.Step);
        Assert.Contains("page 2", r.Violation!.Evidence);

        var ok = ScenarioRunner.Run(Repro.Parse(Header("default", config) + body + "cpu1: read v1 0\nvunmap_range_noflush v1 12K 1\nvunmap v1\nvm_unmap_aliases\n"));
        Assert.True(ok.Violation is null, ok.ToString());
    }

    [Fact]
    public void VmapMapsTheCallersPagesWithSmallPtesAndVunmapLeavesThemToTheCaller()
    {
        var k = Engine.Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 1));
        var pages = k.Vmalloc.AllocCallerPages(3)!;
        var (area, err) = k.Vmalloc.Vmap(pages, VmFlags.None);
        Assert.Equal(Errno.Ok, err);
        for (int i = 0; i < 3; i++)
        {
            var w = k.SwapperPgDir.Walk(area!.Addr + (ulong)i * 4096);
            Assert.Equal(PtLevel.Pte, w.Level);
            Assert.Equal(pages[i], w.Entry.Pfn);
            Assert.False(w.Entry.Exec); // pgprot_nx
        }
        var back = k.Vmalloc.Vunmap(area!);
        Assert.Equal(pages, back);
        Assert.All(back, p => Assert.Equal(FrameOwner.Vmalloc, k.Mem.OwnerOf(p)));
        Assert.Contains(k.Vmalloc.VmapAreas.PurgeList, v => v.VaStart == area!.Addr); // flushed lazily
    }

    [Fact]
    public void VmapOfNoPagesIsEinval() =>
        Assert.Equal(Errno.EINVAL, Engine.Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 1)).Vmalloc.Vmap([], VmFlags.None).Err);

    [Theory]
    [InlineData("x86_64-4k-l4")]
    [InlineData("arm64-4k-l4")]
    public void VunmapRangeThatCutsAHugeLeafClearsItWholeAndWarns(string config)
    {
        var k = Engine.Kernel.Boot(ArchConfig.ByName(config), new MachineConfig(256L << 20, 1));
        ulong pmd = (ulong)k.Arch.PmdSize;
        var (area, _) = k.Vmalloc.VmallocHuge(pmd);
        Assert.Equal(PtLevel.Pmd, k.SwapperPgDir.Walk(area!.Addr).Level);
        k.Vmalloc.VunmapRange(area.Addr, area.Addr + (ulong)k.Arch.PageSize);
        var f = Assert.Single(k.Faults);
        Assert.Equal(FaultKind.KernelBug, f.Kind);
        Assert.Contains("WARN_ON(next - addr < PMD_SIZE)", f.Detail);
        Assert.False(k.SwapperPgDir.Walk(area.Addr + pmd / 2).Entry.IsLeaf); // the rest went with it

        // As a scenario: the WARN is NoKernelOops's, and the lost rest of the area VmallocMappingsExact's.
        var r = ScenarioRunner.Run(Repro.Parse(Header("default", config) + "v1 = vmalloc_huge 2M\nvunmap_range v1 0 1\n"));
        Assert.NotNull(r.Violation);
        Assert.Equal(2, r.Step);
    }
}
