using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Engine.Smp;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// Steps named by the kernel action they stop after: every step an engine task takes is named,
/// `step cpuN to ACTION` and `step cpuN until done` stop where they say (interrupt handlers
/// delivered meanwhile run as under a count and never match), and StepNaming rewrites counted
/// lines into named ones only when the run stays the same.
/// </summary>
[Trait("Category", "harness")]
public class StepFormTests
{
    private static string Header(string variant = "default", string config = "x86_64-4k-l4", int cpus = 2) =>
        $"propertysuite-repro 1\nconfig {config}\nmemory 256M\ncpus {cpus}\nvariant {variant}\n";

    /// <summary>Runs <paramref name="body"/> and returns, after each operation, what the CPU's
    /// last step was (context, action) and whether that CPU's top context is done or gone.</summary>
    private static List<(string? Context, string? Action, bool Idle)> Trace(string body, int cpu, string variant = "default")
    {
        var seen = new List<(string?, string?, bool)>();
        var r = ScenarioRunner.Run(Repro.Parse(Header(variant) + body), trace: (_, _, k) =>
        {
            var c = k.Cpus[cpu];
            seen.Add((c.LastStepContext?.ToString(), c.LastStep.Action, c.Idle));
        });
        Assert.True(r.Violation is null, r.ToString());
        return seen;
    }

    [Fact]
    public void EveryStepAnEngineTaskTakesIsNamed()
    {
        // Generated scenarios of every variant: no step that made progress is unnamed, and every
        // name is one the repro language can write after `step cpuN to`.
        var budget = Budget.Parse(new Dictionary<string, string?>());
        var names = new SortedSet<string>(StringComparer.Ordinal);
        long steps = 0;
        foreach (var variant in KernelVariants.All)
        {
            var options = ScenarioOptions.For(variant.Name, budget);
            for (ulong seed = 1; seed <= 4; seed++)
            {
                var s = ScenarioGenerator.Build(seed * 0x9E3779B97F4A7C15UL, 60, options);
                var unnamed = new List<string>();
                ScenarioRunner.Run(s, booted: k =>
                {
                    foreach (var c in k.Cpus)
                        c.OnStep = (ctx, st) =>
                        {
                            steps++;
                            if (st.IsBlocked) return;
                            if (st.Action is not { } a) unnamed.Add(ctx.ToString());
                            else if (names.Add(a))
                                Assert.True(LineReader.IsActionName(a), $"{variant.Name}: '{a}' cannot be written as `step cpuN to {a}`");
                        };
                });
                Assert.True(unnamed.Count == 0, $"{variant.Name} seed {seed}: unnamed steps in {string.Join(", ", unnamed.Distinct())} of\n{s}");
            }
        }
        Assert.True(names.Count >= 30, $"only {names.Count} distinct actions seen: {string.Join(", ", names)}");
        Assert.True(steps > 1000, $"only {steps} steps taken");
    }

    [Fact]
    public void ToStopsRightAfterTheNamedStepOfTheContextOnTop()
    {
        var seen = Trace("p1 = filemap_add 65\ncpu1: start spec_lookup p1 64\nstep cpu1 to folio_try_get_rcu\nstep cpu1 to rcu_read_unlock\nstep cpu1 until done\n", cpu: 1);
        Assert.Equal((string?)"folio_try_get_rcu", seen[2].Action);
        Assert.False(seen[2].Idle);
        Assert.Equal((string?)"rcu_read_unlock", seen[3].Action);
        Assert.Equal((string?)StepStatus.ReturnAction, seen[4].Action);
        Assert.True(seen[4].Idle);
    }

    [Fact]
    public void ToAnActionThatNeverComesStopsWhenTheContextFinishes()
    {
        var seen = Trace("p1 = filemap_add 65\ncpu1: start spec_lookup p1 64\nstep cpu1 to no_such_action\nstep cpu1 to xa_load\n", cpu: 1);
        Assert.True(seen[2].Idle);
        Assert.Equal((string?)StepStatus.ReturnAction, seen[2].Action);
        Assert.Equal(seen[2], seen[3]); // the CPU is idle: a no-op
    }

