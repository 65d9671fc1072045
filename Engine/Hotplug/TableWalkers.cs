// Page-table pointers held by kernel walkers in the middle of a walk (ptdump's walk_pgd_range,
// ...): a walker that has read a table entry and descended holds the table page it is in, and
// every table above it on its stack, until it returns. The kernel keeps such a pointer in a local
// variable; the model records it so that an invariant can check that nothing frees a table a
// walker still holds (NoWalkerHoldsFreedTable). Which lock or RCU section protects the walk is
// the walker's business; this record only says what it holds.
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Hotplug;

/// <summary>A table page a walker holds: the task, what walk it is, the table object it read
/// (reference identity: a freed and reallocated table page is a different object) and the
/// address range the table maps.</summary>
public sealed record HeldTable(KernelTask Task, string Walker, PageTable Pgd, PtTable Table)
{
    public override string ToString() => $"{Walker} (task {Task.Id}) holds {Table.Level} table {Table.Pfn:x} of {Pgd.Name} (va {Table.BaseVa:x})";
}

public sealed class TableWalkers
{
    private readonly List<HeldTable> _held = new();

    public IReadOnlyList<HeldTable> Held => _held;

    public void Hold(KernelTask task, string walker, PageTable pgd, PtTable table) => _held.Add(new HeldTable(task, walker, pgd, table));

    /// <summary>The walker leaves <paramref name="table"/> (returns from the level that read it).</summary>
    public void Release(KernelTask task, PtTable table)
    {
        int i = _held.FindLastIndex(h => h.Task == task && h.Table == table);
        if (i < 0) throw new ModelBugException($"task {task.Id} releases table {table.Pfn:x} it does not hold");
        _held.RemoveAt(i);
    }

    /// <summary>Drops whatever a finished task still holds (a walk that ended early).</summary>
    public void ReleaseAll(KernelTask task) => _held.RemoveAll(h => h.Task == task);
}
