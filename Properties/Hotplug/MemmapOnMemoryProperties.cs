// memmap_on_memory examples (Engine/Hotplug/AddMemory.cs): the block's memmap in its own first
// pages where mhp_supports_memmap_on_memory allows it (4K base pages), the ordinary add where it
// does not, HVO refusing a folio whose memmap is self-hosted, and the teardown giving the memmap
// pages back to the altmap rather than the buddy.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Hotplug;

[Trait("Category", "hotplug")]
public class MemmapOnMemoryProperties
{
    public static TheoryData<string> Configs => new(ArchConfig.All.Select(c => c.Name));

    private static (RunResult Run, Kernel Kernel) Run(string config, string variant, string body)
    {
        var arch = ArchConfig.ByName(config);
        long boot = 1L << 30, sec = arch.SectionSize;
        body = body.Replace("{B0}", $"0x{boot:x}").Replace("{S}", ArchConfig.FormatSize(sec));
        string repro = $"propertysuite-repro 1\nconfig {config}\nmemory 1G\ncpus 1\nhotplug {ArchConfig.FormatSize(2 * sec)}\nvariant {variant}\n" + body;
        Kernel? last = null;
        var r = ScenarioRunner.Run(Repro.Parse(repro), null, trace: (_, _, k) => last = k);
        return (r, last!);
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void TheLifeCycleWithMemmapOnMemoryHoldsEveryInvariant(string config)
    {
        var (r, k) = Run(config, "default",
            "add_memory {B0} {S} memmap_on_memory\nonline_pages {B0} {S}\n"
            + "offline_pages {B0} {S}\nremove_memory {B0} {S}\nadd_memory {B0} {S} memmap_on_memory\nremove_memory {B0} {S}\n");
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(2, r.Reached.GetValueOrDefault("memory_hotplug.remove_memory.Ok"));
        bool supported = k.Hotplug.MhpSupportsMemmapOnMemory();
        Assert.Equal(supported ? 2 : 0, r.Reached.GetValueOrDefault("memory_hotplug.memmap_on_memory"));
        // 4K: a 128M block's memmap is 2M, one PMD; 16K and 64K: not whole PMDs, so no altmap.
        Assert.Equal(k.Arch.PageSize == 4096, supported);
        var fresh = Kernel.Boot(k.Arch, k.Machine);
        Assert.Equal(fresh.Mem.Count(FrameOwner.Free), k.Mem.Count(FrameOwner.Free));
    }

    [Fact]
    public void TheBlocksMemmapLivesInItsFirstPagesAndNeverInTheBuddy()
    {
        var (r, k) = Run("x86_64-4k-l4", "default", "add_memory {B0} {S} memmap_on_memory\nonline_pages {B0} {S}\n");
        Assert.True(r.Violation is null, r.ToString());
        long basePfn = (1L << 30) >> k.Arch.PageShift, alt = k.Arch.PmdSize >> k.Arch.PageShift;
        var info = k.Hotplug.Section(k.Mem.PfnToSection(basePfn));
        Assert.Equal(alt, info.AltmapPages);
        Assert.True(k.Mem.AllOwnedBy(basePfn, alt, FrameOwner.Vmemmap));
        Assert.True(k.Mem.AllOwnedBy(basePfn + alt, k.Arch.PagesPerSection - alt, FrameOwner.Free));
        // The block's vmemmap PMD maps the block's own first pages, marked PageVmemmapSelfHosted.
        Assert.Equal(basePfn, k.Mmu.FrameOf(k.Arch.PfnToPage(basePfn), out _));
        k.Mmu.PeekStructPage(k.Arch.PfnToPage(basePfn), out var sp);
        Assert.True((sp.Flags & PageFlags.VmemmapSelfHosted) != 0);
    }

    [Fact]
    public void HvoRefusesAFolioWhoseMemmapIsSelfHosted()
    {
        // On this machine the first 2M folio takes boot memory's last order-9 block and the second
        // the order-9 block right after the block's memmap (the buddy takes the smallest free block
        // that fits), so the second folio's struct pages are in the block's altmap.
        var (r, k) = Run("x86_64-4k-l4", "default", "add_memory {B0} {S} memmap_on_memory\nonline_pages {B0} {S}\nhugetlb_alloc 2M\nhugetlb_alloc 2M\n");
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(1, r.Reached.GetValueOrDefault("hvo.self_hosted"));
        long blockPfn = (1L << 30) >> k.Arch.PageShift;
        var f = Assert.Single(k.Hugetlb.AllFoliosByPfn(), f => f.HeadPfn >= blockPfn);
        Assert.False(k.PageFlags.FolioTestHugetlbVmemmapOptimized(k.PageFlags.PeekView, k.Hugetlb.FolioPage(f)));
    }

    [Fact]
    public void WithoutTheCheckHvoFreesSelfHostedMemmapToTheBuddy()
    {
        var (r, _) = Run("x86_64-4k-l4", "broken-hvo-optimizes-self-hosted-vmemmap", "add_memory {B0} {S} memmap_on_memory\nonline_pages {B0} {S}\nhugetlb_alloc 2M\nhugetlb_alloc 2M\n");
        Assert.Contains(r.FailedInvariant, new[] { nameof(SelfHostedMemmapStaysOutOfBuddy), nameof(StructPageMatchesOwner) });
    }
}
