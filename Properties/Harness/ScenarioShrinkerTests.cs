using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;
using Xunit.Abstractions;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// The scenario shrinker: pure and finite, cut after the failing step first, chunk removal,
/// configuration and operation simplification, canonical handles; and the greedy loop reaches
/// the bottom without cycling.
/// </summary>
[Trait("Category", "harness")]
public class ScenarioShrinkerTests(ITestOutputHelper output)
{
    private static Scenario Parse(string body, string config = "x86_64-4k-l4", string memory = "1G", int cpus = 4, string variant = "default") =>
        Repro.Parse($"propertysuite-repro 1\nconfig {config}\nmemory {memory}\ncpus {cpus}\nvariant {variant}\n{body}");

    [Fact]
    public void CandidatesAreFiniteDeterministicAndLeaveTheInputAlone()
    {
        foreach (ulong seed in Enumerable.Range(0, 40).Select(i => (ulong)i))
        {
            var s = ScenarioGenerator.Build(seed, 100, new ScenarioOptions());
            string before = s.ToString();
            var a = ScenarioShrinker.Candidates(s, s.Ops.Length / 2).Select(c => c.ToString()).ToList();
            var b = ScenarioShrinker.Candidates(s, s.Ops.Length / 2).Select(c => c.ToString()).ToList();
            Assert.Equal(a, b);
            Assert.Equal(before, s.ToString());
            Assert.DoesNotContain(before, a);
            Assert.InRange(a.Count, 1, 4 * s.Ops.Length + 64 + s.Ops.Sum(op => op.ShrinkArgs().Count() + 4));
        }
    }

    [Fact]
    public void TheCutAfterTheFailingStepComesFirstThenHalves()
    {
        var s = Parse("v1 = vmalloc 8K\nread v1 0\nvfree v1\nsynchronize_rcu\nfree_empty_tables\nrcu_reader 1\n");
        var c = ScenarioShrinker.Candidates(s, failingStep: 3).Take(3).ToList();
        Assert.Equal(["vmalloc", "read", "vfree"], c[0].Ops.Select(o => o.Verb));
        Assert.Equal(["synchronize_rcu", "free_empty_tables", "rcu_reader"], c[1].Ops.Select(o => o.Verb));
        Assert.Equal(["vmalloc", "read", "vfree"], c[2].Ops.Select(o => o.Verb));
        Assert.DoesNotContain(ScenarioShrinker.Candidates(s, failingStep: 6), x => x.Ops.Length == 6 && x.Machine == s.Machine && x.Arch == s.Arch && x.ToString() == s.ToString());
    }

    [Fact]
    public void IdleCpusAreRemovedAndTheRestRenumbered()
    {
        var s = Parse("cpu2: start rcu_reader 1\nstep cpu2\nsynchronize_rcu\n");
        var compact = ScenarioShrinker.ConfigurationCandidates(s).First();
        Assert.Equal(2, compact.Machine.Cpus);
        Assert.Equal("cpu1: start rcu_reader 1\nstep cpu1\nsynchronize_rcu\n", string.Concat(compact.Ops.Select(o => o + "\n")));
    }

    [Fact]
    public void ConfigurationShrinksTowardsFewerCpusLessMemoryAnd4K()
    {
        var s = Parse("cpu3: read_page 0\n", config: "arm64-16k-l3", memory: "1G");
        var c = ScenarioShrinker.ConfigurationCandidates(s).ToList();
        Assert.Contains(c, x => x.Machine.Cpus == 1 && x.Ops.Length == 0);
        Assert.Contains(c, x => x.Machine.Cpus == 1 && x.Ops.Single().Cpu == 0);
        Assert.Contains(c, x => x.Machine.MemoryBytes == 256L << 20);
        Assert.Contains(c, x => x.Arch.Name == "x86_64-4k-l4");
        Assert.All(c, x => Assert.True(ScenarioGenerator.IsValid(x.Arch, x.Machine), x.ToString()));
        Assert.DoesNotContain(ScenarioShrinker.ConfigurationCandidates(Parse("", cpus: 1, memory: "256M")), _ => true);
    }

    [Fact]
    public void OperationsSimplify()
    {
        var s = Parse("v4 = vmalloc 64K\ncpu1: start read v4 8K\nirq cpu2 read_page 0x40\nv9 = vmalloc 8K\n");
        var texts = ScenarioShrinker.Candidates(s).Select(c => string.Concat(c.Ops.Select(o => o + "|"))).ToList();
        Assert.Contains("v4 = vmalloc 4K|cpu1: start read v4 8K|irq cpu2 read_page 0x40|v9 = vmalloc 8K|", texts);
        Assert.Contains("v4 = vmalloc 64K|start read v4 8K|irq cpu2 read_page 0x40|v9 = vmalloc 8K|", texts);
        Assert.Contains("v4 = vmalloc 64K|cpu1: read v4 8K|irq cpu2 read_page 0x40|v9 = vmalloc 8K|", texts);
        Assert.Contains("v4 = vmalloc 64K|cpu1: start read v4 8K|cpu2: read_page 0x40|v9 = vmalloc 8K|", texts);
        Assert.Contains("v4 = vmalloc 64K|cpu1: start read v4 8K|irq cpu2 read_page 0x40|vmalloc 8K|", texts);
        Assert.Contains("v1 = vmalloc 64K|cpu1: start read v1 8K|irq cpu2 read_page 0x40|v2 = vmalloc 8K|", texts);
        Assert.DoesNotContain(s.ToString(), ScenarioShrinker.Candidates(s).Select(c => c.ToString()));
    }

