// Memory hot-plug examples (Engine/Hotplug): the life cycle on every configuration, bad input as
// the kernel's errno, offlining next to HugeTLB, the teardown's order of actions, ptdump against
// hot-remove, and each hot-plug invariant catching its breakage checked alone.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Hotplug;

[Trait("Category", "hotplug")]
public class HotplugProperties
{
    public static TheoryData<string> Configs => new(ArchConfig.All.Select(c => c.Name));

    /// <summary>A 1 GiB machine with a hot-plug range of two sections right above it; the
    /// repro's operations follow, with {B0} and {B1} the two blocks and {S} the section size.</summary>
    internal static string Repro(string config, string variant, string body, int cpus = 2)
    {
        var arch = ArchConfig.ByName(config);
        long boot = 1L << 30, sec = arch.SectionSize;
        body = body.Replace("{B0}", $"0x{boot:x}").Replace("{B1}", $"0x{boot + sec:x}").Replace("{S}", ArchConfig.FormatSize(sec))
            .Replace("{BOOT}", $"0x{boot - sec:x}").Replace("{PAST}", $"0x{boot + 2 * sec:x}").Replace("{HALF}", ArchConfig.FormatSize(sec / 2));
        return $"propertysuite-repro 1\nconfig {config}\nmemory 1G\ncpus {cpus}\nhotplug {ArchConfig.FormatSize(2 * sec)}\nvariant {variant}\n" + body;
    }

    private static (RunResult Run, Kernel Kernel) Run(string repro, IReadOnlyList<IInvariant>? invariants = null)
    {
        Kernel? last = null;
        var r = ScenarioRunner.Run(Engine.Scenario.Repro.Parse(repro), invariants, trace: (_, _, k) => last = k);
        return (r, last!);
    }

    private const string LifeCycle =
        "add_memory {B0} {S}\nadd_memory {B1} {S}\nonline_pages {B0} {S}\nonline_pages {B1} {S}\noffline_pages {B1} {S}\n"
        + "remove_memory {B1} {S}\noffline_pages {B0} {S}\nremove_memory {B0} {S}\nadd_memory {B0} {S}\nptdump\nremove_memory {B0} {S}\n";

    [Theory]
    [MemberData(nameof(Configs))]
    public void AddOnlineOfflineRemoveAndReAddHoldEveryInvariant(string config)
    {
        var (r, k) = Run(Repro(config, "default", LifeCycle));
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(3, r.Reached.GetValueOrDefault("memory_hotplug.add_memory.Ok"));
        Assert.Equal(3, r.Reached.GetValueOrDefault("memory_hotplug.remove_memory.Ok"));
        Assert.Equal(2, r.Reached.GetValueOrDefault("memory_hotplug.offline_pages.Ok"));
        // Everything the blocks had is gone: the machine is as it booted.
        var fresh = Kernel.Boot(k.Arch, k.Machine);
        Assert.Equal(fresh.Mem.Count(Engine.Mm.FrameOwner.Free), k.Mem.Count(Engine.Mm.FrameOwner.Free));
        Assert.Equal(fresh.SwapperPgDir.Tables.Count, k.SwapperPgDir.Tables.Count);
    }

    [Theory]
    [InlineData("add_memory 0x0 {S}", "memory_hotplug.add_memory.EEXIST")]           // over boot memory
    [InlineData("add_memory {B0} {HALF}", "memory_hotplug.add_memory.EINVAL")]       // misaligned size
    [InlineData("add_memory {PAST} {S}", "memory_hotplug.add_memory.ERANGE")]        // past the hot-plug range
    [InlineData("add_memory {B0} {S}\nadd_memory {B0} {S}", "memory_hotplug.add_memory.EEXIST")] // overlaps present memory
    [InlineData("remove_memory {BOOT} {S}", "memory_hotplug.remove_memory.EBUSY")]   // boot memory is online
    [InlineData("offline_pages {BOOT} {S}", "memory_hotplug.offline_pages.EPERM")]   // arm64's boot-memory notifier
    [InlineData("add_memory {B0} {S}\nonline_pages {B0} {S}\nremove_memory {B0} {S}", "memory_hotplug.remove_memory.EBUSY")] // online
    [InlineData("remove_memory {B0} {S}", "memory_hotplug.remove_memory.EINVAL")]    // never added
    [InlineData("memremap_pages {B0} 1M", "memremap.memremap_pages.EINVAL")]         // not sub-section aligned
    public void BadInputIsTheKernelsErrnoAndChangesNothing(string body, string errno)
    {
        var (r, k) = Run(Repro("arm64-4k-l4", "default", body));
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(1, r.Reached.GetValueOrDefault(errno));
        if (!body.Contains('\n'))
        {
            var fresh = Kernel.Boot(k.Arch, k.Machine);
            Assert.Equal(fresh.Mem.Count(Engine.Mm.FrameOwner.Free), k.Mem.Count(Engine.Mm.FrameOwner.Free));
            Assert.Equal(fresh.Hotplug.NrOnlinePages, k.Hotplug.NrOnlinePages);
        }
    }

