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

    /// <summary>A speculative table walk of the struct page at <paramref name="page"/> by the
    /// current CPU: the MMU may walk any address at any time and cache what it finds (Arm ARM
    /// D8.2 "speculative translation table walks"; Intel SDM 4.10.2.3 "the processor may cache
    /// translations ... speculatively"), also when its TLB already holds an entry for that
    /// address; so a CPU that kept a stale block entry can cache the new smaller entry beside
    /// it. Nothing is read or written, and an address with no valid leaf caches nothing.</summary>
    public void SpeculativeWalk(ExecContext? ctx, ulong va)
    {
        var cpu = ctx is null ? null : cpus[ctx.CpuId];
        if (cpu is null) return;
        var w = HardwareWalk(ctx, cpu, initMm, TlbEntry.Global, va);
        if (w is { IsLeaf: true } leaf) FillLeaf(cpu, initMm, TlbEntry.Global, va, leaf);
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

    /// <summary>The runs of [firstPfn, firstPfn + count) whose struct pages share one vmemmap
    /// page: (first PFN of the run, end of the run, first PFN the vmemmap page describes).</summary>
    private IEnumerable<(long Pfn, long End, long PageFirst)> VmemmapPageRuns(long firstPfn, long count)
    {
        int s = arch.StructPagesPerVmemmapPage;
        for (long pfn = firstPfn, end = firstPfn + count; pfn < end;)
        {
            long pageFirst = pfn - pfn % s;
            long runEnd = Math.Min(end, pageFirst + s);
            yield return (pfn, runEnd, pageFirst);
            pfn = runEnd;
        }
    }

    /// <summary>Writes the struct pages of [firstPfn, firstPfn + count) through <paramref name="ctx"/>'s
    /// view: every page gets <paramref name="fill"/> except the listed exceptions. One translation
    /// per vmemmap page; a vmemmap page wholly inside the range is filled in one go. A page mapped
    /// read-only is not written: the store faults (recorded) as any other store would.</summary>
    public void WriteStructPageRange(ExecContext? ctx, long firstPfn, long count, in StructPage fill,
        IReadOnlyList<(long Pfn, StructPage Value)> exceptions, string what)
    {
        int s = arch.StructPagesPerVmemmapPage;
        foreach (var (pfn, runEnd, pageFirst) in VmemmapPageRuns(firstPfn, count))
        {
            ulong va = arch.PfnToPage(pfn);
            if (!Translate(ctx, va, write: true, out long frame, out bool writable)) continue;
            if (!writable)
            {
                log.RecordFault(FaultKind.WriteToReadOnly, ctx, va,
                    $"{what}: write to struct page of pfn {pfn:x} through read-only vmemmap (frame {frame:x})");
                continue;
            }
            var c = store.FrameContent(frame);
            if (pfn == pageFirst && runEnd == pageFirst + s) c.Fill(fill);
            else for (long p = pfn; p < runEnd; p++) c.Write((int)(p - pageFirst), fill);
            foreach (var (ep, ev) in exceptions)
                if (ep >= pfn && ep < runEnd) c.Write((int)(ep - pageFirst), ev);
        }
    }

    /// <summary>Visits struct pages [firstPfn, firstPfn+count) for checks: every slot 0 of a
    /// vmemmap page individually (it may be a fake head, whose reading involves page[1]); in a
    /// vmemmap page whose contents are one repeated record, slots 1..S−1 are visited once, with the
    /// number of struct pages the visit stands for. <paramref name="visit"/>(pfn, count) returns
    /// false to stop. With <paramref name="peek"/> the frames come from init_mm (no TLB).</summary>
    public void VisitStructPages(ExecContext? ctx, bool peek, long firstPfn, long count, Func<long, long, bool> visit)
    {
        foreach (var (first, runEnd, pageFirst) in VmemmapPageRuns(firstPfn, count))
        {
            long pfn = first;
            ulong va = arch.PfnToPage(pageFirst);
            long? frame;
            if (peek) frame = FrameOf(va, out _);
            else frame = Translate(ctx, va, write: false, out long f, out _) ? f : null;
            if (pfn == pageFirst)
            {
                if (!visit(pfn, 1)) return;
                pfn++;
            }
            if (pfn < runEnd && frame is { } mapped && store.PeekFrameContent(mapped).IsUniform)
            {
                if (!visit(pfn, runEnd - pfn)) return;
            }
            else
            {
                for (long p = pfn; p < runEnd; p++) if (!visit(p, 1)) return;
            }
        }
    }

    /// <summary>Reads a struct page through init_mm only: no TLB, no fault recorded. For
    /// invariants and rendering, which observe and never act.</summary>
    /// <remarks>Inside an open break-before-make window the struct page reads as the entry
    /// being installed will show it: the window is a transition the updater owns, and
    /// BreakBeforeMake / NoDeadlock judge the window itself.</remarks>
    public bool PeekStructPage(ulong page, out StructPage value)
    {
        if (FrameOf(page, out _) is not { } frame) { value = default; return false; }
        value = store.ReadSlot(frame, store.StructPageSlot(page));
        return true;
    }

    /// <summary>The frame that maps kernel VA <paramref name="va"/> according to init_mm (through
    /// the pending entry of an open break-before-make window), or null when nothing maps it.</summary>
    public long? FrameOf(ulong va, out bool writable)
    {
        var w = _pgd.Walk(va);
        writable = w.IsLeaf && w.Entry.Writable;
        if (!w.IsLeaf) return arm64.BbmWindowAt(va) is { } window ? arm64.ResolveThroughWindow(window, va, out writable) : null;
        return w.Entry.Pfn + (long)((va - _pgd.EntryVa(w.Table, w.Index)) >> arch.PageShift);
    }

    /// <summary>An access by a CPU to a kernel address: TLB first, else a walk of init_mm that
    /// fills the TLB. On a miss with no valid leaf the access faults: recorded, false returned.</summary>
    public bool Translate(ExecContext? ctx, ulong va, bool write, out long frame, out bool writable) =>
        Translate(ctx, initMm, va, write, out frame, out writable);

    /// <summary>An access by a CPU in address space <paramref name="mm"/> (init_mm for kernel
    /// addresses): TLB first (global entries, or the mm's ASID), else a hardware walk that may
    /// start at a table the CPU's walk cache holds, and fills the TLB and the walk cache.</summary>
    public bool Translate(ExecContext? ctx, MmStruct mm, ulong va, bool write, out long frame, out bool writable)
    {
        var cpu = ctx is null ? null : cpus[ctx.CpuId];
        int asid = mm == initMm ? TlbEntry.Global : mm.Asid;
        if (cpu is not null && cpu.Tlb.TryLookup(va, out var te, asid))
        {
            frame = te.PfnFor(va, arch.PageShift);
            writable = te.Writable;
            if (te.FrameFreed)
                log.RecordFault(FaultKind.UseAfterFree, ctx, va,
                    $"cpu{cpu.Id} {(write ? "writes" : "reads")} {va:x} through its TLB entry {te}: frame {frame:x} was freed while the entry was cached");
            return true;
        }
        frame = 0;
        writable = false;
        if (HardwareWalk(ctx, cpu, mm, asid, va) is not { } leaf) return false; // the walk itself faulted (recorded)
        if (!leaf.IsLeaf)
        {
            if (ctx is not null && mm == initMm && arm64.Strategy == VmemmapUpdate.BbmFaultHandler && arm64.BbmWindowAt(va) is { } window)
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
                long? resolved = arm64.ResolveThroughWindow(window, va, out writable);
                log.Note("vmemmap_fault.waited");
                if (resolved is { } f) { frame = f; return true; }
            }
            log.RecordFault(FaultKind.TranslationFault, ctx, va, $"{(write ? "write" : "read")} of unmapped {(mm == initMm ? "kernel" : mm.Name)} address (walk ended at level {leaf.Level} entry {leaf.Entry})");
            return false;
        }
        var pgd = mm.Pgd;
        ulong size = pgd.EntrySize(leaf.Table);
        ulong baseVa = pgd.EntryVa(leaf.Table, leaf.Index);
        frame = leaf.Entry.Pfn + (long)((va - baseVa) >> arch.PageShift);
        writable = leaf.Entry.Writable;
        if (ctx is not null && ctx.WaitingFor == initMm.PageTableLock && initMm.PageTableLock.Holder != ctx) ctx.WaitingFor = null;
        if (cpu is not null) FillLeaf(cpu, mm, asid, va, leaf);
        return true;
    }

    /// <summary>Caches the leaf a walk of <paramref name="va"/> found; a contiguous-bit leaf as
    /// one entry for its whole aligned run.</summary>
    private void FillLeaf(Cpu cpu, MmStruct mm, int asid, ulong va, PtWalk leaf)
    {
        var pgd = mm.Pgd;
        ulong size = pgd.EntrySize(leaf.Table);
        ulong baseVa = pgd.EntryVa(leaf.Table, leaf.Index);
        ulong cont = leaf.Entry.Cont ? (ulong)arch.ContSize(leaf.Level) : 0;
        if (cont != 0)
        {
            ulong runVa = va & ~(cont - 1);
            long frame = leaf.Entry.Pfn + (long)((va - baseVa) >> arch.PageShift);
            cpu.Tlb.Fill(new TlbEntry(runVa, cont, frame - (long)((va - runVa) >> arch.PageShift), leaf.Entry.Writable, asid));
        }
        else cpu.Tlb.Fill(new TlbEntry(baseVa, size, leaf.Entry.Pfn, leaf.Entry.Writable, asid));
    }

    /// <summary>The MMU's table walk for <paramref name="va"/>: from the lowest table this CPU's
    /// walk cache holds for it, else from the root, caching every table entry it goes through.
    /// A cached table that is no longer a page table of this mm (its page was freed with the
    /// walk cache still pointing at it) is a walk through freed memory: recorded, null returned.</summary>
    private PtWalk? HardwareWalk(ExecContext? ctx, Cpu? cpu, MmStruct mm, int asid, ulong va)
    {
        var pgd = mm.Pgd;
        PtTable t = pgd.Root;
        if (cpu is not null && cpu.Tlb.TryLookupWalk(va, asid, out var cached))
        {
            if (!pgd.TryGetTable(cached.TablePfn, out var lower) || lower.Level != cached.Level - 1)
            {
                log.RecordFault(FaultKind.KernelBug, ctx, va,
                    $"cpu{cpu.Id} walks {va:x} through its walk cache's {cached} but frame {cached.TablePfn:x} is no longer a {mm.Name} page table (freed without invalidating the walk cache)");
                return null;
            }
            t = lower;
        }
        while (true)
        {
            int i = pgd.Index(va, t.Level);
            Pte e = t.Entries[i];
            if (!e.IsTable || t.Level == PtLevel.Pte || !pgd.TryGetChild(t, e, out var next)) return new PtWalk(t, i, e);
            cpu?.Tlb.FillWalk(new WalkCacheEntry(t.Level, pgd.EntryVa(t, i), pgd.EntrySize(t), e.Pfn, asid));
            t = next;
        }
    }
}
