// Generation of the window inside one HVO batch (mm/hugetlb_vmemmap.c
// hugetlb_vmemmap_optimize_folios, reached from set_max_huge_pages through
// prep_and_add_allocated_folios): the batch first splits the vmemmap PMD blocks of every new
// folio without a flush of its own (VMEMMAP_SPLIT_NO_TLB_FLUSH), flushes the whole TLB once, and
// only then remaps the PTEs under them. A CPU that cached a PMD block entry of that vmemmap
// before the split must not see the remapped PTEs beside it; the window in which that could go
// wrong is a few steps wide, and the random families almost never put a table walk of the right
// address on the right CPU inside it.
//
// The plan, once per scenario: grow a HugeTLB pool by one or two folios as a task (the task
// writes the new folios' struct pages through its CPU, which caches the vmemmap block entry
// there), step it one action at a time until a vmemmap PTE of the batch has been changed and is
// still awaiting its flush while some CPU's TLB holds a larger entry over that address, then run
// a speculative table walk (prefetch_page) of that address on that CPU (from an interrupt when
// the CPU is running the task). What a correct kernel gives: the block entry was flushed before
// any PTE changed, so the walk fills an entry that nothing contradicts.
//
// Measured (Bench `find rates 1200 broken-hvo-batch-split-skips-flush`, default budget): with
// the family in the random mix, 6.00 % of scenarios find the breakage; in focus, 12.17 %;
// without the family, 0.25 %.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Generators.Families;

/// <summary>A table walk inside the split-flush-remap window of one HVO batch.</summary>
public sealed class HvoBatchWindowFamily : IOpFamily
{
    public string Name => "hvo_batch_window";

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
        return new HugetlbPoolOp(size, h.NrHugePages + rng.Range(1, 2)) { Cpu = idle[rng.Next(idle.Count)], Start = true };
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
        return new StepOp(1) { Cpu = t.Op.Cpu };
    }

    /// <summary>A vmemmap leaf changed and not yet flushed, and a CPU whose TLB holds a larger
    /// entry over its address (the engine's pending flushes and TLBs, read as they are).</summary>
    private static (int Cpu, ulong Va)? Window(GenState s)
    {
        var a = s.Arch;
        foreach (var p in s.Engine.Tlb.PendingFlushes)
        {
            if (p.Mm != "init_mm" || !p.New.IsLeaf || p.EntryVa < a.VmemmapStart || p.EntryVa >= a.VmemmapEnd) continue;
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
