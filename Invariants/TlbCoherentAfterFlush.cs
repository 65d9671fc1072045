using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// After a completed flush no TLB holds a translation that disagrees with the page table. A
/// cached translation may differ from init_mm only over a range whose change has not been flushed
/// yet by a task that is still running; once the changing code path has finished, every change
/// it made must have been flushed from every CPU that could have cached it. Source: KERNEL-MODEL.md
/// INV-4; flush_tlb_kernel_range in mm/vmalloc.c, mm/hugetlb_vmemmap.c, arch/arm64/mm/mmu.c; S003
/// (the under-sized flush range).
/// </summary>
public sealed class TlbCoherentAfterFlush : IInvariant
{
    public string Name => nameof(TlbCoherentAfterFlush);
    public string Claim => "every TLB entry agrees with init_mm, except over an unflushed change of a task still running";
    public string Source => "KERNEL-MODEL.md INV-4; flush_tlb_kernel_range; S003";

    public Violation? Check(Kernel k)
    {
        foreach (var cpu in k.Cpus)
            foreach (var e in cpu.Tlb.Entries)
            {
                var w = k.SwapperPgDir.Walk(e.Va);
                bool agrees = w.IsLeaf && k.SwapperPgDir.EntryVa(w.Table, w.Index) == e.Va && k.SwapperPgDir.EntrySize(w.Table) == e.Size
                    && w.Entry.Pfn == e.Pfn && w.Entry.Writable == e.Writable;
                if (agrees) continue;
                bool excused = k.Tlb.PendingFlushes.Any(p => Engine.Mm.VaRange.Overlaps(p.Start, p.End, e.Va, e.Va + e.Size)
                    && k.Sched.LiveTasks.Any(t => t.Id == p.TaskId));
                if (excused) continue;
                return new(Name, $"cpu{cpu.Id} TLB holds {e} but init_mm has {(w.IsLeaf ? w.Entry.ToString() : "no leaf (" + w.Entry + ")")} at {w.Level}; no running task has this change pending a flush");
            }
        return null;
    }
}
