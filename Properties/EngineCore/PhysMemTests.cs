// Frame owners and their counts (PhysMem), checked against a full-scan oracle, and the refusal
// of bad input: machine sizes, out-of-range PFNs, frees of frames not owned as claimed.
using PropertySuite.Engine;
using PropertySuite.Properties.Infra;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Properties.EngineCore;

[Trait("Category", "engine")]
public class PhysMemTests
{
    /// <summary>The oracle: every frame's owner recounted one by one.</summary>
    private static Dictionary<FrameOwner, long> Recount(PhysMem mem)
    {
        var counts = Enum.GetValues<FrameOwner>().ToDictionary(o => o, _ => 0L);
        for (long p = 0; p < mem.MaxPfn; p++) counts[mem.OwnerOf(p)]++;
        return counts;
    }

    private static void AssertCountsMatchOracle(PhysMem mem)
    {
        var oracle = Recount(mem);
        foreach (var o in Enum.GetValues<FrameOwner>())
            Assert.True(oracle[o] == mem.Count(o), $"{o}: incremental count {mem.Count(o)}, full scan {oracle[o]}");
    }

    [Theory]
    [MemberData(nameof(Machines.Configs), MemberType = typeof(Machines))]
    public void BootCountsMatchAFullScanAndTheBuddy(string config)
    {
        var k = Machines.Boot(config, "1G");
        AssertCountsMatchOracle(k.Mem);
        Assert.Equal(k.Mem.Count(FrameOwner.Free), k.Mem.Buddy.NrFreePages);
        Assert.Equal(k.SwapperPgDir.Tables.Count, k.Mem.Count(FrameOwner.PageTable));
        // Every frame below the end of boot reservations is reserved (kernel image, memblock);
        // every frame above is free; nothing is absent on a machine without hot-plug space.
        Assert.Equal(0, k.Mem.Count(FrameOwner.Absent));
        for (long p = k.Mem.BootReservedEnd; p < k.Mem.MaxPfn; p += 97) Assert.Equal(FrameOwner.Free, k.Mem.OwnerOf(p));
    }

    [Fact]
    public void CountsFollowARandomMixOfAllocationsFreesAndOwnerChanges()
    {
        var k = Machines.Boot("x86_64-4k-l4", "256M");
        var mem = k.Mem;
        var rng = new Random(2024);
        var held = new List<(long Pfn, int Order, FrameOwner Owner)>();
        FrameOwner[] owners = [FrameOwner.Vmalloc, FrameOwner.HugetlbFolio, FrameOwner.PageCache, FrameOwner.InFlight];
        for (int i = 0; i < 600; i++)
        {
            int action = rng.Next(3);
            if (action == 0 || held.Count == 0)
            {
                int order = rng.Next(0, 11);
                var owner = owners[rng.Next(owners.Length)];
                if (mem.TryAllocPages(order, owner, out long pfn)) held.Add((pfn, order, owner));
            }
            else if (action == 1)
            {
                int j = rng.Next(held.Count);
                var (pfn, order, owner) = held[j];
                mem.FreePages(pfn, order, owner, "test");
                held.RemoveAt(j);
            }
            else
            {
                int j = rng.Next(held.Count);
                var (pfn, order, _) = held[j];
                var owner = owners[rng.Next(owners.Length)];
                mem.SetOwner(pfn, 1L << order, owner);
                held[j] = (pfn, order, owner);
            }
            if (i % 50 == 0) AssertCountsMatchOracle(mem);
        }
        AssertCountsMatchOracle(mem);
        Assert.Empty(mem.BadFrees);
        Assert.Equal(mem.Count(FrameOwner.Free), mem.Buddy.NrFreePages);
        Assert.Equal(held.Sum(h => 1L << h.Order), owners.Sum(o => mem.Count(o)));
    }

    [Fact]
    public void SetOwnerAcrossSectionBoundariesSplitsAndReunitesUniformSections()
    {
        var k = Machines.Boot("x86_64-4k-l4", "512M");
        var mem = k.Mem;
        long s = mem.PagesPerSection;
        mem.SetOwner(2 * s - 3, s + 6, FrameOwner.InFlight); // tail of section 1, all of 2, head of 3
        Assert.Equal(s + 6, mem.Count(FrameOwner.InFlight));
        Assert.True(mem.AllOwnedBy(2 * s - 3, s + 6, FrameOwner.InFlight));
        Assert.False(mem.AllOwnedBy(2 * s - 4, s + 6, FrameOwner.InFlight));
        AssertCountsMatchOracle(mem);
        mem.SetOwner(2 * s - 3, s + 6, FrameOwner.Free);
        AssertCountsMatchOracle(mem);
    }

    [Fact]
    public void DoubleAndForeignFreesAreRecordedNotPerformed()
    {
        var k = Machines.Boot();
        var mem = k.Mem;
        long pfn = mem.AllocPagesOrFail(2, FrameOwner.Vmalloc);
        long free = mem.Buddy.NrFreePages;
        mem.FreePages(pfn, 2, FrameOwner.HugetlbFolio, "foreign");
        Assert.Single(mem.BadFrees);
        Assert.Contains("foreign", mem.BadFrees[0]);
        Assert.Contains($"pfn {pfn:x}", mem.BadFrees[0]);
        Assert.Equal(free, mem.Buddy.NrFreePages);
        mem.FreePages(pfn, 2, FrameOwner.Vmalloc, "first");
        mem.FreePages(pfn, 2, FrameOwner.Vmalloc, "double");
        Assert.Equal(2, mem.BadFrees.Count);
        Assert.Contains("double", mem.BadFrees[1]);
        Assert.Equal(free + 4, mem.Buddy.NrFreePages);
        AssertCountsMatchOracle(mem);
    }

