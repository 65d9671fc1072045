using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Invariants;

/// <summary>
/// After a completed flush no TLB holds a translation that disagrees with the page table of its
/// address space: neither a leaf entry (a contiguous-run entry agrees only if every entry of its
/// run still maps the run, contiguous, with the same permission) nor a walk-cache entry (the
/// table entry it caches must still point at the same lower table). A cached entry may differ
/// from its mm only over a range whose change has not been flushed yet by a task that is still
/// running; once the changing code path has finished, every change it made must have been
/// flushed from every CPU that could have cached it. The one lasting exception is the kernel's
/// lazy vmap purge: a vfree'd range is unmapped at once and flushed by purge_vmap_area_lazy
/// later, so a leaf entry inside a lazily freed range that no live or busy vmap area overlaps
/// (nothing may touch it, nothing has been handed it again) is excused until the purge. Source: flush_tlb_kernel_range in
/// mm/vmalloc.c, mm/hugetlb_vmemmap.c, arch/arm64/mm/mmu.c; the under-sized flush range of the
/// huge-vmalloc thread; Documentation/core-api/cachetlb.rst.
/// </summary>
public sealed class TlbCoherentAfterFlush : IInvariant
{
    public string Name => nameof(TlbCoherentAfterFlush);
    public string Claim => "every TLB and walk-cache entry agrees with its mm's page table, except over an unflushed change of a task still running or a lazily freed vmap range awaiting its purge";
    public string Source => "flush_tlb_kernel_range, __flush_tlb_kernel_pgtable; Documentation/core-api/cachetlb.rst";

    public Violation? Check(IKernelView k)
    {
        LazyPurgeRanges? lazy = null;
        foreach (var cpu in k.Cpus)
        {
            foreach (var e in cpu.Tlb.Entries)
            {
                var mm = k.MmByAsid(e.Asid);
                string? wrong = mm is null ? "an address space that no longer exists" : LeafDisagreement(k, mm.Pgd, e);
                if (wrong is null || (e.Asid == TlbEntry.Global && (lazy ??= new(k)).Excuses(e.Va, e.Va + e.Size)) || Excused(k, mm, e.Va, e.Va + e.Size)) continue;
                return new(Name, $"cpu{cpu.Id} TLB holds {e} but {mm?.Name ?? "its mm"} has {wrong}; no running task has this change pending a flush");
            }
            foreach (var e in cpu.Tlb.WalkEntries)
            {
                var mm = k.MmByAsid(e.Asid);
                string? wrong = mm is null ? "an address space that no longer exists" : WalkDisagreement(mm.Pgd, e);
                if (wrong is null || Excused(k, mm, e.Va, e.Va + e.Size)) continue;
                return new(Name, $"cpu{cpu.Id} walk cache holds {e} but {mm?.Name ?? "its mm"} has {wrong}; no running task has this change pending a flush");
            }
        }
        return null;
    }

    private static bool Excused(IKernelView k, IMmView? mm, ulong start, ulong end) =>
        mm is not null && k.PendingFlushes.Any(p => p.Mm == mm.Name && VaRange.Overlaps(p.Start, p.End, start, end)
            && k.LiveTasks.Any(t => t.Id == p.TaskId));

    /// <summary>What the page table has instead of leaf entry <paramref name="e"/>, or null if it agrees.</summary>
    private static string? LeafDisagreement(IKernelView k, IPageTableView pt, TlbEntry e)
    {
        var w = pt.Walk(e.Va);
        if (!w.IsLeaf) return $"no leaf ({w.Entry}) at {w.Level}";
        ulong size = pt.EntrySize(w.Table);
        bool run = size != e.Size;
        if (run && !(w.Entry.Cont && (ulong)k.Arch.ContSize(w.Level) == e.Size)) return $"{w.Entry} at {w.Level}, size {size:x}";
        for (ulong off = 0; off < e.Size; off += size)
        {
            var x = off == 0 ? w : pt.Walk(e.Va + off);
            long want = e.PfnFor(e.Va + off, k.Arch.PageShift);
            if (!x.IsLeaf || pt.EntrySize(x.Table) != size || x.Entry.Pfn != want || x.Entry.Writable != e.Writable || (run && !x.Entry.Cont))
                return $"{(x.IsLeaf ? x.Entry.ToString() : "no leaf (" + x.Entry + ")")} at {x.Level} for {e.Va + off:x}";
        }
        return null;
    }

    /// <summary>What the page table has instead of walk-cache entry <paramref name="e"/>, or null.</summary>
    private static string? WalkDisagreement(IPageTableView pt, WalkCacheEntry e)
    {
        PtTable t = pt.Root;
        while (t.Level > e.Level)
        {
            Pte up = t.Entries[pt.Index(e.Va, t.Level)];
            if (!pt.TryGetChild(t, up, out var next)) return $"no {e.Level} table above it ({up} at {t.Level})";
            t = next;
        }
        Pte entry = t.Entries[pt.Index(e.Va, t.Level)];
        return entry.IsTable && entry.Pfn == e.TablePfn ? null : $"{entry} at {e.Level}";
    }
}