    [Fact]
    public void BootMemoryOfflineIsEbusyOnX86()
    {
        var (r, _) = Run(Repro("x86_64-4k-l4", "default", "offline_pages {BOOT} {S}"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("memory_hotplug.offline_pages.EBUSY"));
    }

    /// <summary>Offlining dissolves the free HugeTLB folios of the block (the pool shrinks by
    /// them); a folio in use there makes it EBUSY (no migration), and a remove right after is
    /// EBUSY too, the block still online.</summary>
    [Fact]
    public void OfflineDissolvesFreeFoliosAndRefusesInUseOnes()
    {
        // 256M of boot memory cannot hold a pool of 128 2M folios: the rest comes from the block.
        // Without HVO: with it, the head copies and vmemmap tables of boot folios are unmovable
        // allocations that also land in the block (the model has no ZONE_MOVABLE to keep them out).
        string head = "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nhotplug 256M\nvariant hvo-off\n"
            + "add_memory 0x10000000 128M\nonline_pages 0x10000000 128M\nhugetlb_pool 2M 128\n";
        var (free, k) = Run(head + "offline_pages 0x10000000 128M\nremove_memory 0x10000000 128M\n");
        Assert.True(free.Violation is null, free.ToString());
        Assert.Equal(1, free.Reached.GetValueOrDefault("memory_hotplug.offline_pages.Ok"));
        Assert.True(free.Reached.GetValueOrDefault("hugetlb.dissolved") > 0, "no pool folio was in the block");
        Assert.Equal(1, free.Reached.GetValueOrDefault("memory_hotplug.remove_memory.Ok"));
        Assert.True(k.Hugetlb.Hstates.Single(h => h.Size == 2L << 20).NrHugePages < 128);

        var (busy, _) = Run(head + "f1 = hugetlb_alloc 2M\noffline_pages 0x10000000 128M\nremove_memory 0x10000000 128M\n");
        Assert.True(busy.Violation is null, busy.ToString());
        Assert.Equal(1, busy.Reached.GetValueOrDefault("memory_hotplug.offline_pages.EBUSY"));
        Assert.Equal(1, busy.Reached.GetValueOrDefault("memory_hotplug.remove_memory.EBUSY"));
    }

    /// <summary>arm64 pass 1 clears a leaf, invalidates it, and only then frees its backing;
    /// pass 2 clears the parent entry, invalidates the walk caches, then frees the table.</summary>
    [Fact]
    public void Arm64TeardownClearsThenInvalidatesThenFrees()
    {
        var k = Kernel.Boot(ArchConfig.Arm64_4K, new MachineConfig(1L << 30, 2, 256L << 20));
        var actions = new List<string>();
        k.Cpus[0].OnStep = (_, st) => actions.Add(st.Action ?? "");
        Drive(k, ctx => k.Hotplug.AddMemory(ctx, 1L << 30, 128L << 20, new Engine.Ret<Engine.Mm.Errno>()));
        actions.Clear();
        Drive(k, ctx => k.Hotplug.RemoveMemory(ctx, 1L << 30, 128L << 20, new Engine.Ret<Engine.Mm.Errno>()));
        // vmemmap: one PMD block; then the linear map: 64 PMD blocks, then the emptied PMD table.
        int vm = actions.IndexOf("free_hotplug_page_range");
        Assert.Equal(["pmd_clear", "flush_tlb_kernel_range", "free_hotplug_page_range"], actions.Skip(vm - 2).Take(3));
        int table = actions.IndexOf("free_hotplug_pgtable_page");
        Assert.Equal(["pud_clear", "__flush_tlb_kernel_pgtable", "free_hotplug_pgtable_page"], actions.Skip(table - 2).Take(3));
        Assert.Equal(64, actions.Count(a => a == "flush_tlb_kernel_range") - 1);
    }

    /// <summary>x86's remove_pagetable clears in one walk, flushes once, then frees.</summary>
    [Fact]
    public void X86RemovePagetableFlushesBeforeItFrees()
    {
        var k = Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(1L << 30, 2, 256L << 20));
        var actions = new List<string>();
        k.Cpus[0].OnStep = (_, st) => actions.Add(st.Action ?? "");
        Drive(k, ctx => k.Hotplug.AddMemory(ctx, 1L << 30, 128L << 20, new Engine.Ret<Engine.Mm.Errno>()));
        actions.Clear();
        Drive(k, ctx => k.Hotplug.RemoveMemory(ctx, 1L << 30, 128L << 20, new Engine.Ret<Engine.Mm.Errno>()));
        int firstFlush = actions.IndexOf("flush_tlb_all");
        Assert.True(firstFlush > 0);
        Assert.DoesNotContain("free_pagetable", actions.Take(firstFlush));
        Assert.Equal(2, actions.Count(a => a == "flush_tlb_all")); // the vmemmap walk, the linear map's
    }

