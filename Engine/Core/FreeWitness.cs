// What could still reach a frame at the instant it is freed to the buddy allocator: the page
// tables of every mm (leaves mapping it, table entries pointing at it as a lower table) and every
// CPU's TLB and walk cache. The record is an observation of hardware and page-table state, taken
// by the allocator's free path before the frame changes hands; it decides nothing. Which of these
// references the kernel tolerates is the ClearFlushFree invariant's judgement.
//
// A TLB entry that maps a freed frame is also marked (TlbEntry.FrameFreed), so that a later
// access through it — a use of freed or reused memory — is recorded as a fault by the MMU.
//
// Not a reference: the linear map (it maps all memory, by design), and its TLB entries.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

public sealed class FreeWitness(ArchConfig arch, IReadOnlyList<MmStruct> mms, Cpu[] cpus, EventLog events, Func<ExecContext?> current)
{
    private readonly ulong _linearStart = arch.PfnToVirt(0);
    private readonly ulong _linearEnd = arch.PfnToVirt(0) + (ulong)arch.LinearMapSize;

    private bool InLinearMap(ulong va) => va >= _linearStart && va - _linearStart < (ulong)arch.LinearMapSize;

    /// <summary>Called by PhysMem for every free, before the frames become free.</summary>
    private readonly List<PtWalk> _hits = new();

    public void OnFree(long pfn, long count, FrameOwner owner, string who)
    {
        List<FreeReference>? refs = null;
        foreach (var mm in mms)
        {
            var pgd = mm.Pgd;
            foreach (var (start, end) in LeafRanges(mm))
            {
                _hits.Clear();
                pgd.LeafFrames(start, end).LeavesMapping([(pfn, count)], _hits);
                foreach (var w in _hits)
                    (refs ??= new()).Add(new(FreeRefKind.Leaf, mm.Name, null, w.Level, pgd.EntryVa(w.Table, w.Index), pgd.EntrySize(w.Table), w.Entry.Pfn, false));
            }
            if (owner != FrameOwner.PageTable) continue;
            for (long p = pfn; p < pfn + count; p++)
                foreach (var parent in pgd.ParentsOf(p))
                {
                    // A table entry inside a detached subtree (freed whole after its top entry was
                    // cleared, as a collapse or free_pgd_range does) is no longer reachable by a walk.
                    if (!Reachable(pgd, parent)) continue;
                    for (int i = 0; i < parent.Entries.Length; i++)
                        if (parent.Entries[i].IsTable && parent.Entries[i].Pfn == p)
                            (refs ??= new()).Add(new(FreeRefKind.TableEntry, mm.Name, null, parent.Level, pgd.EntryVa(parent, i), pgd.EntrySize(parent), p, false));
                }
        }
        foreach (var cpu in cpus)
        {
            var marked = cpu.Tlb.MarkFrameFreed(e => e.MapsAny(pfn, count, arch.PageShift) && !(e.Asid == TlbEntry.Global && InLinearMap(e.Va)));
            if (marked is not null)
                foreach (var e in marked)
                    (refs ??= new()).Add(new(FreeRefKind.Tlb, MmName(e.Asid), cpu.Id, default, e.Va, e.Size, e.Pfn, e.Asid == TlbEntry.Global));
            if (cpu.Tlb.WalkEntriesOnFrames(pfn, count) is { } walks)
                foreach (var e in walks)
                    (refs ??= new()).Add(new(FreeRefKind.WalkCache, MmName(e.Asid), cpu.Id, e.Level, e.Va, e.Size, e.TablePfn, e.Asid == TlbEntry.Global));
        }
        events.AddFree(new FrameFree(pfn, count, owner, who, current()?.CpuId, events.StepEvents.Count, (IReadOnlyList<FreeReference>?)refs ?? []));
    }

    private string MmName(int asid) => asid == TlbEntry.Global ? "init_mm" : mms.FirstOrDefault(m => m.Asid == asid && m.Name != "init_mm")?.Name ?? $"asid {asid}";

    /// <summary>The ranges of <paramref name="mm"/> whose leaves count as references: all of a
    /// user mm; all of init_mm but the linear map.</summary>
    private IEnumerable<(ulong Start, ulong End)> LeafRanges(MmStruct mm)
    {
        if (mm.Name != "init_mm")
        {
            yield return (0, 1UL << arch.VaBits);
            yield break;
        }
        ulong kernelBase = PageTable.KernelVaBase(arch);
        if (_linearStart > kernelBase) yield return (kernelBase, _linearStart);
        if (_linearEnd != 0) yield return (_linearEnd, 0);
    }

    /// <summary>Whether a walk from the root of <paramref name="pgd"/> reaches <paramref name="table"/>.</summary>
    private static bool Reachable(PageTable pgd, PtTable table)
    {
        var t = pgd.Root;
        while (t != table && t.Level > table.Level)
            if (!pgd.TryGetChild(t, t.Entries[pgd.Index(table.BaseVa, t.Level)], out t)) return false;
        return t == table;
    }
}