    [Fact]
    public void CanonicalHandlesAreNullWhenAlreadyCanonical()
    {
        Assert.Null(ScenarioShrinker.CanonicalHandles(Parse("v1 = vmalloc 8K\nv2 = vmalloc 8K\nvfree v2\n")));
        var renamed = ScenarioShrinker.CanonicalHandles(Parse("read v5 0\nv5 = vmalloc 8K\nv2 = vmalloc 8K\nvfree v2\n"))!;
        Assert.Equal("read v1 0|v1 = vmalloc 8K|v2 = vmalloc 8K|vfree v2|", string.Concat(renamed.Ops.Select(o => o + "|")));
    }

    /// <summary>With a check that always fails, the greedy loop must reach the very bottom:
    /// no operations, one CPU, the least memory, the simplest configuration. If any candidate
    /// were not smaller, this would not terminate.</summary>
    [Fact]
    public void GreedyLoopReachesTheBottomWithoutCycling()
    {
        foreach (ulong seed in Enumerable.Range(0, 20).Select(i => (ulong)i))
        {
            var s = ScenarioGenerator.Build(seed, 100, new ScenarioOptions());
            var bottom = ScenarioShrinker.Minimize(s, s.Ops.Length, _ => 0, 100_000, out int attempts, out _);
            Assert.Empty(bottom.Ops);
            Assert.Equal(1, bottom.Machine.Cpus);
            Assert.Equal(ScenarioGenerator.MinMemory(bottom.Arch), bottom.Machine.MemoryBytes);
            // The simplest configuration the variant allows: x86-64 4K when any, the 4K
            // 3-level one when it allows every arm64 configuration, else the one it names.
            Assert.Equal(bottom.Variant.Arch switch { null => "x86_64-4k-l4", "arm64" => "arm64-4k-l3", var named => named }, bottom.Arch.Name);
            Assert.True(attempts < 100, $"{attempts} attempts");
        }
    }

    /// <summary>Shrinking toward one operation kind: whatever contains a synchronize_rcu "fails";
    /// the loop ends at exactly one plain `synchronize_rcu` on the smallest machine.</summary>
    [Fact]
    public void GreedyLoopKeepsWhatTheFailureNeeds()
    {
        var s = ScenarioGenerator.Build(3, 100, new ScenarioOptions());
        s = s with { Ops = s.Ops.Add(new SynchronizeRcuOp { Cpu = s.Machine.Cpus - 1, Start = true }) };
        var shrunk = ScenarioShrinker.Minimize(s, s.Ops.Length, c => c.Ops.Any(o => o is SynchronizeRcuOp) ? c.Ops.Length : null, 100_000, out _, out _);
        Assert.Equal("synchronize_rcu", Assert.Single(shrunk.Ops).ToString());
        Assert.Equal(1, shrunk.Machine.Cpus);
    }

    /// <summary>Through FsCheck's own shrink loop (ScenarioProperty), the planted bug shrinks
    /// exactly as through Minimize: same shrinks, same result. FsCheck calls the shrinker on a
    /// candidate before running it, so a failing step looked up too early would silently lose
    /// the cut after it (and double the runs).</summary>
    [Fact]
    public void FsCheckShrinkLoopCutsAfterTheFailingStepLikeMinimize()
    {
        var planted = ScenarioShrinkBenchmark.Plant(300, 7);
        var first = ScenarioRunner.Run(planted);
        ScenarioShrinker.Minimize(planted, first.Step, c => ScenarioRunner.Run(c) is { FailedInvariant: ScenarioShrinkBenchmark.Invariant } r ? r.Step : null,
            100_000, out int attempts, out int shrinks);

        var budget = Budget.Parse(new Dictionary<string, string?> { ["PS_TESTS"] = "1" });
        var result = ScenarioProperty.Check("ScenarioShrinkerTests.Planted", FsCheck.Fluent.Gen.Constant(planted), new ScenarioOptions(), budget);

        var f = result.Failure!;
        Assert.Equal(["vmalloc", "read", "vfree"], f.Shrunk.Ops.Select(o => o.Verb));
        Assert.Equal(shrinks, f.Shrinks);
        output.WriteLine($"{attempts} candidate runs, {shrinks} shrinks");
    }

    [Fact]
    public void ShrinkBenchmarkThroughTheRealShrinkerReachesTheThreePlantedSteps()
    {
        var log = new StringWriter();
        // One trial at 1,000 steps keeps `dotnet test` (Debug) short; every size and trial, in
        // Release: `dotnet run --project Cli -c Release -- shrink-bench`.
        var rows = ScenarioShrinkBenchmark.Run(log, trialsPerSize: 1, warmUp: false, sizes: [1_000]);
        output.WriteLine(log.ToString());
        Assert.Single(rows);
        Assert.All(rows, r => Assert.Equal("v1 = vmalloc 4K; read v1 0; vfree v1", r.Shrunk));
    }
}
