// Generation of the window inside one HVO batch (mm/hugetlb_vmemmap.c
// hugetlb_vmemmap_optimize_folios, reached from set_max_huge_pages through
// prep_and_add_allocated_folios): the batch first splits the vmemmap PMD blocks of every new
// folio without a flush of its own (VMEMMAP_SPLIT_NO_TLB_FLUSH), flushes the whole TLB once, and
// only then remaps the PTEs under them. A CPU that cached a PMD block entry of that vmemmap
// before the split must not see the remapped PTEs beside it; the window in which that could go
// wrong is a few steps wide, and the random families almost never put a table walk of the right
// address on the right CPU inside it.
//
// The plan, once per scenario: grow a HugeTLB pool by one folio as a task (the task
// writes the new folios' struct pages through its CPU, which caches the vmemmap block entry
// there), step it one action at a time until a vmemmap PTE of the batch has been changed and is
// still awaiting its flush while some CPU's TLB holds a larger entry over that address, then run
// a speculative table walk (prefetch_page) of that address on that CPU (from an interrupt when
// the CPU is running the task). Once the remap has begun with no CPU holding a block over it,
// the window stayed shut (as in a correct kernel, where the block entry was flushed before any
// PTE changed) and the plan ends, leaving the task to the schedule.
//
// A window plan (IOpFamily.WindowPlan): in the search for another buggy variant it stays off.
// Measured before that rule: the plan (a pool grown at any point) took spec.drop_on_mismatch,
// which muchun-drop-on-mismatch's search reaches in about 2 of 600 scenarios, to 0 of 2,400.
//
// Measured (Bench `find rates 1200 broken-hvo-batch-split-skips-flush`, the family in focus,
// default budget): 148 found, 12.33 %; without the family 0.25 % (an earlier measurement).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Generators.Families;

/// <summary>A table walk inside the split-flush-remap window of one HVO batch.</summary>
public sealed class HvoBatchWindowFamily : IOpFamily
{
    public string Name => "hvo_batch_window";

    /// <summary>A plan for one window: in a search for another buggy variant it stays off.</summary>
    public bool WindowPlan => true;

    public bool AppliesTo(ArchConfig arch, NamedVariant variant) => arch.HugetlbSizes.Any(z => arch.VmemmapPagesPerFolio(z) > 1);

    public int Weight(GenState s)
    {
        if (Running(s) is { } t) return PlanStep(s, t) is null ? 0 : 400;
        return s.IdleCpus.Count > 0 && Size(s) is not null && !s.Ops.Any(o => o is HugetlbPoolOp { Start: true }) ? 12 : 0;
    }

    public Op? Next(GenState s, Prng rng)
    {
        if (Running(s) is { } t) return PlanStep(s, t);
        var idle = s.IdleCpus;
        if (idle.Count == 0 || Size(s) is not { } size) return null;
        var h = s.Engine.Hugetlb.SizeToHstate(size);
        if (h is null) return null;
        return new HugetlbPoolOp(size, h.NrHugePages + 1) { Cpu = idle[rng.Next(idle.Count)], Start = true };
    }

    /// <summary>The pool task this plan started, while it runs.</summary>
    private static StartedTask? Running(GenState s) =>
        s.Tasks.FirstOrDefault(t => !t.Done && t.Op is HugetlbPoolOp { Start: true });

    /// <summary>The next operation of the plan for the running pool task: the walk once the
    /// window is open, else one more action of the task; null once the walk was made.</summary>
    private static Op? PlanStep(GenState s, StartedTask t)
    {
        var since = s.Ops.Skip(t.OpIndex + 1).ToList();
        if (since.Any(o => o is PrefetchPageOp || o is IrqOp { Handler: PrefetchPageOp })) return null;
        if (Window(s) is { } w)
        {
            var walk = new PrefetchPageOp(s.Arch.PageToPfn(w.Va));
            return s.Engine.Cpus[w.Cpu].Idle ? walk with { Cpu = w.Cpu } : new IrqOp(walk with { Cpu = 0 }) { Cpu = w.Cpu };
        }
        // The remap has begun and no CPU holds a block over it: the window stayed shut (as in a
        // correct kernel); the plan ends and leaves the task to the schedule.
        if (RemapPending(s)) return null;
        return new StepOp(1) { Cpu = t.Op.Cpu };
    }

    private static bool RemapPending(GenState s) => VmemmapLeafChanges(s).Any();

    private static IEnumerable<PendingFlush> VmemmapLeafChanges(GenState s) =>
        s.Engine.Tlb.PendingFlushes.Where(p => p.Mm == "init_mm" && p.New.IsLeaf && p.EntryVa >= s.Arch.VmemmapStart && p.EntryVa < s.Arch.VmemmapEnd);

    /// <summary>A vmemmap leaf changed and not yet flushed, and a CPU whose TLB holds a larger
    /// entry over its address (the engine's pending flushes and TLBs, read as they are).</summary>
    private static (int Cpu, ulong Va)? Window(GenState s)
    {
        var a = s.Arch;
        foreach (var p in VmemmapLeafChanges(s))
        {
            foreach (var cpu in s.Engine.Cpus)
                foreach (var e in cpu.Tlb.Entries)
                    if (e.Asid == TlbEntry.Global && e.Size > (ulong)a.PageSize && e.Va <= p.EntryVa && p.EntryVa < e.Va + e.Size)
                        return (cpu.Id, p.EntryVa);
        }
        return null;
    }

    /// <summary>The smallest size whose HVO remaps vmemmap and of which two more fit in memory.</summary>
    private static long? Size(GenState s) =>
        s.Arch.HugetlbSizes.Where(z => s.Arch.VmemmapPagesPerFolio(z) > 1 && 2 * z <= s.Machine.MemoryBytes).Order().Cast<long?>().FirstOrDefault();
}
