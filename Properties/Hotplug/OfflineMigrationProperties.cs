// offline_pages migrating page-cache pages (Engine/Hotplug/OnlineOffline.cs, do_migrate_range):
// the pages move to memory outside the block and the page cache follows them; without memory to
// move them to, the offline fails with EBUSY and nothing is lost. And pfn_to_online_page's window:
// an offline inside it is harmless, a remove inside it is the race the kernel accepts.
using PropertySuite.Engine;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Hotplug;

[Trait("Category", "hotplug")]
public class OfflineMigrationProperties
{
    // A 256M x86-64 machine: p1 takes all of boot memory's free pages and spills into the block,
    // p2 lies wholly in the block.
    private const string Head = "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nhotplug 256M\nvariant default\n"
        + "add_memory 0x10000000 128M\nonline_pages 0x10000000 128M\np1 = filemap_add 59000\np2 = filemap_add 1000\n";

    private static (RunResult Run, Kernel Kernel) Run(string repro)
    {
        Kernel? last = null;
        var r = ScenarioRunner.Run(Repro.Parse(repro), null, trace: (_, _, k) => last = k);
        return (r, last!);
    }

    [Fact]
    public void OfflineMigratesPageCachePagesOutOfTheBlock()
    {
        var (r, k) = Run(Head + "truncate p1\noffline_pages 0x10000000 128M\nremove_memory 0x10000000 128M\n");
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.migrated"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.offline_pages.Ok"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.remove_memory.Ok"));
        // Every page of p2 is still in the page cache, now below the removed block.
        var file = Assert.Single(k.Filemap.Files, f => f.IPages.Count > 0);
        Assert.Equal(1000, file.IPages.Count);
        long blockPfn = 0x10000000L >> k.Arch.PageShift;
        Assert.All(file.IPages.Values, page => Assert.True(k.Arch.PageToPfn(page) < blockPfn));
        Assert.All(file.IPages.Values, page => Assert.Equal(FrameOwner.PageCache, k.Mem.OwnerOf(k.Arch.PageToPfn(page))));
    }

    private const string Walk = "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nhotplug 256M\nvariant default\n"
        + "add_memory 0x10000000 128M\nonline_pages 0x10000000 128M\ncpu1: start online_pfn_walk 0x10100\nstep cpu1 to pfn_to_online_page\n";

    [Fact]
    public void AnOfflineInsidePfnToOnlinePagesWindowIsHarmless()
    {
        // The memmap stays until the remove: the walker reads an offline page's struct page.
        var (r, _) = Run(Walk + "offline_pages 0x10000000 128M\nstep cpu1 until done\nremove_memory 0x10000000 128M\n");
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.pfn_to_online_page.online"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.remove_memory.Ok"));
    }

    [Fact]
    public void ARemoveInsideTheWindowIsTheRaceTheKernelAccepts()
    {
        // Nothing holds pfn_to_online_page's answer: offline and remove complete in the window and
        // the walker's read goes through a vmemmap address that no longer maps anything.
        var (r, _) = Run(Walk + "offline_pages 0x10000000 128M\nremove_memory 0x10000000 128M\nstep cpu1 until done\n");
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.remove_memory.Ok"));
        Assert.NotNull(r.Violation);
    }

    [Fact]
    public void WithNowhereToMoveThemOfflineIsEbusyAndKeepsThePages()
    {
        var (r, k) = Run(Head + "offline_pages 0x10000000 128M\nremove_memory 0x10000000 128M\n");
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.migrate_failed"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.offline_pages.EBUSY"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.remove_memory.EBUSY"));
        Assert.Equal(60000, k.Filemap.LivePfns.Count);
    }
}
