// Hand-written scenarios for ioremap: device memory above RAM mapped with PMD/PUD leaves where
// the virtual and the physical address are both aligned, small pages otherwise; RAM and size 0
// refused as values; the breakage of the physical-alignment test caught on its own.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Vmalloc;

[Trait("Category", "vmalloc")]
public class IoremapExamples
{
    private static string Header(string variant, string config = "x86_64-4k-l4", int cpus = 2) =>
        $"propertysuite-repro 1\nconfig {config}\nmemory 256M\ncpus {cpus}\nvariant {variant}\n";

    [Theory]
    [InlineData("x86_64-4k-l4")]
    [InlineData("arm64-4k-l4")]
    [InlineData("arm64-16k-l3")]
    public void AlignedDeviceRangesGetHugeLeavesAndMisalignedOnesSmallPages(string config)
    {
        var k = Kernel.Boot(ArchConfig.ByName(config), new MachineConfig(256L << 20, 1));
        ulong pmd = (ulong)k.Arch.PmdSize, page = (ulong)k.Arch.PageSize;
        ulong mmio = (ulong)k.Vmalloc.MmioBasePfn << k.Arch.PageShift;
        var (aligned, e1) = k.Vmalloc.IoremapProt(mmio, pmd);
        var (misaligned, e2) = k.Vmalloc.IoremapProt(mmio + page, pmd);
        Assert.Equal(Errno.Ok, e1);
        Assert.Equal(Errno.Ok, e2);
        Assert.Equal(0UL, aligned!.Addr % pmd);
        var w = k.SwapperPgDir.Walk(aligned.Addr);
        Assert.Equal(PtLevel.Pmd, w.Level);
        Assert.Equal(k.Vmalloc.MmioBasePfn, w.Entry.Pfn);
        Assert.Equal(0UL, misaligned!.Addr % pmd); // aligned to its size: only the physical side is off
        Assert.Equal(PtLevel.Pte, k.SwapperPgDir.Walk(misaligned.Addr).Level);
        Assert.Equal(k.Vmalloc.MmioBasePfn + 1, k.SwapperPgDir.Walk(misaligned.Addr).Entry.Pfn);
        Assert.Empty(aligned.Pages);
        k.Vmalloc.Iounmap(aligned);
        Assert.False(k.SwapperPgDir.Walk(aligned.Addr).Entry.IsLeaf);
    }

    [Fact]
    public void APudAlignedGigabyteGetsAPudLeafOnX86()
    {
        var k = Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 1));
        var (area, err) = k.Vmalloc.IoremapProt((ulong)k.Vmalloc.MmioBasePfn << k.Arch.PageShift, (ulong)k.Arch.PudSize);
        Assert.Equal(Errno.Ok, err);
        Assert.Equal(PtLevel.Pud, k.SwapperPgDir.Walk(area!.Addr).Level);
    }

    [Fact]
    public void RamAndSizeZeroAreRefusedAsValues()
    {
        var k = Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 1));
        Assert.Equal(Errno.EINVAL, k.Vmalloc.IoremapProt((ulong)k.Vmalloc.MmioBasePfn << 12, 0).Err);
        Assert.Empty(k.Faults);
        Assert.Equal(Errno.EINVAL, k.Vmalloc.IoremapProt(16UL << 20, 4096).Err);
        Assert.Contains("ioremap on RAM", Assert.Single(k.Faults).Detail); // the kernel's WARN
    }

    [Theory]
    [InlineData("x86_64-4k-l4")]
    [InlineData("arm64-4k-l4")]
    public void AHugeLeafOverAMisalignedPhysicalRangeIsCaught(string config)
    {
        const string body = "v1 = ioremap 4K 2M\n";
        var r = ScenarioRunner.Run(Repro.Parse(Header("broken-huge-vmap-ignores-phys-alignment", config) + body), [InvariantRegistry.ByName("HugeVmapLeafOnlyWhereAllowed")]);
        Assert.True(r.FailedInvariant == "HugeVmapLeafOnlyWhereAllowed", r.ToString());
        Assert.Equal(1, r.Step);

        var ok = ScenarioRunner.Run(Repro.Parse(Header("default", config) + body + "v2 = ioremap 0 2M\ncpu1: read v2 4K\nread v1 0\nvunmap_range v2 0 512\niounmap v1\niounmap v2\nvm_unmap_aliases\nv3 = vmalloc_huge 2M\n"));
        Assert.True(ok.Violation is null, ok.ToString());
    }
}
