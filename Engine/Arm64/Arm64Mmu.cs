// How a live vmemmap entry is changed: in place (x86; arm64 v6.1-v6.2 HVO, 1e63ac088f20), or
// with break-before-make on arm64 under one of the strategies of S001 and Yu Zhao's comparison
//:
//   BbmFaultHandler  Nanyong Sun v3 vmemmap_update_pte: under init_mm.page_table_lock,
//                    pte_clear → flush_tlb_kernel_range → set_pte_at; concurrent accesses fault
//                    and the arm64 fault handler waits on the same lock (Mmu.Translate).
//   StopMachine      stop_machine() around each clear → flush → set: no other CPU runs and no
//                    interrupt is taken, so nothing observes the window. Each call is counted.
//   Bbml2            FEAT_BBM level 2 (BBML2_NOABORT): a block → table split of the same frames
//                    is written in place; output-address changes still need BBM (stop_machine).
// The break window is real: between the clear and the set the entry is none, and any access
// through a TLB that was flushed takes a translation fault.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Arm64;

/// <summary>The arm64 MMU rules the model enforces (arch/arm64/mm/mmu.c, pgattr_change_is_safe)
/// and the vmemmap update paths that must respect them.</summary>
public sealed class Arm64Mmu
{
    private readonly ArchConfig Arch;
    private readonly PageTable InitMm;
    private readonly KernelLock PageTableLock;
    private readonly TlbFlush _tlb;
    private readonly Spinlocks _locks;
    private readonly KernelLog _log;
    private readonly VmemmapUpdate _strategy;
    private readonly bool _brokenSkipsInvalidate;

    internal Arm64Mmu(ArchConfig arch, MmStruct initMm, TlbFlush tlb, Spinlocks locks, KernelLog log, Arm64MmuOptions options, bool brokenSkipsInvalidate)
    {
        Arch = arch;
        InitMm = initMm.Pgd;
        PageTableLock = initMm.PageTableLock;
        _tlb = tlb;
        _locks = locks;
        _log = log;
        _strategy = arch.Arch == Config.Arch.Arm64 ? options.VmemmapUpdate : VmemmapUpdate.InPlace;
        _brokenSkipsInvalidate = brokenSkipsInvalidate;
    }

    /// <summary>The strategy vmemmap updates use on this machine (x86: always in place).</summary>
    public VmemmapUpdate Strategy => _strategy;

    private void Note(string s) => _log.Note(s);
    private void FlushTlbKernelRange(ulong start, ulong end) => _tlb.FlushTlbKernelRange(start, end);
    private IEnumerable<StepStatus> SpinLock(ExecContext ctx, KernelLock l, bool stepWhenTaken) => _locks.SpinLock(ctx, l, stepWhenTaken);
    private void SpinUnlock(ExecContext ctx, KernelLock l) => _locks.SpinUnlock(ctx, l);

    /// <summary>An open break-before-make window: the entry is none until the updater writes
    /// <see cref="NewPte"/>; <see cref="Held"/> are the frames it will map (for a split, the
    /// block's frames, which the new table maps), owned by the updater meanwhile.</summary>
    public sealed record BbmWindow(PtTable Table, int Index, ulong Start, ulong End, Pte NewPte, (long Pfn, long Count) Held, ExecContext Updater);

    private readonly List<BbmWindow> _bbmWindows = new();

    public IReadOnlyList<BbmWindow> BbmWindows => _bbmWindows;

    /// <summary>Vmemmap frames held by open break-before-make windows: unmapped between the
    /// clear and the set, about to be mapped again. Conservation counts them with the leaves.</summary>
    public IEnumerable<(long Pfn, long Count)> BbmWindowFrames => _bbmWindows.Select(w => w.Held);

    /// <summary>The open window covering <paramref name="va"/>, if any.</summary>
    public BbmWindow? BbmWindowAt(ulong va)
    {
        foreach (var w in _bbmWindows) if (va >= w.Start && va < w.End) return w;
        return null;
    }

