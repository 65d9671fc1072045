// TLB maintenance (arch/x86/mm/tlb.c, arch/arm64/include/asm/tlbflush.h): the page-table
// changes that no flush has covered yet, and the flushes that cover them.
//
// Every store to a page-table entry that was not none is recorded as pending until a flush that
// covers it: between the store and the flush, a CPU may still translate through what it cached.
// A change of a table entry (the old entry pointed at a lower table) may also sit in walk caches,
// and only a flush that invalidates intermediate levels covers it:
//   flush_tlb_kernel_range      arm64: TLBI VAALE1IS, last level only; x86: INVLPG, which also
//                               drops the paging-structure caches;
//   __flush_tlb_kernel_pgtable  arm64: TLBI VAAE1IS, every level, for one address's table;
//   flush_tlb_range (a VMA)     every level for [start, end) of one mm (arm64 __flush_tlb_range
//                               with last_level false; x86 flush_tlb_mm_range);
//   flush_tlb_mm                every entry of one mm's ASID;
//   flush_tlb_all               everything.
// None of the page-table helpers flush; their callers do, as in the kernel (*_noflush).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine.Smp;

/// <summary>A page-table change that no TLB flush has covered yet. <see cref="WalkCache"/>: the
/// old entry pointed at a lower table, so walk caches may hold it. The description is formatted
/// only when asked for (a change is recorded on every entry store, a hot path).</summary>
public sealed record PendingFlush(ulong Start, ulong End, int TaskId, string Mm, PtLevel Level, ulong EntryVa, Pte Old, Pte New)
{
    /// <summary>Order of recording (0, 1, ...), unique per kernel: orders equal starts in the
    /// pending-break index.</summary>
    public long Seq { get; init; }
    public bool WalkCache => Old.IsTable && Level > PtLevel.Pte;
    public string What => $"{Mm} {Level} entry at {EntryVa:x}: {Old} -> {New}";
}

public sealed class TlbFlush(ArchConfig arch, Cpu[] cpus, Func<ExecContext?> current, EventLog events)
{
    private readonly List<PendingFlush> _pending = new();
    private readonly PendingBreaks _breaks = new();
    private readonly bool _leafOnlyKernelFlush = arch.Arch == Config.Arch.Arm64;
    private long _seq;

    public IReadOnlyList<PendingFlush> PendingFlushes => _pending;
    /// <summary>The pending changes that are breaks, indexed by address.</summary>
    public IPendingBreaksView PendingBreaks => _breaks;

    /// <summary>Records a change of a live entry of <paramref name="mm"/> (called for every store).</summary>
    public void EntryChanged(PageTable mm, PtTable table, int index, Pte oldPte, Pte newPte)
    {
        if (oldPte.IsNone) return; // nothing could have been cached
        ulong va = mm.EntryVa(table, index);
        var p = new PendingFlush(va, va + mm.EntrySize(table), current()?.Task.Id ?? 0, mm.Name, table.Level, va, oldPte, newPte) { Seq = _seq++ };
        _pending.Add(p);
        _breaks.Added(p);
    }

    /// <summary>flush_tlb_kernel_range: drops every CPU's leaf translations of [start, end) (and
    /// on x86 the paging-structure caches) and marks the pending init_mm changes it covers as
    /// flushed. An end of 0 means the top of the address space.</summary>
    [Kernel("arch/arm64/include/asm/tlbflush.h", "flush_tlb_kernel_range")]
    public void FlushTlbKernelRange(ulong start, ulong end)
    {
        foreach (var cpu in cpus)
        {
            cpu.Tlb.FlushRange(start, end, TlbEntry.Global);
            if (!_leafOnlyKernelFlush) cpu.Tlb.FlushWalkRange(start, end, TlbEntry.Global);
        }
        Covered("init_mm", start, end, walkCaches: !_leafOnlyKernelFlush);
        Record(FlushKind.KernelRange, "init_mm", start, end, walkCaches: !_leafOnlyKernelFlush);
    }

