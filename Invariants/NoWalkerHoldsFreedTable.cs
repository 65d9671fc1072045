using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// No task in the middle of a page-table walk holds a table page that has been freed (or freed
/// and reused as another table): every table a walker holds is still the table of its tree that
/// it read. A walker holds the tables on its path from the root until it returns from them; the
/// kernel keeps them alive by excluding the code that frees tables (ptdump under
/// get_online_mems() against hot-remove's mem_hotplug_begin(); vmalloc's walks against hot-remove
/// by never sharing a table with a region hot-remove frees, which is free_empty_tables'
/// floor/ceiling check). Source: S004 (the vmalloc vs hot-remove conflict, ptdump's locking);
/// mm/ptdump.c ptdump_walk_pgd ("mm/ptdump: take the memory hotplug lock inside
/// ptdump_walk_pgd()", 2025); arch/arm64/mm/mmu.c free_empty_tables, pgtable_range_aligned.
/// </summary>
public sealed class NoWalkerHoldsFreedTable : IInvariant
{
    public string Name => nameof(NoWalkerHoldsFreedTable);
    public string Claim => "every page-table page a walker holds in the middle of a walk is still a live table of its tree";
    public string Source => "S004; mm/ptdump.c ptdump_walk_pgd; arch/arm64/mm/mmu.c free_empty_tables";

    public Violation? Check(IKernelView k)
    {
        foreach (var h in k.Hotplug.HeldTables)
        {
            if (h.Task.Done) continue;
            if (!h.Pgd.TryGetTable(h.Table.Pfn, out var now))
                return new(Name, $"{h}: the table page was freed (frame now {k.Mem.OwnerOf(h.Table.Pfn)})");
            if (!ReferenceEquals(now, h.Table))
                return new(Name, $"{h}: the page was freed and reused as the {now.Level} table at va {now.BaseVa:x}");
        }
        return null;
    }
}
