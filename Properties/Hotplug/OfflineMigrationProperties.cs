// offline_pages migrating page-cache pages (Engine/Hotplug/OnlineOffline.cs, do_migrate_range):
// the pages move to memory outside the block and the page cache follows them; without memory to
// move them to, the offline fails with EBUSY and nothing is lost. And pfn_to_online_page's window:
// an offline inside it is harmless, a remove inside it is the race the kernel accepts.
using PropertySuite.Engine;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Generators.Families;
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

    [Fact]
    public void CompactionSkipsABlockThatIsNotOnline()
    {
        // Found by `fuzz --time 60s --seed 5` on a correct variant (NoKernelOops): compact_pfn
        // checked only pfn_valid, so the walk read the memmap of a block that was never onlined,
        // after remove_memory had freed it. Compaction reaches a pageblock only through
        // pageblock_pfn_to_page (pfn_to_online_page): nothing to read here.
        var (r, _) = Run("propertysuite-repro 1\nconfig arm64-64k-l2\nmemory 512M\ncpus 2\nhotplug 1G\nvariant hgm-memory-failure-piece-only\n"
            + "add_memory 0x20000000 512M\ncpu1: start compact_pfn 0x3800\nremove_memory 0x20000000 512M\nstep cpu1 to PageLRU\n");
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.pfn_to_online_page.offline"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.remove_memory.Ok"));
    }

    public static TheoryData<string> PfnWalkers => new("cpu1: start compact_pfn 0x10100", "cpu1: start online_pfn_walk 0x10100", "cpu1: start pfn_walk p1 0");

    [Theory]
    [MemberData(nameof(PfnWalkers))]
    public void NoRemoveIsDrawnWhileAWalkerByPfnRuns(string walker)
    {
        // Whichever family started it, a task holding a struct page found by PFN keeps
        // HotplugFamily from drawing remove_memory (the race the kernel accepts) until it ends.
        var v = KernelVariants.ByName("default");
        var s = new GenState(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 2, 256L << 20), v);
        foreach (var line in new[] { "add_memory 0x10000000 128M", "online_pages 0x10000000 128M", "p1 = filemap_add 1", walker, "cpu0: offline_pages 0x10000000 128M" })
            s.Append(Repro.Parse("propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nhotplug 256M\nvariant default\n" + line + "\n").Ops[0]);
        Assert.Contains(s.Tasks, t => t.Op.WalksByPfn && !t.Done);
        var family = new HotplugFamily();
        for (ulong seed = 1; seed <= 300; seed++)
        {
            var rng = new Prng(seed);
            foreach (var op in new[] { family.Next(s, rng), family.NextTask(s, rng) })
                // (A remove of boot memory, the family's bad input, is EBUSY: not a remove.)
                Assert.False(op is HotplugRangeOp { Call: HotplugCall.RemoveMemory, Address: >= 256L << 20 }, $"seed {seed}: {op} drawn while {walker} runs");
        }
    }

    // p1 leaves boot memory too little for a 2M folio: a1's two folios come from the block; page
    // 0 is split into PAGE_SIZE pieces. The truncate then makes room for their migration.
    private const string Hugetlbfs = "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nhotplug 256M\nvariant default\n"
        + "add_memory 0x10000000 128M\nonline_pages 0x10000000 128M\np1 = filemap_add 58700\na1 = hgm_mmap 2M 2\n"
        + "hgm_touch a1 0 write\nmadvise_split a1 0 2M\nhgm_touch a1 2M\n";

    [Fact]
    public void InUseHugetlbfsFoliosMigrateWithTheirMappings()
    {
        var (r, k) = Run(Hugetlbfs + "truncate p1\noffline_pages 0x10000000 128M\nremove_memory 0x10000000 128M\nhgm_touch a1 0\nhgm_touch a1 2M\n");
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(2, r.Reached.GetValueOrDefault("memory_hotplug.hugetlb_migrated_mapped"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.offline_pages.Ok"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.remove_memory.Ok"));
        // Both pages are still cached, now below the removed block, and every user leaf of a1
        // maps the cached folio of its page.
        var file = Assert.Single(k.Hgm.Files);
        Assert.Equal(2, file.PageCache.Count);
        long blockPfn = 0x10000000L >> k.Arch.PageShift;
        Assert.All(file.PageCache.Values, f => Assert.True(f.HeadPfn + f.NrPages <= blockPfn, $"{f} is in the removed block"));
        var mm = Assert.Single(k.Hgm.Mms).Mm;
        var leaves = mm.Pgd.Leaves(0, k.Hgm.UserTop).ToList();
        Assert.NotEmpty(leaves);
        Assert.All(leaves, w => Assert.Contains(file.PageCache.Values, f => w.Entry.Pfn >= f.HeadPfn && w.Entry.Pfn < f.HeadPfn + f.NrPages));
    }

    [Fact]
    public void WithNowhereToMoveThemTheFoliosStayAndOfflineIsEbusy()
    {
        var (r, k) = Run(Hugetlbfs + "offline_pages 0x10000000 128M\n");
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.offline_pages.EBUSY"));
        Assert.Equal(0, r.Reached.GetValueOrDefault("memory_hotplug.hugetlb_migrated_mapped"));
        long blockPfn = 0x10000000L >> k.Arch.PageShift;
        Assert.All(Assert.Single(k.Hgm.Files).PageCache.Values, f => Assert.True(f.HeadPfn >= blockPfn));
    }

    [Fact]
    public void AFolioAKernelCallerHoldsIsNotMigratable()
    {
        // hugetlb_alloc's folio was never added by a fault: not HPG_migratable.
        var (r, _) = Run("propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nhotplug 256M\nvariant default\n"
            + "add_memory 0x10000000 128M\nonline_pages 0x10000000 128M\np1 = filemap_add 58700\nf1 = hugetlb_alloc 2M\ntruncate p1\noffline_pages 0x10000000 128M\n");
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.hugetlb_not_isolated"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.offline_pages.EBUSY"));
    }

    [Fact]
    public void MigrationThatMapsTheOldFolioAgainIsCaught()
    {
        var (r, _) = Run((Hugetlbfs + "truncate p1\noffline_pages 0x10000000 128M\n").Replace("variant default", "variant broken-hugetlb-migrate-remaps-old-folio", StringComparison.Ordinal));
        Assert.NotNull(r.Violation);
        Assert.Contains(r.FailedInvariant, new[] { nameof(HugetlbPteShape), nameof(UserLeafMapsLiveFolio) });
    }
}
