// TLB maintenance (arch/x86/mm/tlb.c, arch/arm64/include/asm/tlbflush.h): the page-table
// changes that no flush has covered yet, and the flushes that cover them.
//
// Every store to a page-table entry that was not none is recorded as pending until a flush of
// its range: between the store and the flush, a CPU may still translate through what it cached.
// None of the page-table helpers flush; their callers do, as in the kernel (*_noflush).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine.Smp;

/// <summary>A page-table change that no TLB flush has covered yet. The description is formatted
/// only when asked for (a change is recorded on every entry store, a hot path).</summary>
public sealed record PendingFlush(ulong Start, ulong End, int TaskId, string Mm, PtLevel Level, ulong EntryVa, Pte Old, Pte New)
{
    public string What => $"{Mm} {Level} entry at {EntryVa:x}: {Old} -> {New}";
}

public sealed class TlbFlush(Cpu[] cpus, Func<ExecContext?> current)
{
    private readonly List<PendingFlush> _pending = new();

    public IReadOnlyList<PendingFlush> PendingFlushes => _pending;

    /// <summary>Records a change of a live entry of <paramref name="mm"/> (called for every store).</summary>
    public void EntryChanged(PageTable mm, PtTable table, int index, Pte oldPte, Pte newPte)
    {
        if (oldPte.IsNone) return; // nothing could have been cached
        ulong va = mm.EntryVa(table, index);
        _pending.Add(new PendingFlush(va, va + mm.EntrySize(table), current()?.Task.Id ?? 0, mm.Name, table.Level, va, oldPte, newPte));
    }

    /// <summary>flush_tlb_kernel_range: drops every CPU's translations of [start, end) and marks
    /// the pending changes inside it as flushed. An end of 0 means the top of the address space.</summary>
    public void FlushTlbKernelRange(ulong start, ulong end)
    {
        foreach (var cpu in cpus) cpu.Tlb.FlushRange(start, end);
        for (int i = _pending.Count - 1; i >= 0; i--)
        {
            var p = _pending[i];
            if (!VaRange.Overlaps(p.Start, p.End, start, end)) continue;
            _pending.RemoveAt(i);
            if (p.Start < start) _pending.Add(p with { End = start });
            if (p.End - 1 > end - 1) _pending.Add(p with { Start = end });
        }
    }

    /// <summary>flush_tlb_all.</summary>
    public void FlushTlbAll()
    {
        foreach (var cpu in cpus) cpu.Tlb.FlushAll();
        _pending.Clear();
    }
}
