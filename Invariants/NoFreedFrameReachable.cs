using PropertySuite.Engine;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Invariants;

/// <summary>
/// No freed frame is reachable by anything a CPU can still use: no kernel leaf outside the
/// linear map (which maps all memory by design) maps a free frame; no table entry of any page
/// table points at a frame that is not a page table of that tree; no TLB entry maps a free
/// frame; no walk-cache entry points at a frame that is no longer a page table of its mm. The
/// one allowance is the kernel's lazy vmap purge: a TLB entry inside a vfree'd range still on the
/// purge list, that no live or busy area overlaps, is unusable (nothing may touch the address,
/// nothing has been given it) until purge_vmap_area_lazy flushes it. Source: the clear → flush
/// → free order of pmd_free_pte_page (arch/x86/mm/pgtable.c, arch/arm64/mm/mmu.c),
/// free_empty_tables, vfree and purge_vmap_area_lazy (mm/vmalloc.c).
/// </summary>
/// <remarks>Walker tasks holding a table pointer in the middle of a walk are checked by
/// NoWalkerHoldsFreedTable, not here.
/// Checked incrementally (<see cref="Check"/>); <see cref="CheckFullScan"/> is the oracle. The
/// table-entry part can only change where the step stored a table entry (its target and the
/// tables below it, which may have been filled while detached) or forgot a table (an entry may
/// still point at it); those are judged, and any doubt is settled by the full scan, which also
/// gives the evidence. The leaf part is judged whole through the leaf-frame indexes (its cost is
/// the number of frame runs: judging each stored leaf measured slower), the TLB and walk-cache
/// parts whole too: their size is bounded, whatever the
/// memory size. At step 0, or when a tree is not canonical, the full scan runs.</remarks>
public sealed class NoFreedFrameReachable : IInvariant
{
    public string Name => nameof(NoFreedFrameReachable);
    public string Claim => "no page-table, TLB or walk-cache entry a CPU can use leads to a freed frame (lazily purged vmalloc ranges excepted)";
    public string Source => "pmd_free_pte_page (arch/x86/mm/pgtable.c, arch/arm64/mm/mmu.c); mm/vmalloc.c vfree, purge_vmap_area_lazy";

    public Violation? Check(IKernelView k)
    {
        if (k.Step == 0) return CheckFullScan(k);
        foreach (var mm in k.Mms)
            if (!mm.Pgd.IsCanonicalTree) return CheckFullScan(k);
        return TablesInDoubt(k) ? CheckFullScan(k) : CheckLeaves(k) ?? CheckCaches(k);
    }

    /// <summary>Whether what the step stored or forgot could have made a table entry lead to a
    /// frame that is not a table of its tree: a stored table entry (its target, and the tables
    /// below it, built while detached), or a forgotten table that an entry still points at.</summary>
    private static bool TablesInDoubt(IKernelView k)
    {
        bool bad = false;
        foreach (var e in k.StepEvents)
        {
            if (e.Kind != KernelEventKind.EntryStore || !e.New.IsTable) continue;
            var pgd = PgdOf(k, e.Mm);
            if (pgd is null) continue;
            if (!pgd.TryGetTable(e.New.Pfn, out var t)) return true;
            pgd.ForEachTableEntry(t, (_, _, x) => bad |= !pgd.TryGetTable(x.Pfn, out _));
            if (bad) return true;
        }
        foreach (var mm in k.Mms)
            foreach (long pfn in mm.Pgd.TablesForgottenThisStep)
                if (!mm.Pgd.TryGetTable(pfn, out _) && mm.Pgd.ParentsOf(pfn).Count > 0) return true;
        return false;
    }

    private static IPageTableView? PgdOf(IKernelView k, string? mm)
    {
        foreach (var m in k.Mms)
            if (m.Name == mm) return m.Pgd;
        return null;
    }

    /// <summary>The full-scan oracle: every table entry of every mm, every vmalloc and vmemmap
    /// leaf, every TLB and walk-cache entry.</summary>
    public Violation? CheckFullScan(IKernelView k)
    {
        foreach (var mm in k.Mms)
        {
            Violation? bad = null;
            var pgd = mm.Pgd;
            pgd.ForEachTableEntry((t, i, e) =>
            {
                if (bad is null && !pgd.TryGetTable(e.Pfn, out _))
                    bad = new(Name, $"{mm.Name} {t.Level} entry at {pgd.EntryVa(t, i):x} points at frame {e.Pfn:x} ({k.Mem.OwnerOf(e.Pfn)}), not a page table of {mm.Name}");
            });
            if (bad is not null) return bad;
        }
        return CheckLeaves(k) ?? CheckCaches(k);
    }

    /// <summary>The vmalloc and vmemmap leaves, whole, through the leaf-frame indexes (kept up to
    /// date by the stores, so this costs the number of frame runs, not of leaves).</summary>
    private Violation? CheckLeaves(IKernelView k)
    {
        foreach (var (start, end) in new[] { (k.Arch.VmallocStart, k.Arch.VmallocEnd), (k.Arch.VmemmapStart, k.Arch.VmemmapEnd) })
            foreach (var (pfn, count) in k.SwapperPgDir.LeafFrames(start, end).Runs)
                if (k.Mem.CountOwned(pfn, count, FrameOwner.Free) > 0)
                    return new(Name, $"a leaf in [{start:x}, {end:x}) maps free frames among {pfn:x}+{count}");
        return null;
    }

    /// <summary>The TLB and walk-cache part, whole.</summary>
    private Violation? CheckCaches(IKernelView k)
    {
        LazyPurgeRanges? lazy = null;
        ulong linearStart = k.Arch.PfnToVirt(0), linearEnd = linearStart + (ulong)k.Arch.LinearMapSize;
        foreach (var cpu in k.Cpus)
        {
            foreach (var e in cpu.Tlb.Entries)
            {
                if (e.Asid == TlbEntry.Global && e.Va >= linearStart && e.Va < linearEnd) continue;
                long n = (long)(e.Size >> k.Arch.PageShift);
                if (e.Pfn < 0 || e.Pfn + n > k.Mem.MaxPfn || k.Mem.CountOwned(e.Pfn, n, FrameOwner.Free) == 0) continue;
                if (e.Asid == TlbEntry.Global && (lazy ??= new(k)).Excuses(e.Va, e.Va + e.Size)) continue;
                return new(Name, $"cpu{cpu.Id} TLB holds {e}, which maps free frames");
            }
            foreach (var e in cpu.Tlb.WalkEntries)
            {
                var mm = k.MmByAsid(e.Asid);
                if (mm is not null && mm.Pgd.TryGetTable(e.TablePfn, out var t) && t.Level == e.Level - 1) continue;
                return new(Name, $"cpu{cpu.Id} walk cache holds {e}, but frame {e.TablePfn:x} ({k.Mem.OwnerOf(e.TablePfn)}) is no longer a {e.Level - 1} table of {mm?.Name ?? "its mm"}");
            }
        }
        return null;
    }
}