    [Fact]
    public void NamedFormsStopWhenTheContextBlocks()
    {
        // synchronize_rcu waits for cpu1's reader: `to` a later action and `until done` both stop
        // at the first blocked step; once the reader has left, `until done` completes the grace period.
        var s = Repro.Parse(Header() + "cpu1: start rcu_reader 1\nstep cpu1 to rcu_read_lock\nstart synchronize_rcu\nstep cpu0 to no_such_action\nstep cpu0 until done\nstep cpu1 until done\nstep cpu0 until done\n");
        var log = new List<(bool Blocked, bool Idle, int GracePeriods)>();
        var r = ScenarioRunner.Run(s, trace: (i, op, k) => log.Add((k.Cpus[0].LastStep.IsBlocked, k.Cpus[0].Idle, k.Rcu.Completed.Count)));
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal((true, false, 0), log[3]);  // blocked, not done
        Assert.Equal((true, false, 0), log[4]);  // still blocked: one retry
        Assert.Equal((false, true, 1), log[6]);  // the reader has left: done
    }

    [Fact]
    public void AnInterruptDuringToRunsAsUnderACountAndItsStepsNeverMatch()
    {
        // cpu1's reader is interrupted before its first step by a handler that also takes and
        // leaves an RCU read-side section: the handler runs first, in full, and `to
        // rcu_read_unlock` stops at the reader's own unlock, not the handler's.
        const string body = "cpu1: start rcu_reader 1\nirq cpu1 rcu_reader 0\nstep cpu1 to rcu_read_unlock\nstep cpu1 until done\n";
        var seen = Trace(body, cpu: 1);
        Assert.Equal((string?)"rcu_read_unlock", seen[2].Action);
        Assert.Equal((string?)"cpu1 start rcu_reader 1", seen[2].Context);
        Assert.False(seen[2].Idle);
        Assert.True(seen[3].Idle);

        // The same schedule counted: the handler's three steps (lock, unlock, return), then the
        // reader's lock, read and unlock.
        var counted = Repro.Parse(Header() + body.Replace("step cpu1 to rcu_read_unlock", "step cpu1 6", StringComparison.Ordinal));
        Assert.Equal(ScenarioRunner.Run(Repro.Parse(Header() + body)).ToString(), ScenarioRunner.Run(counted).ToString());
        Assert.Equal(Repro.Parse(Header() + body).ToString(), StepNaming.NameSteps(counted).ToString());
    }

    [Fact]
    public void AStepLineOnAnIdleCpuIsANoOp()
    {
        var r = ScenarioRunner.Run(Repro.Parse(Header() + "step cpu1 until done\nstep cpu1 to xa_load\nstep cpu1 3\n"));
        Assert.True(r.Violation is null, r.ToString());
        Assert.False(r.OpsApplied.ContainsKey("step"));
    }

    [Fact]
    public void CountedLinesAreNamedWhereTheRunStaysTheSame()
    {
        // Matthew Wilcox's interleaving as counts (the schedule of the spec-get-pre-fix failure):
        // every line gets the named form that takes the same steps.
        const string counted =
            "p1 = filemap_add 65\ncpu1: start spec_lookup p1 64\nstep cpu1\ntruncate p1\nf1 = hugetlb_alloc 2M\nstep cpu1 2\nstep cpu1 4\nstep cpu0 40\n";
        const string named =
            "p1 = filemap_add 65\ncpu1: start spec_lookup p1 64\nstep cpu1 to xa_load\ntruncate p1\nf1 = hugetlb_alloc 2M\nstep cpu1 to folio_try_get_rcu\nstep cpu1 until done\nstep cpu0 until done\n";
        foreach (var variant in new[] { "default", "spec-get-pre-fix" })
        {
            var s = Repro.Parse(Header(variant) + counted);
            var result = StepNaming.NameSteps(s);
            Assert.Equal(Header(variant) + named, result.ToString());
            Assert.Equal(ScenarioRunner.Run(s).ToString(), ScenarioRunner.Run(result).ToString());
        }
        // A line that stops after the 3rd of 8 PTE remaps has no named form taking the same
        // steps; with no failure to keep, nothing else counts as the same run: it keeps its count.
        var mid = Repro.Parse(Header() + "start f1 = hugetlb_alloc 2M\nstep cpu0 18\n");
        Assert.Equal(mid.ToString(), StepNaming.NameSteps(mid).ToString());
    }
}
