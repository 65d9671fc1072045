using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Core;

/// <summary>
/// Hand-written scenarios for the core invariants: each deliberately broken engine path is caught
/// by the invariant it targets, at the step where the damage becomes observable, and the correct
/// kernel runs the same scenario clean. (Random generation finding them is in the meta-tests.)
/// </summary>
[Trait("Category", "core")]
public class CoreInvariantExamples
{
    private static string Header(string variant, int cpus = 2) =>
        $"propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus {cpus}\nvariant {variant}\n";

    [Theory]
    [InlineData("broken-vfree-leaks-page", "v1 = vmalloc 8K\nvfree v1\n", "FrameConservation", 2)]
    [InlineData("broken-vunmap-skips-last-pte", "v1 = vmalloc 8K\nvfree v1\n", "NoLeafMapsFreeFrame", 2)]
    [InlineData("broken-vunmap-skips-flush", "v1 = vmalloc 8K\ncpu1: read v1 0\nvfree v1\n", "TlbCoherentAfterFlush", 3)]
    [InlineData("broken-free-table-keeps-parent", "v1 = vmalloc 8K\nvfree v1\nfree_empty_tables\n", "PageTableTreeWellFormed", 3)]
    [InlineData("broken-synchronize-rcu-no-wait", "cpu1: start rcu_reader 2\nstep cpu1\nsynchronize_rcu\n", "RcuGracePeriodWaitsForReaders", 3)]
    public void BrokenCorePathIsCaught(string variant, string body, string invariant, int step)
    {
        var broken = Repro.Parse(Header(variant) + body);
        var r = ScenarioRunner.Run(broken);
        Assert.Equal(invariant, r.FailedInvariant);
        Assert.Equal(step, r.Step);

        var correct = Repro.Parse(Header("default") + body);
        var ok = ScenarioRunner.Run(correct);
        Assert.True(ok.Violation is null, ok.ToString());
    }

    [Fact]
    public void SynchronizeRcuWaitsForAnEarlierReaderAndCompletesAfterIt()
    {
        var s = Repro.Parse(Header("default") + "cpu1: start rcu_reader 1\nstep cpu1 to rcu_read_lock\nstart synchronize_rcu\nstep cpu0 until done\nstep cpu1 until done\nstep cpu0 until done\n");
        var r = ScenarioRunner.Run(s, trace: (i, op, k) =>
        {
            if (i == 5) Assert.Empty(k.Rcu.Completed);       // reader still inside: GP pending
        });
        Assert.True(r.Violation is null, r.ToString());
    }

    [Fact]
    public void FreeEmptyTablesFreesTheVmallocPteTableOnceEmpty()
    {
        var s = Repro.Parse(Header("default") + "v1 = vmalloc 8K\nvfree v1\nfree_empty_tables\n");
        int tablesAfterVmalloc = 0, tablesAfterFree = 0;
        ScenarioRunner.Run(s, trace: (i, op, k) =>
        {
            if (i == 1) tablesAfterVmalloc = k.SwapperPgDir.Tables.Count;
            if (i == 3) tablesAfterFree = k.SwapperPgDir.Tables.Count;
        });
        Assert.True(tablesAfterVmalloc > tablesAfterFree, $"{tablesAfterVmalloc} -> {tablesAfterFree}");
    }
}