    /// <summary>What <paramref name="va"/> will translate to once window <paramref name="w"/>
    /// closes: the frame of its pending entry (through the new table for a split), or null when
    /// the pending entry maps nothing there.</summary>
    public long? ResolveThroughWindow(BbmWindow w, ulong va, out bool writable)
    {
        writable = false;
        Pte e = w.NewPte;
        ulong entryVa = w.Start;
        if (e.IsTable && InitMm.TryGetTable(e.Pfn, out var child))
        {
            int i = InitMm.Index(va, child.Level);
            e = child.Entries[i];
            entryVa = InitMm.EntryVa(child, i);
        }
        if (!e.IsLeaf) return null;
        writable = e.Writable;
        return e.Pfn + (long)((va - entryVa) >> Arch.PageShift);
    }

    /// <summary>stop_machine() calls made for vmemmap updates so far.</summary>
    public long StopMachineCalls { get; private set; }

    /// <summary>Changes the live vmemmap entry (<paramref name="t"/>, <paramref name="index"/>) to
    /// <paramref name="newPte"/> as the variant's update strategy does, one kernel-visible action
    /// per step. The entry's VA range is flushed from every TLB before the new entry is visible
    /// for every strategy except InPlace (whose caller flushes after the whole walk, as
    /// vmemmap_remap_range does). The step after which the new entry is in place is named
    /// <paramref name="action"/>, the caller's kernel function (vmemmap_remap_pte, ...), under every
    /// strategy; break-before-make's first steps are pte_clear/pmd_clear and flush_tlb_kernel_range.</summary>
    public IEnumerable<StepStatus> VmemmapUpdateEntry(ExecContext ctx, PtTable t, int index, Pte newPte, string action)
    {
        Pte old = t.Entries[index];
        ulong va = InitMm.EntryVa(t, index), end = va + InitMm.EntrySize(t);
        var strategy = _strategy;
        if (old.IsNone) strategy = VmemmapUpdate.InPlace; // nothing live to break
        if (strategy == VmemmapUpdate.Bbml2)
            strategy = old.IsLeaf && newPte.IsTable && t.Level > PtLevel.Pte ? VmemmapUpdate.InPlace : VmemmapUpdate.StopMachine;

        switch (strategy)
        {
            case VmemmapUpdate.InPlace:
                InitMm.Set(t, index, newPte); // set_pte_at / pmd_populate_kernel over the live entry
                yield return StepStatus.After(action);
                break;

            case VmemmapUpdate.StopMachine:
                StopMachineCalls++;
                Note("vmemmap.stop_machine");
                InitMm.Set(t, index, Pte.None);
                if (!_brokenSkipsInvalidate) FlushTlbKernelRange(va, end);
                InitMm.Set(t, index, newPte);
                yield return StepStatus.After(action);
                break;

            case VmemmapUpdate.BbmFaultHandler:
            {
                // The frames the entry is about to map (for a split: the block's frames, which
                // the new table maps) are the updater's from now until the make, including while
                // it waits for the lock: they may be off every list and not yet mapped.
                var held = newPte.IsLeaf
                    ? (newPte.Pfn, (long)(InitMm.EntrySize(t) >> Arch.PageShift))
                    : (old.Pfn, old.IsLeaf ? (long)(InitMm.EntrySize(t) >> Arch.PageShift) : 0L);
                var window = new BbmWindow(t, index, va, end, newPte, held, ctx);
                _bbmWindows.Add(window);
                bool locked = PageTableLock.Holder == ctx; // vmemmap_split_pmd already holds it
                if (!locked)
                    foreach (var s in SpinLock(ctx, PageTableLock, stepWhenTaken: false)) yield return s;
                InitMm.Set(t, index, Pte.None);           // pte_clear: the break
                yield return StepStatus.After(t.Level == PtLevel.Pte ? "pte_clear" : "pmd_clear");
                FlushTlbKernelRange(va, end);             // flush_tlb_kernel_range
                yield return StepStatus.After("flush_tlb_kernel_range");
                InitMm.Set(t, index, newPte);             // set_pte_at: the make
                _bbmWindows.Remove(window);
                if (!locked) SpinUnlock(ctx, PageTableLock);
                yield return StepStatus.After(action);
                break;
            }

            default:
                throw new ModelBugException($"vmemmap update strategy {strategy} not modelled");
        }
    }
}