    /// <summary>ptdump started before a remove: without get_online_mems the teardown frees the
    /// table the walk is in; with it, the remove waits for the walk.</summary>
    [Fact]
    public void PtdumpHoldsOffTheTeardownOnlyUnderGetOnlineMems()
    {
        const string race = "add_memory {B0} {S}\ncpu1: start ptdump\nstep cpu1 to ptdump_pmd_entry\nremove_memory {B0} {S}\nstep cpu1 until done\nstep cpu0 until done\n";
        var (bad, _) = Run(Repro("arm64-4k-l4", "ptdump-without-get-online-mems", race));
        Assert.Equal(nameof(NoWalkerHoldsFreedTable), bad.FailedInvariant);
        var (good, k) = Run(Repro("arm64-4k-l4", "default", race));
        Assert.True(good.Violation is null, good.ToString());
        Assert.Equal(1, good.Reached.GetValueOrDefault("memory_hotplug.remove_memory.Ok"));
        Assert.Equal(Engine.Mm.SectionState.Removed, k.Mem.SectionStateOf(k.Hotplug.FirstHotplugSection));
    }

    /// <summary>Each hot-plug invariant, checked alone, catches the breakage made for it.</summary>
    [Theory]
    [InlineData("broken-remove-keeps-linear-map", nameof(RemovedMemoryIsGone), "arm64-4k-l4", "add_memory {B0} {S}\nremove_memory {B0} {S}\n")]
    [InlineData("broken-offline-keeps-section-online", nameof(OnlineAccounting), "arm64-16k-l4", "add_memory {B0} {S}\nonline_pages {B0} {S}\noffline_pages {B0} {S}\n")]
    [InlineData("broken-online-skips-generic-online-page", nameof(OnlineAccounting), "x86_64-4k-l4", "add_memory {B0} {S}\nonline_pages {B0} {S}\n")]
    [InlineData("broken-subsection-vmemmap-pmd", nameof(SectionsHavePrivateLeaves), "x86_64-4k-l4", "memremap_pages {B0} 2M\nmemremap_pages 0x40200000 2M\n")]
    [InlineData("arm64-vmemmap-pmd-for-subsections", nameof(SectionsHavePrivateLeaves), "arm64-4k-l4", "memremap_pages {B0} 2M\nmemremap_pages 0x40200000 2M\n")]
    [InlineData("broken-remove-skips-mem-hotplug-begin", nameof(NoWalkerHoldsFreedTable), "x86_64-4k-l4", "add_memory {B0} {S}\ncpu1: start ptdump\nstep cpu1 to ptdump_pmd_entry\nremove_memory {B0} {S}\n")]
    [InlineData("broken-hvo-optimizes-self-hosted-vmemmap", nameof(SelfHostedMemmapStaysOutOfBuddy), "x86_64-4k-l4", "add_memory {B0} {S} memmap_on_memory\nonline_pages {B0} {S}\nhugetlb_alloc 2M\nhugetlb_alloc 2M\n")]
    [InlineData("x86-remove-pagetable-frees-before-flush", nameof(ClearFlushFree), "x86_64-4k-l4", "add_memory {B0} {S}\nremove_memory {B0} {S}\n")]
    public void EachHotplugInvariantCatchesItsBreakageAlone(string variant, string invariant, string config, string body)
    {
        var (r, _) = Run(Repro(config, variant, body), [InvariantRegistry.ByName(invariant)]);
        Assert.Equal(invariant, r.FailedInvariant);
        var (ok, _) = Run(Repro(config, "default", body), [InvariantRegistry.ByName(invariant)]);
        Assert.True(ok.Violation is null, ok.ToString());
    }

    /// <summary>Runs a task to completion on cpu0 (a test's direct drive of an entry point).</summary>
    private static void Drive(Kernel k, Func<Engine.Smp.ExecContext, IEnumerable<Engine.Smp.StepStatus>> body)
    {
        var task = new Engine.Smp.LambdaTask("test", (_, ctx) => body(ctx));
        Assert.True(k.Sched.StartTask(0, task));
        Assert.True(k.Sched.RunToCompletionOrBlock(0, task), "the task blocked");
    }
}
