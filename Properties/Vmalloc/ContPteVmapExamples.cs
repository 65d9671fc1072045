// arm64 contiguous PTEs in vmap (06fc959fcff7, v6.16): vmalloc_huge of at least CONT_PTE_SIZE
// below PMD_SIZE is backed by CONT_PTE_SIZE allocations and mapped in contiguous runs, ioremap
// likewise where VA and PA are aligned; vunmap_pte_range clears a run whole (with a WARN for a
// range that cuts it, 2fba13371fe8); the breakage of the physical-alignment test is caught.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Vmalloc;

[Trait("Category", "vmalloc")]
public class ContPteVmapExamples
{
    private static string Header(string variant, string config) =>
        $"propertysuite-repro 1\nconfig {config}\nmemory 256M\ncpus 2\nvariant {variant}\n";

    [Theory]
    [InlineData("arm64-4k-l4")]
    [InlineData("arm64-16k-l3")]
    public void VmallocHugeBelowPmdSizeUsesContiguousRuns(string config)
    {
        var k = Kernel.Boot(ArchConfig.ByName(config), new MachineConfig(512L << 20, 1));
        ulong cont = (ulong)k.Arch.ContSize(PtLevel.Pte), page = (ulong)k.Arch.PageSize;
        var (area, err) = k.Vmalloc.VmallocHuge(2 * cont);
        Assert.Equal(Errno.Ok, err);
        Assert.Equal(System.Numerics.BitOperations.Log2(cont / page), area!.PageOrder);
        Assert.Equal(0UL, area.Addr % cont);
        for (ulong off = 0; off < 2 * cont; off += page)
            Assert.True(k.SwapperPgDir.Walk(area.Addr + off).Entry.Cont);

        k.Vmalloc.VunmapRange(area.Addr + cont, area.Addr + cont + page); // cuts the second run
        Assert.Contains("contiguous PTE run", Assert.Single(k.Faults).Detail);
        Assert.False(k.SwapperPgDir.Walk(area.Addr + 2 * cont - page).Entry.IsLeaf); // cleared whole
        Assert.True(k.SwapperPgDir.Walk(area.Addr).Entry.Cont);                      // the first run stays
    }

    [Fact]
    public void BeforeV616ThereAreNoContiguousRuns()
    {
        var k = Kernel.Boot(ArchConfig.ByName("arm64-4k-l4"), new MachineConfig(256L << 20, 1), KernelVariants.ByName("arm64-vmap-without-cont-pte").Variant);
        var (area, _) = k.Vmalloc.VmallocHuge(64 << 10);
        Assert.Equal(0, area!.PageOrder);
        Assert.False(k.SwapperPgDir.Walk(area.Addr).Entry.Cont);
    }

    [Fact]
    public void X86HasNoContiguousRuns()
    {
        var k = Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 1));
        var (area, _) = k.Vmalloc.VmallocHuge(64 << 10);
        Assert.Equal(0, area!.PageOrder);
        Assert.False(k.SwapperPgDir.Walk(area.Addr).Entry.Cont);
    }

    [Fact]
    public void AContiguousRunOverMisalignedFramesIsCaught()
    {
        const string body = "v1 = ioremap 4K 64K\n";
        var r = ScenarioRunner.Run(Repro.Parse(Header("broken-cont-pte-vmap-ignores-phys-alignment", "arm64-4k-l4") + body), [InvariantRegistry.ByName("HugeVmapLeafOnlyWhereAllowed")]);
        Assert.True(r.FailedInvariant == "HugeVmapLeafOnlyWhereAllowed", r.ToString());
        Assert.Equal(1, r.Step);

        var ok = ScenarioRunner.Run(Repro.Parse(Header("default", "arm64-4k-l4") + body
            + "v2 = ioremap 64K 64K\nv3 = vmalloc_huge 128K\ncpu1: read v3 64K\nread v2 0\nvunmap_range v3 64K 16\niounmap v2\nvfree v3\nvm_unmap_aliases\nv4 = vmalloc_huge 64K\n"));
        Assert.True(ok.Violation is null, ok.ToString());
    }
}
