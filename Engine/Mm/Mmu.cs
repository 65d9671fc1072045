// Address translation as a CPU performs it, and the struct-page accesses built on it: TLB
// first, else a walk of the page table that fills the TLB; a walk that ends without a valid
// leaf is a translation fault, which the kernel handles only where a handler exists (the arm64
// vmemmap fault handler of Nanyong Sun's series, when that update strategy is modelled).
//
// Observers (invariants, rendering) read through the page table only, never through a TLB, and
// record nothing.
using PropertySuite.Engine.Arm64;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Mm;

public sealed class Mmu(ArchConfig arch, MmStruct initMm, Cpu[] cpus, StructPageStore store, Arm64Mmu arm64, KernelLog log)
{
    private readonly PageTable _pgd = initMm.Pgd;

    /// <summary>Reads the struct page at <paramref name="page"/> as the current CPU sees it (its
    /// TLB, else a walk). Returns false, recording a translation fault, if nothing maps it.</summary>
    public bool ReadStructPage(ExecContext? ctx, ulong page, out StructPage value)
    {
        if (!Translate(ctx, page, write: false, out long frame, out _))
        {
            value = default;
            return false;
        }
        value = store.ReadSlot(frame, store.StructPageSlot(page));
        return true;
    }

    /// <summary>Writes the struct page at <paramref name="page"/>. A write through a read-only
    /// mapping does not happen: it is recorded as a <see cref="FaultKind.WriteToReadOnly"/> fault
    /// and false is returned.</summary>
    public bool WriteStructPage(ExecContext? ctx, ulong page, in StructPage value, string what)
    {
        if (!Translate(ctx, page, write: true, out long frame, out bool writable)) return false;
        if (!writable)
        {
            log.RecordFault(FaultKind.WriteToReadOnly, ctx, page,
                $"{what}: write to struct page of pfn {arch.PageToPfn(page):x} through read-only vmemmap (frame {frame:x})");
            return false;
        }
        store.WriteSlot(frame, store.StructPageSlot(page), value);
        return true;
    }

    /// <summary>Reads a struct page through init_mm only: no TLB, no fault recorded. For
    /// invariants and rendering, which observe and never act.</summary>
    /// <remarks>Inside an open break-before-make window the struct page reads as the entry
    /// being installed will show it: the window is a transition the updater owns, and
    /// BreakBeforeMake / NoDeadlock judge the window itself.</remarks>
    public bool PeekStructPage(ulong page, out StructPage value)
    {
        long frame = WalkToFrame(page, out _);
        if (frame < 0) { value = default; return false; }
        value = store.ReadSlot(frame, store.StructPageSlot(page));
        return true;
    }

    /// <summary>The frame that maps kernel VA <paramref name="va"/> according to init_mm (through
    /// the pending entry of an open break-before-make window), or -1.</summary>
    public long WalkToFrame(ulong va, out bool writable)
    {
        var w = _pgd.Walk(va);
        writable = w.IsLeaf && w.Entry.Writable;
        if (!w.IsLeaf) return arm64.BbmWindowAt(va) is { } window ? arm64.ResolveThroughWindow(window, va, out writable) : -1;
        return w.Entry.Pfn + (long)((va - _pgd.EntryVa(w.Table, w.Index)) >> arch.PageShift);
    }

    /// <summary>An access by a CPU: TLB first, else a walk that fills the TLB. On a miss with no
    /// valid leaf the access faults: recorded, false returned.</summary>
    public bool Translate(ExecContext? ctx, ulong va, bool write, out long frame, out bool writable)
    {
        var cpu = ctx is null ? null : cpus[ctx.CpuId];
        if (cpu is not null && cpu.Tlb.TryLookup(va, out var te))
        {
            frame = te.PfnFor(va, arch.PageShift);
            writable = te.Writable;
            return true;
        }
        var w = _pgd.Walk(va);
        if (!w.IsLeaf)
        {
            frame = -1;
            writable = false;
            if (ctx is not null && arm64.Strategy == VmemmapUpdate.BbmFaultHandler && arm64.BbmWindowAt(va) is { } window)
            {
                // Nanyong Sun v3: the arm64 vmemmap fault handler waits for the update by taking
                // init_mm.page_table_lock. If the updater is this CPU's interrupted context (or
                // this context), it never releases it: the CPU hangs.
                var holder = window.Updater;
                if (holder.CpuId == ctx.CpuId && holder.Depth <= ctx.Depth)
                {
                    if (!ctx.Hung)
                        log.RecordFault(FaultKind.Deadlock, ctx, va, $"vmemmap translation fault in {ctx} spins on {initMm.PageTableLock.Name}, held by {holder} — interrupted on the same CPU{(ctx.InIrq ? " (IRQ context)" : "")}");
                    ctx.WaitingFor = initMm.PageTableLock;
                    ctx.Hung = true;
                    return false;
                }
                // Another CPU holds the lock: the handler waits until the entry is made again and
                // the access retries. The access therefore sees the entry the update installs.
                frame = arm64.ResolveThroughWindow(window, va, out writable);
                log.Note("vmemmap_fault.waited");
                if (frame >= 0) return true;
            }
            log.RecordFault(FaultKind.TranslationFault, ctx, va, $"{(write ? "write" : "read")} of unmapped kernel address (walk ended at level {w.Level} entry {w.Entry})");
            return false;
        }
        ulong size = _pgd.EntrySize(w.Table);
        ulong baseVa = _pgd.EntryVa(w.Table, w.Index);
        frame = w.Entry.Pfn + (long)((va - baseVa) >> arch.PageShift);
        writable = w.Entry.Writable;
        if (ctx is not null && ctx.WaitingFor == initMm.PageTableLock && initMm.PageTableLock.Holder != ctx) ctx.WaitingFor = null;
        cpu?.Tlb.Fill(new TlbEntry(baseVa, size, w.Entry.Pfn, w.Entry.Writable));
        return true;
    }
}
