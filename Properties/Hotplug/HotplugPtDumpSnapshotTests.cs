// Approved renderings of init_mm around a hot-plugged block, before and after its removal: the
// block's linear map (PMD blocks, no contiguous bit) and memmap (one PMD block on x86-64 and
// arm64 4K, base pages on arm64 16K/64K) appear with the add and are gone after the remove,
// together with the page tables that held only them (pgtable_range_aligned inside
// [PAGE_OFFSET, PAGE_END) and [VMEMMAP_START, VMEMMAP_END)); boot memory's mappings stay.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;
using PropertySuite.Properties.Infra;

namespace PropertySuite.Properties.Hotplug;

[Trait("Category", "hotplug")]
public class HotplugPtDumpSnapshotTests
{
    [Theory]
    [InlineData("arm64-4k-l4")]
    [InlineData("arm64-16k-l3")]
    [InlineData("x86_64-4k-l4")]
    public void BlockBeforeAndAfterRemove(string config)
    {
        var arch = ArchConfig.ByName(config);
        long boot = 1L << 30, sec = arch.SectionSize;
        string block = $"0x{boot:x} {ArchConfig.FormatSize(sec)}";
        string repro = $"propertysuite-repro 1\nconfig {config}\nmemory 1G\ncpus 2\nhotplug {ArchConfig.FormatSize(2 * sec)}\nvariant default\n"
            + $"add_memory {block}\nonline_pages {block}\noffline_pages {block}\nremove_memory {block}\n";
        var dumps = new List<string>();
        var r = ScenarioRunner.Run(Repro.Parse(repro), trace: (_, op, k) =>
        {
            if (op is HotplugRangeOp { Call: HotplugCall.OnlinePages or HotplugCall.RemoveMemory } h) dumps.Add($"## after {h}\n{Around(k)}");
        });
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(2, dumps.Count);
        Snapshot.Verify($"ptdump/{config}-hotplug-remove",
            $"# ptdump of init_mm around the hot-plug range: {config}, memory 1G, hotplug {ArchConfig.FormatSize(2 * sec)}, block {block}\n"
            + string.Join("\n", dumps));
    }


    /// <summary>The last boot section and the hot-plug range, in the linear map and in vmemmap,
    /// and the number of init_mm tables.</summary>
    private static string Around(Kernel k)
    {
        long first = (k.Hotplug.FirstHotplugSection - 1) * k.Arch.PagesPerSection;
        return $"# {k.SwapperPgDir.Tables.Count} init_mm tables\n"
            + PtDump.Render(k, k.Arch.PfnToVirt(first), k.Arch.PfnToVirt(k.Mem.MaxPfn))
            + PtDump.Render(k, k.Arch.PfnToPage(first), k.Arch.PfnToPage(k.Mem.MaxPfn));
    }
}
