// Hand-written scenarios for vmalloc's page-table population as a task (Engine/Mm/VmapRange.cs):
// two vmallocs on different CPUs that both find a table missing and both allocate a page for it
// before either takes init_mm.page_table_lock. The kernel's re-check under the lock makes the
// second free its page (pud_free under the lock, pte_free_kernel after it) and map into the
// first's table; without it (broken-vmalloc-populate-skips-lock-recheck) the first's table is
// overwritten, and general invariants see the leaked table and the lost mapping.
using PropertySuite.Engine;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Vmalloc;

[Trait("Category", "vmalloc")]
public class PopulateRaceExamples
{
    private static string Race(string variant, string config, string size) =>
        $"propertysuite-repro 1\nconfig {config}\nmemory {(config.StartsWith("arm64-64k", StringComparison.Ordinal) ? "512M" : "256M")}\ncpus 2\nvariant {variant}\n" +
        $"cpu0: start v1 = vmalloc {size}\nstep cpu0\ncpu1: start v2 = vmalloc 4K\nstep cpu1\nstep cpu0 until done\nstep cpu1 until done\nread v1 0\nread v2 0\n";

    [Theory]
    [InlineData("x86_64-4k-l4", "4K")]
    [InlineData("arm64-4k-l4", "4K")]
    [InlineData("x86_64-4k-l5", "4K")]
    [InlineData("arm64-64k-l3", "64K")]
    [InlineData("arm64-16k-l2", "16K")]
    public void BothAllocateBeforeEitherLocksAndTheLoserFreesItsPage(string config, string size)
    {
        var s = Repro.Parse(Race("default", config, size));
        var k = s.Boot();
        var run = new ScenarioExecution(k, InvariantRegistry.All);
        long tablesBefore = k.SwapperPgDir.Tables.Count;
        string? firstAlloc = null, secondAlloc = null;
        var ops = s.Ops.ToList();
        for (int i = 0; i < ops.Count; i++)
        {
            Assert.True(run.Step(ops[i]), run.Outcome.ToString());
            if (i == 1) firstAlloc = k.Cpus[0].LastStep.Action;
            if (i == 3) secondAlloc = k.Cpus[1].LastStep.Action;
        }
        // Each stopped right after allocating its page for the same missing table, with no lock held.
        Assert.Equal(firstAlloc, secondAlloc);
        Assert.Contains(firstAlloc, new[] { "pte_alloc_one_kernel", "pmd_alloc_one", "pud_alloc_one", "p4d_alloc_one" });
        Assert.True(run.Handles.TryGet<VmArea>("v1", out var v1));
        Assert.True(run.Handles.TryGet<VmArea>("v2", out var v2));
        // The second descended into the first's tables: one PTE table maps both areas, and the
        // pages of the loser's tables went back to the allocator (no table leaked).
        Assert.Same(k.SwapperPgDir.Walk(v1.Addr).Table, k.SwapperPgDir.Walk(v2.Addr).Table);
        Assert.True(k.SwapperPgDir.Tables.Count - tablesBefore == k.Arch.Levels - 1,
            $"{k.SwapperPgDir.Tables.Count - tablesBefore} tables added for one path below the root");
        Assert.Null(k.InitMm.PageTableLock.Holder);
    }

    [Theory]
    [InlineData("x86_64-4k-l4")]
    [InlineData("arm64-4k-l4")]
    public void WithoutTheRecheckTheSecondOverwritesTheFirstsTable(string config)
    {
        var r = ScenarioRunner.Run(Repro.Parse(Race("broken-vmalloc-populate-skips-lock-recheck", config, "4K")));
        Assert.True(r.FailedInvariant == "PageTableTreeWellFormed", r.ToString());
        Assert.Equal(6, r.Step);
        Assert.Contains("no entry points at it", r.Violation!.Evidence);

        // While the second still runs, the orphan is not judged, but the first's page is unmapped.
        var mapped = ScenarioRunner.Run(Repro.Parse(Race("broken-vmalloc-populate-skips-lock-recheck", config, "4K").Replace("step cpu1 until done\n", "step cpu1 to spin_unlock(init_mm.page_table_lock)\n")),
            [InvariantRegistry.ByName("VmallocMappingsExact"), InvariantRegistry.ByName("PageTableTreeWellFormed")]);
        Assert.True(mapped.FailedInvariant == "VmallocMappingsExact", mapped.ToString());
        Assert.Contains("is not mapped", mapped.Violation!.Evidence);
    }

    [Fact]
    public void ASynchronousCallerRefusesToWaitForTheLock()
    {
        var k = Engine.Kernel.Boot(Engine.Config.ArchConfig.X86_64_4K, new Engine.Config.MachineConfig(256L << 20, 2));
        var task = new Engine.Smp.LambdaTask("vmalloc", (kk, ctx) =>
            kk.Vmalloc.VmallocNodeRange(ctx, 4096, 4096, VmFlags.None, writable: true, new Ret<(VmArea? Area, Errno Err)>()));
        Assert.True(k.Sched.StartTask(0, task));
        Engine.Smp.CpuStepping.StepUntil(k, 0, "spin_lock(init_mm.page_table_lock)");
        Assert.Same(k.Cpus[0].Top, k.InitMm.PageTableLock.Holder);
        var e = Assert.Throws<ModelBugException>(() => k.Vmalloc.VmallocNodeRange(4096));
        Assert.Contains("init_mm.page_table_lock", e.Message);
    }
}
