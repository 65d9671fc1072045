// The ranged ptdump (`ptdump linear|vmemmap PHYS SIZE`, Engine/Scenario/HotplugOps.cs): printed
// as written and parsed back, malformed forms refused with their column, shrunk towards the
// plain walk of init_mm and then smaller ranges; the walk enters only the tables that map the
// range (mm/ptdump.c ptdump_walk_pgd walks st->range) and holds them as the full walk does.
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Hotplug;

[Trait("Category", "hotplug")]
public class PtdumpRangeTests
{
    private const string Header = "propertysuite-repro 1\nconfig arm64-4k-l4\nmemory 1G\ncpus 2\nhotplug 256M\nvariant default\n";

    [Fact]
    public void EveryFormPrintsExactlyAsWrittenAndParsesBack()
    {
        string body = """
            ptdump
            cpu1: start ptdump linear 0x40000000 128M
            ptdump vmemmap 0x48000000 2M

            """;
        var s = Repro.Parse(Header + body);
        Assert.Equal(Header + body, s.ToString());
        Assert.Equal(new PtdumpOp(), s.Ops[0]);
        Assert.Equal(new PtdumpOp(PtdumpRange.Linear, 0x40000000, 128L << 20) { Cpu = 1, Start = true }, s.Ops[1]);
        Assert.Equal(new PtdumpOp(PtdumpRange.Vmemmap, 0x48000000, 2L << 20), s.Ops[2]);
        Assert.Equal(s.ToString(), Repro.Parse(s.ToString()).ToString());
    }

    [Theory]
    [InlineData("ptdump linear", 14)]                 // no address
    [InlineData("ptdump linear 0x40000000", 25)]      // no size
    [InlineData("ptdump direct 0x40000000 128M", 8)]  // neither linear nor vmemmap
    [InlineData("ptdump vmemmap 0x40000000 0", 27)]   // an empty range
    [InlineData("ptdump linear 0x0 128M x", 24)]      // trailing word
    public void MalformedFormsAreRefusedWithTheirColumn(string line, int column)
    {
        var e = Assert.Throws<ReproParseException>(() => Repro.Parse(Header + line + "\n"));
        Assert.Equal(7, e.Line);
        Assert.Equal(column, e.Column);
    }

    [Fact]
    public void ShrinksTowardsThePlainWalkThenSmallerRanges()
    {
        var op = new PtdumpOp(PtdumpRange.Linear, 0x40000000, 512L << 20) { Cpu = 1, Start = true };
        var smaller = op.ShrinkArgs().ToList();
        Assert.Equal(new PtdumpOp() { Cpu = 1, Start = true }, smaller[0]);
        Assert.Equal([2L << 20, 128L << 20], smaller.Skip(1).Cast<PtdumpOp>().Select(o => o.Size));
        Assert.All(smaller.Skip(1).Cast<PtdumpOp>(), o => Assert.Equal((PtdumpRange.Linear, 0x40000000L), (o.Range, o.Phys)));
        Assert.Empty(new PtdumpOp().ShrinkArgs());
    }

    /// <summary>The walk of the hot block's linear map or vmemmap holds only tables that map
    /// that range (and the root), and takes fewer steps than the whole walk, which holds the
    /// same tables among others.</summary>
    [Theory]
    [InlineData(PtdumpRange.Linear)]
    [InlineData(PtdumpRange.Vmemmap)]
    public void TheRangedWalkEntersOnlyTheTablesOfItsRange(PtdumpRange range)
    {
        Engine.Kernel? last = null;
        ScenarioRunner.Run(Repro.Parse(Header + "add_memory 0x40000000 128M\n"), trace: (_, _, k) => last = k);
        var k = last!;
        var ranged = new PtdumpOp(range, 0x40000000, 128L << 20);
        var (first, end) = ranged.Addresses(k);
        var (inRange, rangedSteps) = Walk(k, ranged);
        Assert.NotEmpty(inRange);
        foreach (var t in inRange.Where(t => t != k.SwapperPgDir.Root))
            Assert.True(t.BaseVa <= end && t.BaseVa + (ulong)t.Entries.Length * (ulong)k.Arch.LevelSize(t.Level) - 1 >= first, $"{t.Level} table at {t.BaseVa:x} is outside the range");
        var (all, allSteps) = Walk(k, new PtdumpOp());
        Assert.Subset(all, inRange);
        Assert.True(rangedSteps < allSteps, $"{rangedSteps} steps, the whole walk {allSteps}");
    }

    /// <summary>Runs the walk on cpu1 a step at a time: every table it held and its steps.</summary>
    private static (HashSet<Engine.Mm.PtTable> Held, int Steps) Walk(Engine.Kernel k, PtdumpOp op)
    {
        var task = op.CreateTask(new RunContext(k))!;
        Assert.True(k.Sched.StartTask(1, task));
        var held = new HashSet<Engine.Mm.PtTable>();
        int steps = 0;
        while (!k.Cpus[1].Idle)
        {
            k.Sched.StepCpu(1);
            steps++;
            held.UnionWith(k.Hotplug.Walkers.Held.Select(h => h.Table));
            Assert.True(steps < 100_000);
        }
        Assert.Empty(k.Hotplug.Walkers.Held);
        return (held, steps);
    }

    /// <summary>The race of HotplugProperties.PtdumpHoldsOffTheTeardownOnlyUnderGetOnlineMems with
    /// the walk limited to the block's linear map: the walk holds the block's own PMD table.</summary>
    [Theory]
    [InlineData("ptdump-without-get-online-mems", "arm64-4k-l4")]
    [InlineData("broken-remove-skips-mem-hotplug-begin", "x86_64-4k-l4")]
    public void ARangedWalkInsideTheBlockCatchesTheTeardown(string variant, string config)
    {
        const string race = "add_memory 0x40000000 128M\ncpu1: start ptdump linear 0x40000000 128M\nstep cpu1 to ptdump_pmd_entry\nremove_memory 0x40000000 128M\nstep cpu1 until done\nstep cpu0 until done\n";
        string head = Header.Replace("config arm64-4k-l4", $"config {config}");
        var bad = ScenarioRunner.Run(Repro.Parse(head.Replace("variant default", $"variant {variant}") + race));
        Assert.Equal(nameof(NoWalkerHoldsFreedTable), bad.FailedInvariant);
        var good = ScenarioRunner.Run(Repro.Parse(head + race));
        Assert.True(good.Violation is null, good.ToString());
        Assert.Equal(1, good.Reached.GetValueOrDefault("memory_hotplug.remove_memory.Ok"));
    }
}
