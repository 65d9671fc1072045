// Hand-written scenarios for huge vmalloc: each new invariant catches its meta-test breakage on
// its own (checked alone, so that an invariant earlier in the registry cannot take the credit),
// the correct kernel runs the same scenario clean, and the ptdump of a huge area is approved.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;
using PropertySuite.Properties.Infra;

namespace PropertySuite.Properties.Vmalloc;

[Trait("Category", "vmalloc")]
public class HugeVmallocExamples
{
    private static string Header(string variant, string config = "x86_64-4k-l4", int cpus = 2) =>
        $"propertysuite-repro 1\nconfig {config}\nmemory 256M\ncpus {cpus}\nvariant {variant}\n";

    // A small area's PTE table is left behind under the first PMD; after the purge a huge area
    // takes that PMD, so vmap_try_huge_pmd hands the old table to pmd_free_pte_page.
    private const string ReplaceLeftoverPteTable = "v1 = vmalloc 4K\ncpu1: read v1 0\nvfree v1\nvm_unmap_aliases\nv2 = vmalloc_huge 2M\n";

    [Theory]
    [InlineData("broken-vmalloc-no-guard-page", "x86_64-4k-l4", "v1 = vmalloc 4K\nv2 = vmalloc 4K\n", "VmallocMappingsExact", 2)]
    [InlineData("broken-huge-vmalloc-ignores-opt-in", "x86_64-4k-l4", "v1 = vmalloc 2M\n", "HugeVmapLeafOnlyWhereAllowed", 1)]
    [InlineData("broken-pmd-free-pte-page-skips-flush", "arm64-4k-l4", ReplaceLeftoverPteTable, "NoFreedFrameReachable", 5)]
    public void BrokenVmallocPathIsCaughtByItsInvariant(string variant, string config, string body, string invariant, int step)
    {
        var r = ScenarioRunner.Run(Repro.Parse(Header(variant, config) + body), [InvariantRegistry.ByName(invariant)]);
        Assert.True(r.FailedInvariant == invariant, r.ToString());
        Assert.Equal(step, r.Step);

        var ok = ScenarioRunner.Run(Repro.Parse(Header("default", config) + body));
        Assert.True(ok.Violation is null, ok.ToString());
    }

    [Theory]
    [InlineData("x86_64-4k-l4")]
    [InlineData("arm64-4k-l4")]
    [InlineData("arm64-16k-l3")]
    public void VmallocHugeMapsPmdLeavesAndPlainVmallocDoesNot(string config)
    {
        var k = Engine.Kernel.Boot(ArchConfig.ByName(config), new MachineConfig(512L << 20, 2));
        ulong pmd = (ulong)k.Arch.PmdSize;
        var (huge, e1) = k.Vmalloc.VmallocHuge(pmd);
        var (plain, e2) = k.Vmalloc.VmallocNodeRange(pmd);
        Assert.Equal(Errno.Ok, e1);
        Assert.Equal(Errno.Ok, e2);
        Assert.Equal(PtLevel.Pmd, k.SwapperPgDir.Walk(huge!.Addr).Level);
        Assert.Equal(0UL, huge.Addr % pmd);
        Assert.Equal(PtLevel.Pte, k.SwapperPgDir.Walk(plain!.Addr).Level);
    }

    [Fact]
    public void AFailedHugeAllocationFallsBackToSmallPages()
    {
        var k = Engine.Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 1));
        k.Mem.InjectFailures(0, 1); // the order-9 allocation fails
        var (area, err) = k.Vmalloc.VmallocHuge((ulong)k.Arch.PmdSize);
        Assert.Equal(Errno.Ok, err);
        Assert.Equal(0, area!.PageOrder);
        Assert.Equal(PtLevel.Pte, k.SwapperPgDir.Walk(area.Addr).Level);
    }

    [Fact]
    public void ZeroSizeIsEinval() =>
        Assert.Equal(Errno.EINVAL, Engine.Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 1)).Vmalloc.VmallocHuge(0).Err);

    [Fact]
    public void PtDumpOfAHugeVmallocArea()
    {
        const string repro = "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 1G\ncpus 2\nvariant default\n"
            + "v1 = vmalloc 8K\nv2 = vmalloc_huge 4M\nv3 = vmalloc_huge 12K\n";
        Engine.Kernel? last = null;
        var r = ScenarioRunner.Run(Repro.Parse(repro), trace: (_, _, k) => last = k);
        Assert.True(r.Violation is null, r.ToString());
        var k = last!;
        string text = $"# ptdump of init_mm: {k.Arch.Name}, memory 1G, cpus 2, vmalloc 8K, vmalloc_huge 4M (two PMD leaves), vmalloc_huge 12K (small pages)\n"
            + "# vmalloc region only\n" + PtDump.Render(k, k.Arch.VmallocStart, k.Arch.VmallocEnd);
        Snapshot.Verify("ptdump/x86_64-4k-l4-vmalloc-huge", text);
    }

    // On arm64 with 64K pages MAX_PAGE_ORDER is 13 (512M blocks): a 512M machine has one
    // max-order block, which holds the kernel image. Boot used to round the memblock end up to a
    // whole max-order block, so nothing was left for the buddy and vmalloc 4M failed with ENOMEM.
    // The kernel's memblock_free_all frees every frame memblock did not reserve.
    [Fact]
    public void Vmalloc4MOnArm64_64KWith512MSucceeds()
    {
        var r = ScenarioRunner.Run(Repro.Parse(Header("default", "arm64-64k-l3").Replace("memory 256M", "memory 512M") + "v1 = vmalloc 4M\ncpu1: read v1 0\nvfree v1\n"));
        Assert.True(r.Violation is null, r.ToString());
        var k = Engine.Kernel.Boot(ArchConfig.Arm64_64K, new MachineConfig(512L << 20, 2));
        Assert.True(k.Mem.Buddy.NrFreePages > 0, "boot left no free memory");
        var (area, err) = k.Vmalloc.VmallocNodeRange(4UL << 20);
        Assert.Equal(Errno.Ok, err);
        Assert.Equal(64, area!.Pages.Count);
    }
}
