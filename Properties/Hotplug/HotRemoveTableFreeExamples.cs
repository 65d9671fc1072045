// The table frees of hot-remove, the only kernel path that frees kernel page tables once they
// are empty (arm64 free_empty_tables after unmap_hotplug_range, over the linear map and vmemmap;
// x86 remove_pagetable's free_pte_table / free_pmd_table), with the meta-test breakages that used
// to act on a free_empty_tables line over the vmalloc range, which no kernel code runs.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Hotplug;

[Trait("Category", "hotplug")]
public class HotRemoveTableFreeExamples
{
    private static string Repro(string config, string variant, string body)
    {
        var arch = ArchConfig.ByName(config);
        long boot = 1L << 30, sec = arch.SectionSize;
        body = body.Replace("{B0}", $"0x{boot:x}").Replace("{S}", ArchConfig.FormatSize(sec));
        return $"propertysuite-repro 1\nconfig {config}\nmemory 1G\ncpus 2\nhotplug {ArchConfig.FormatSize(2 * sec)}\nvariant {variant}\n" + body;
    }

    [Theory]
    [InlineData("x86_64-4k-l4")]
    [InlineData("arm64-4k-l4")]
    public void ATableFreedWithItsParentEntryKeptIsCaughtByPageTableTreeWellFormed(string config)
    {
        const string body = "add_memory {B0} {S}\nremove_memory {B0} {S}\n";
        var r = ScenarioRunner.Run(Engine.Scenario.Repro.Parse(Repro(config, "broken-free-table-keeps-parent", body)));
        Assert.True(r.FailedInvariant == "PageTableTreeWellFormed", r.ToString());
        Assert.Equal(2, r.Step);
        Assert.Contains("owned Free, not a page table", r.Violation!.Evidence);

        var ok = ScenarioRunner.Run(Engine.Scenario.Repro.Parse(Repro(config, "default", body + "add_memory {B0} {S}\nptdump\n")));
        Assert.True(ok.Violation is null, ok.ToString());
    }
}