    [Theory]
    [InlineData(-1L, 0)]
    [InlineData(1L << 40, 0)]
    [InlineData(-8L, 3)]
    public void FreeOfAnOutOfRangePfnIsRecordedNamingTheRange(long pfn, int order)
    {
        var k = Machines.Boot();
        k.Mem.FreePages(pfn, order, FrameOwner.Vmalloc, "wild");
        Assert.Single(k.Mem.BadFrees);
        Assert.Contains("outside the machine's frames", k.Mem.BadFrees[0]);
        k.Mem.FreeContigPages(pfn, 8, FrameOwner.HugetlbFolio, "wild contig");
        Assert.Contains("outside the machine's frames", k.Mem.BadFrees[1]);
    }

    [Fact]
    public void OutOfRangePfnsAreAbsentAndOwnerChangesThereAreModelBugs()
    {
        var k = Machines.Boot();
        var mem = k.Mem;
        Assert.Equal(FrameOwner.Absent, mem.OwnerOf(-1));
        Assert.Equal(FrameOwner.Absent, mem.OwnerOf(mem.MaxPfn));
        Assert.True(mem.AllOwnedBy(mem.MaxPfn, 10, FrameOwner.Absent));
        Assert.False(mem.AllOwnedBy(mem.MaxPfn - 1, 2, FrameOwner.Free));
        var e = Assert.Throws<ModelBugException>(() => mem.SetOwner(mem.MaxPfn - 1, 2, FrameOwner.Kernel));
        Assert.Contains($"outside [0, {mem.MaxPfn:x})", e.Message);
        Assert.Throws<ModelBugException>(() => mem.SetOwner(-1, 1, FrameOwner.Kernel));
        Assert.Throws<ModelBugException>(() => mem.AddSection(0, FrameOwner.Kernel)); // already online
        Assert.Throws<ModelBugException>(() => mem.MemblockAlloc(1, 1));           // buddy took over
    }

    [Fact]
    public void StructPageOfAPfnBeyondTheMachineIsAnUnmappedVmemmapAddress()
    {
        var k = Machines.Boot();
        ulong page = k.Arch.PfnToPage(k.Mem.MaxPfn + 4096);
        Assert.False(k.Mmu.PeekStructPage(page, out _));
        Assert.False(k.Mmu.ReadStructPage(null, page, out _));
        var f = Assert.Single(k.Faults);
        Assert.Equal(FaultKind.TranslationFault, f.Kind);
        Assert.Equal(page, f.Va);
    }

    // ---- MachineConfig.Validate ----

    [Theory]
    [InlineData("x86_64-4k-l4", 0L, 0L, 2, "memory 0", "positive multiple of the 128M memory section")]
    [InlineData("x86_64-4k-l4", 100L << 20, 0L, 2, "memory 100M", "128M memory section")]
    [InlineData("arm64-64k-l3", 256L << 20, 0L, 2, "memory 256M", "512M memory section")]
    [InlineData("x86_64-4k-l4", 1L << 30, 64L << 20, 2, "hotplug 64M", "non-negative multiple")]
    [InlineData("x86_64-4k-l4", 1L << 30, -(128L << 20), 2, "hotplug -128M", "non-negative multiple")]
    [InlineData("x86_64-4k-l4", 65L << 40, 0L, 2, "memory 65T", "at most 64T")]
    [InlineData("arm64-16k-l2", 64L << 30, 0L, 2, "memory 64G", "linear map of arm64-16k-l2 covers at most 32G")]
    [InlineData("arm64-4k-l3", 256L << 30, 128L << 20, 2, "memory 262272M", "linear map of arm64-4k-l3 covers at most 256G")]
    [InlineData("x86_64-4k-l4", 1L << 30, 0L, 0, "cpus 0", "between 1 and 64")]
    [InlineData("x86_64-4k-l4", 1L << 30, 0L, 65, "cpus 65", "between 1 and 64")]
    [InlineData("x86_64-4k-l4", 128L << 20, 0L, 1, "memory 128M", "at least two sections")]
    public void ImpossibleMachinesAreRefusedNamingValueAndRule(string config, long memory, long hotplug, int cpus, string value, string rule)
    {
        var arch = ArchConfig.ByName(config);
        var machine = new MachineConfig(memory, cpus, hotplug);
        var e = Assert.Throws<ConfigException>(() => machine.Validate(arch));
        Assert.Contains(value, e.Message);
        Assert.Contains(rule, e.Message);
        Assert.Throws<ConfigException>(() => Kernel.Boot(arch, machine));
    }

    [Theory]
    [MemberData(nameof(Machines.Configs), MemberType = typeof(Machines))]
    public void TheSmallestAcceptedMachineBoots(string config)
    {
        var arch = ArchConfig.ByName(config);
        long memory = Math.Max(2 * arch.SectionSize, 256L << 20);
        memory = (memory + arch.SectionSize - 1) / arch.SectionSize * arch.SectionSize;
        var k = Kernel.Boot(arch, new MachineConfig(memory, 1));
        Assert.True(k.Mem.Count(FrameOwner.Free) > 0);
    }
}
