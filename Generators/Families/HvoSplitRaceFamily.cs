// Generation of one interleaving the other families almost never make (issue 9's reach list:
// about once in 1,200 scenarios): two HugeTLB allocations whose HVO splits the same vmemmap PMD,
// started on two CPUs back to back and then stepped alternately, one kernel action each. Both
// walks then find the PMD still a block, both allocate a PTE table (pte_alloc_one_kernel), and
// the second to take init_mm.page_table_lock finds the PMD already split and frees its table
// (vmemmap_split_pmd in mm/hugetlb_vmemmap.c: the `hvo.split_raced` state). Measured by hand-
// written repros on x86_64-4k-l4: the race is reached when the second task starts within one
// step of the first; a lag of two or more steps lets the first install its table before the
// second walks.
//
// The plan runs once per scenario, while no HVO has split a vmemmap PMD yet (the engine's
// `hvo.split_pmd` count; after a split the PMD the two folios would share is likely a table
// already, and there is no race).
// Once two allocation tasks run, the family mostly steps each to its PTE-table allocation
// (`step cpuN to pte_alloc_one_kernel`, so a repro names the window), then each until done;
// otherwise it steps them one action each in turn. A high weight keeps the plan together; the
// schedule and HugeTLB families still act between its steps, which is how other CPUs' actions
// land inside the window.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;

namespace PropertySuite.Generators.Families;

/// <summary>Two concurrent HVO splits of one vmemmap PMD.</summary>
public sealed class HvoSplitRaceFamily : IOpFamily
{
    public string Name => "hvo_split_race";

    public bool AppliesTo(ArchConfig arch, NamedVariant variant) => arch.HugetlbSizes.Any(z => arch.VmemmapPagesPerFolio(z) > 1);

    private static List<StartedTask> RunningAllocations(GenState s) => [.. s.Tasks.Where(t => !t.Done && t.Op is HugetlbAllocOp)];

    public int Weight(GenState s)
    {
        if (s.Machine.Cpus < 2 || Size(s) is null) return 0;
        var running = RunningAllocations(s);
        if (running.Count >= 2) return 400;
        if (running.Count == 1 && s.Ops is [.., HugetlbAllocOp { Start: true }] && s.IdleCpus.Count > 0) return 400;
        // Once per scenario, while no HVO has split a vmemmap PMD yet (the engine says so).
        return s.IdleCpus.Count >= 2 && running.Count == 0 && !s.Ops.Any(o => o is HugetlbAllocOp { Start: true })
            && s.Engine.Log.Reached.GetValueOrDefault("hvo.split_pmd") == 0 ? 12 : 0;
    }

    /// <summary>The action after which a task has allocated its PTE table for the split and
    /// not yet taken init_mm.page_table_lock: both tasks stopped there are inside the race.</summary>
    public const string SplitAllocated = "pte_alloc_one_kernel";

    public Op? Next(GenState s, Prng rng)
    {
        var running = RunningAllocations(s);
        if (running.Count >= 2)
        {
            int a = running[0].Op.Cpu, b = running[1].Op.Cpu;
            var since = s.Ops.Skip(running[1].OpIndex + 1).OfType<StepOp>().ToList();
            // Mostly the named plan: each to its table allocation, then each to the end; else
            // one step each in turn.
            if (since.Count == 0 && rng.Chance(25)) return new StepOp(1) { Cpu = a };
            if (since.Count == 0 || since.All(o => o.ToAction == SplitAllocated))
            {
                if (since.Count == 0) return StepOp.To(a, SplitAllocated);
                if (since.Count == 1) return StepOp.To(b, SplitAllocated);
                return StepOp.UntilDone(since.Count % 2 == 0 ? a : b);
            }
            if (since.Any(o => o.Until == StepUntil.Done)) return StepOp.UntilDone(since[^1].Cpu == a ? b : a);
            return new StepOp(1) { Cpu = since[^1].Cpu == a ? b : a };
        }
        var idle = s.IdleCpus;
        if (idle.Count == 0 || Size(s) is not { } size) return null;
        string h = s.FreshHandle('f');
        s.AddLive(h);
        return new HugetlbAllocOp(size) { Cpu = idle[rng.Next(idle.Count)], Start = true, Bind = h };
    }

    /// <summary>The smallest size whose HVO remaps vmemmap (so it splits the PMD) and of which
    /// two fit in memory; null if none.</summary>
    private static long? Size(GenState s) =>
        s.Arch.HugetlbSizes.Where(z => s.Arch.VmemmapPagesPerFolio(z) > 1 && 2 * z <= s.Machine.MemoryBytes).Order().Cast<long?>().FirstOrDefault();
}
