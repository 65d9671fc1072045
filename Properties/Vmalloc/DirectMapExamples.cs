// Hand-written scenarios for permissions and the direct map (Engine/Mm/SetMemory.cs,
// Vmalloc.VmResetPerms): each breakage and the seed-003 variant is caught by the invariant it
// names, checked alone; the correct kernel runs the same scenario clean; and the v8 series'
// under-sized flush range is shown to be masked by the purge's single flush.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Vmalloc;

[Trait("Category", "vmalloc")]
public class DirectMapExamples
{
    private static string Header(string variant, string config = "x86_64-4k-l4", int cpus = 2) =>
        $"propertysuite-repro 1\nconfig {config}\nmemory 256M\ncpus {cpus}\nvariant {variant}\n";

    // Seed 003: a huge module made read-only leaves a 2M read-only direct-map block; under
    // pressure every split the reset needs fails, and the pages are freed with it still read-only.
    private const string HugeReadOnlyModuleFreedUnderPressure = "v1 = module_alloc 2M\nset_memory_ro v1 0 512\nfail_alloc 0 4096\nvfree v1\n";
    private const string ReadOnlyModuleReadThroughAliasFreed = "v1 = module_alloc 8K\nset_memory_ro v1 0 2\ncpu1: read_direct_map v1 4K\nvfree v1\n";

    [Theory]
    [InlineData("huge-module-alloc", HugeReadOnlyModuleFreedUnderPressure, "vmalloc-v8-policy", "DirectMapAliasPermissions", 4)]
    [InlineData("broken-set-memory-no-alias", "v1 = module_alloc 8K\nset_memory_ro v1 0 1\n", "default", "DirectMapAliasPermissions", 2)]
    [InlineData("broken-reset-perms-skips-direct-map-flush", ReadOnlyModuleReadThroughAliasFreed, "default", "DirectMapAliasPermissions", 4)]
    [InlineData("broken-reset-perms-skips-direct-map-flush", ReadOnlyModuleReadThroughAliasFreed, "default", "TlbCoherentAfterFlush", 4)]
    public void DirectMapBugIsCaughtByItsInvariant(string variant, string body, string correct, string invariant, int step)
    {
        var r = ScenarioRunner.Run(Repro.Parse(Header(variant) + body), [InvariantRegistry.ByName(invariant)]);
        Assert.True(r.FailedInvariant == invariant, r.ToString());
        Assert.Equal(step, r.Step);

        var ok = ScenarioRunner.Run(Repro.Parse(Header(correct) + body));
        Assert.True(ok.Violation is null, ok.ToString());
    }

    [Fact]
    public void X86SetMemoryRoMirrorsTheLeafSizeOntoTheDirectMap()
    {
        var k = Engine.Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 1), KernelVariants.ByName("huge-module-alloc").Variant);
        var (big, _) = k.Vmalloc.ModuleAlloc((ulong)k.Arch.PmdSize);
        var (small, _) = k.Vmalloc.ModuleAlloc((ulong)k.Arch.PageSize);
        Assert.Equal(Errno.Ok, k.Vmalloc.SetMemory.SetMemoryRo(big!.Addr, k.Arch.PmdSize / k.Arch.PageSize));
        Assert.Equal(Errno.Ok, k.Vmalloc.SetMemory.SetMemoryRo(small!.Addr, 1));
        var bigAlias = k.SwapperPgDir.Walk(k.Arch.PfnToVirt(big.Pages[0]));
        var smallAlias = k.SwapperPgDir.Walk(k.Arch.PfnToVirt(small.Pages[0]));
        Assert.Equal((PtLevel.Pmd, false), (bigAlias.Level, bigAlias.Entry.Writable));
        Assert.Equal((PtLevel.Pte, false), (smallAlias.Level, smallAlias.Entry.Writable));
        // The neighbour of the small page in the split block keeps its default permission.
        Assert.True(k.SwapperPgDir.Walk(k.Arch.PfnToVirt(small.Pages[0] + 1)).Entry.Writable);
    }

    [Fact]
    public void X86SetMemoryXLeavesTheDirectMapNonExecutable()
    {
        var k = Engine.Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 1));
        var (m, _) = k.Vmalloc.ModuleAlloc((ulong)k.Arch.PageSize);
        Assert.Equal(Errno.Ok, k.Vmalloc.SetMemory.SetMemoryX(m!.Addr, 1));
        Assert.True(k.SwapperPgDir.Walk(m.Addr).Entry.Exec);
        Assert.False(k.SwapperPgDir.Walk(k.Arch.PfnToVirt(m.Pages[0])).Entry.Exec);
    }

    [Fact]
    public void Arm64RefusesSetMemoryOnAHugeVmallocArea()
    {
        var k = Engine.Kernel.Boot(ArchConfig.ByName("arm64-4k-l4"), new MachineConfig(256L << 20, 1));
        var (huge, _) = k.Vmalloc.VmallocHuge((ulong)k.Arch.PmdSize);
        var (m, _) = k.Vmalloc.ModuleAlloc((ulong)k.Arch.PageSize);
        Assert.Equal(Errno.EINVAL, k.Vmalloc.SetMemory.SetMemoryRo(huge!.Addr, 1));
        Assert.Equal(Errno.Ok, k.Vmalloc.SetMemory.SetMemoryRo(m!.Addr, 1));
        // can_set_direct_map() is false for the block-mapped linear map: the alias is left alone.
        Assert.True(k.SwapperPgDir.Walk(k.Arch.PfnToVirt(m.Pages[0])).Entry.Writable);
    }

    /// <summary>The v8 series' vm_reset_perms asked for [start, last huge page + PAGE_SIZE), but
    /// the purge flushes one range from the lowest to the highest address it is given, and the
    /// area's own vmalloc range (waiting on the purge list) lies above the direct map on x86-64,
    /// so the flush covers every backing page anyway: the variant runs clean.</summary>
    [Fact]
    public void UndersizedFlushRangeIsMaskedByThePurgeOfTheAreaItself()
    {
        // Two huge pages, the second read through the direct map past its first small page;
        // the direct map of the frames is split to 4K first by a reset of the same frames.
        const string body = "v1 = vmalloc 4M\nset_vm_flush_reset_perms v1\nvfree v1\nvm_unmap_aliases\n"
            + "v2 = vmalloc 4M\nset_vm_flush_reset_perms v2\ncpu1: read_direct_map v2 2M\ncpu1: read_direct_map v2 3M\nvfree v2\n";
        var r = ScenarioRunner.Run(Repro.Parse(Header("vmalloc-v8-undersized-flush") + body));
        Assert.True(r.Violation is null, r.ToString());

        var k = Engine.Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 2), KernelVariants.ByName("vmalloc-v8-undersized-flush").Variant);
        var (a, _) = k.Vmalloc.VmallocNodeRange(4UL << 20);
        Assert.Equal(9, a!.PageOrder);
        k.Vmalloc.SetVmFlushResetPerms(a);
        ulong lastHuge = k.Arch.PfnToVirt(a.Pages[512]);
        k.BeginStep(1);
        k.Vmalloc.Vfree(a);
        // The last flush of the step is the purge's: it reaches the whole second huge page.
        var flush = k.Events.StepEvents.Last(e => e.Kind == KernelEventKind.Flush);
        Assert.True(flush.Covers("init_mm", lastHuge, lastHuge + (ulong)k.Arch.PmdSize, tableEntry: false), flush.ToString());
    }
}