    /// <summary>__flush_tlb_kernel_pgtable: every level of the translation of one address
    /// <paramref name="va"/>, walk-cache entries included: what must happen after a table entry
    /// covering va is cleared and before the table page is freed.</summary>
    [Kernel("arch/arm64/include/asm/tlbflush.h", "__flush_tlb_kernel_pgtable")]
    public void FlushTlbKernelPgtable(ulong va)
    {
        foreach (var cpu in cpus)
        {
            cpu.Tlb.FlushRange(va, va + 1, TlbEntry.Global);
            cpu.Tlb.FlushWalkRange(va, va + 1, TlbEntry.Global);
        }
        Covered("init_mm", va, va + 1, walkCaches: true);
        Record(FlushKind.KernelPgtable, "init_mm", va, va + 1, walkCaches: true);
    }

    /// <summary>flush_tlb_range on a VMA of <paramref name="mm"/>: every level for [start, end).</summary>
    [Kernel("arch/arm64/include/asm/tlbflush.h", "flush_tlb_range")]
    public void FlushTlbRange(MmStruct mm, ulong start, ulong end)
    {
        foreach (var cpu in cpus)
        {
            cpu.Tlb.FlushRange(start, end, mm.Asid);
            cpu.Tlb.FlushWalkRange(start, end, mm.Asid);
        }
        Covered(mm.Name, start, end, walkCaches: true);
        Record(FlushKind.Range, mm.Name, start, end, walkCaches: true);
    }

    /// <summary>flush_tlb_mm: every entry of <paramref name="mm"/>'s address space.</summary>
    [Kernel("arch/arm64/include/asm/tlbflush.h", "flush_tlb_mm")]
    public void FlushTlbMm(MmStruct mm)
    {
        foreach (var cpu in cpus) cpu.Tlb.FlushAsid(mm.Asid);
        _pending.RemoveAll(p =>
        {
            if (p.Mm != mm.Name) return false;
            _breaks.Removed(p);
            return true;
        });
        Record(FlushKind.Mm, mm.Name, 0, 0, walkCaches: true);
    }

    /// <summary>flush_tlb_all.</summary>
    [Kernel("arch/arm64/include/asm/tlbflush.h", "flush_tlb_all")]
    public void FlushTlbAll()
    {
        foreach (var cpu in cpus) cpu.Tlb.FlushAll();
        _pending.Clear();
        _breaks.Clear();
        Record(FlushKind.All, null, 0, 0, walkCaches: true);
    }

    private void Record(FlushKind kind, string? mm, ulong start, ulong end, bool walkCaches) =>
        events.Add(KernelEvent.Flushed(kind, mm, start, end, walkCaches, current()?.CpuId));

    /// <summary>Marks the pending changes of <paramref name="mm"/> inside [start, end) as
    /// flushed; a walk-cache change only when the flush reached intermediate levels, and then
    /// whole (hardware drops the cached table entry that translates any address it covers).</summary>
    private void Covered(string mm, ulong start, ulong end, bool walkCaches)
    {
        for (int i = _pending.Count - 1; i >= 0; i--)
        {
            var p = _pending[i];
            if (p.Mm != mm || (p.WalkCache && !walkCaches) || !VaRange.Overlaps(p.Start, p.End, start, end)) continue;
            _pending.RemoveAt(i);
            _breaks.Removed(p);
            // A flush of any address an entry translates invalidates that entry whole, as the
            // CPUs' TLBs here drop it (Tlb.FlushRange): a block's one TLB entry (or its fractured
            // copies) goes with an invalidation of one of its addresses, which is what arm64's
            // unmap_hotplug_pmd_range relies on ("One TLBI should be sufficient here as the
            // PMD_SIZE range is mapped with a single block entry") and INVLPG guarantees on x86.
            // Each pending change is one entry's store, so it goes whole.
        }
    }
}
