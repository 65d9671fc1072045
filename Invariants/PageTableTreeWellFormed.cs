using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// Every mm's page table (init_mm's and each user mm's) is a tree: every table entry points at a frame owned as a page table and registered as
/// a table one level down, and every table page has exactly one parent entry. A table entry to a
/// freed frame is the page-table use-after-free that hot-remove (S004) and ptdump guard against;
/// a table with two parents would be freed while still in use. Between steps of a running task a
/// table may exist unlinked (allocated, not yet installed); with no task running, every table
/// must be reachable. Kernel: page-table pages are owned by one tree (pmd_populate / pud_populate
/// install a fresh table; free_pgtables and arch/arm64/mm/mmu.c free_empty_tables clear the parent
/// before freeing).
/// </summary>
public sealed class PageTableTreeWellFormed : IInvariant
{
    public string Name => nameof(PageTableTreeWellFormed);
    public string Claim => "in every mm, every table entry points at a live page-table frame one level down, and every table has exactly one parent";
    public string Source => "arch/arm64/mm/mmu.c free_empty_tables; mm/memory.c free_pgtables; the arm64 hot-remove thread";

    /// <summary>Visits only the table entries (PageTable keeps an index of them), in the order
    /// of <see cref="CheckFullScan"/>, so verdict and evidence are the same at a cost that grows
    /// with the number of tables rather than of entries.</summary>
    public Violation? Check(IKernelView k)
    {
        foreach (var m in k.Mms)
            if (CheckWith(k, m.Pgd, m.Pgd.ForEachTableEntry) is { } v) return v;
        return null;
    }

    /// <summary>The full-scan oracle: reads every entry of every reachable table.</summary>
    public Violation? CheckFullScan(Kernel k)
    {
        foreach (IMmView m in k.Mms)
            if (CheckWith(k, m.Pgd, m.Pgd.ForEachEntry) is { } v) return v;
        return null;
    }

    private Violation? CheckWith(IKernelView k, IPageTableView mm, Action<Action<PtTable, int, Pte>> forEach)
    {
        var parents = new Dictionary<long, (PtTable Table, int Index)>(mm.Tables.Count);
        Violation? found = null;
        string Where(PtTable t, int i) => $"{t.Level} entry {i} of table {t.Pfn:x} (va {mm.EntryVa(t, i):x})";
        forEach((t, i, e) =>
        {
            if (found is not null || !e.IsTable || t.Level == Engine.Config.PtLevel.Pte) return;
            var owner = k.Mem.OwnerOf(e.Pfn);
            if (owner != FrameOwner.PageTable)
                found = new(Name, $"{Where(t, i)} points at frame {e.Pfn:x} owned {owner}, not a page table");
            else if (!mm.TryGetTable(e.Pfn, out var child))
                found = new(Name, $"{Where(t, i)} points at frame {e.Pfn:x}, which is not a table of {mm.Name}");
            else if (child.Level != t.Level - 1)
                found = new(Name, $"{Where(t, i)} points at a {child.Level} table; expected {t.Level - 1}");
            else if (!parents.TryAdd(e.Pfn, (t, i)))
                found = new(Name, $"table {e.Pfn:x} has two parents: {Where(parents[e.Pfn].Table, parents[e.Pfn].Index)} and {Where(t, i)}");
        });
        if (found is not null) return found;
        if (k.LiveTasks.Count == 0)
        {
            PtTable? orphan = null; // the lowest-numbered one, so the evidence is deterministic
            foreach (var t in mm.Tables.Values)
                if (t != mm.Root && !parents.ContainsKey(t.Pfn) && (orphan is null || t.Pfn < orphan.Pfn)) orphan = t;
            if (orphan is not null)
                return new(Name, $"{orphan.Level} table {orphan.Pfn:x} (va {orphan.BaseVa:x}) is registered but no entry points at it and no task holds it");
        }
        return null;
    }
}
