// Approved renderings of canonical page-table states (docs/ARCHITECTURE.md): the boot page table of a
// 1 GiB, 2-CPU machine for every ArchConfig, and the vmalloc area after a vmalloc and a vfree.
// A reviewer reads these against the documented layouts: the linear map in the largest blocks that
// fit, vmemmap in PMD blocks (x86-64, arm64 4K) or base pages (arm64 16K/64K), one struct page of
// 64 bytes per frame, guard pages between vmalloc areas.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;
using PropertySuite.Properties.Infra;

namespace PropertySuite.Properties.Geometry;

[Trait("Category", "geometry")]
public class PtDumpSnapshotTests
{
    private const long BootMemory = 1L << 30;
    private const int BootCpus = 2;

    public static TheoryData<string> Configs => new(ArchConfig.All.Select(c => c.Name));

    private static string Header(Kernel k, string what) =>
        $"# ptdump of init_mm: {k.Arch.Name}, memory {ArchConfig.FormatSize(k.Machine.MemoryBytes)}, cpus {k.Machine.Cpus}, {what}\n"
        + string.Join("", PtDump.KernelRegions(k.Arch).Select(r => $"# {r.Name,-10} [0x{r.Start:x16}, 0x{r.End:x16})\n"));

    [Theory]
    [MemberData(nameof(Configs))]
    public void BootPageTable(string config)
    {
        var k = Kernel.Boot(ArchConfig.ByName(config), new MachineConfig(BootMemory, BootCpus));
        Snapshot.Verify($"ptdump/{config}", Header(k, "after boot") + PtDump.Render(k));
    }

    [Fact]
    public void VmallocAreaAfterVmallocAndVfree()
    {
        const string repro = "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 1G\ncpus 2\nvariant default\n"
            + "v1 = vmalloc 16K\nv2 = vmalloc 64K\nv3 = vmalloc 8K\nvfree v2\n";
        Kernel? last = null;
        var r = ScenarioRunner.Run(Repro.Parse(repro), trace: (_, _, k) => last = k);
        Assert.True(r.Violation is null, r.ToString());
        var k = last!;
        string text = Header(k, "vmalloc 16K, 64K, 8K, vfree of the 64K area") + "# vmalloc region only\n"
            + PtDump.Render(k, k.Arch.VmallocStart, k.Arch.VmallocEnd);
        Snapshot.Verify("ptdump/x86_64-4k-l4-vmalloc", text);
    }
}
