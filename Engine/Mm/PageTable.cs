// A multi-level page-table radix tree: include/linux/pgtable.h, mm/pgtable-generic.c, the
// kernel's pgd/p4d/pud/pmd/pte walkers (mm/pagewalk.c, mm/vmalloc.c vmap_*_range,
// arch/arm64/mm/mmu.c), __pte_alloc_kernel / pmd_populate_kernel, split of a block into a table.
//
// Every table is a frame from the allocator (owner PageTable). An entry is none, a table
// pointer or a leaf (PTE, or a PMD/PUD block). Folded levels are simply absent: with N levels the
// root is at level N-1. Every store to an entry goes through Set, which tells the observer (the
// kernel's TLB bookkeeping and the arm64 break-before-make check) what changed and where.
//
// Departures from the kernel: no memory ordering (stores are visible at once to walkers that
// run later); page-table locks are modelled by the callers (Kernel), not here.
using PropertySuite.Engine.Config;

namespace PropertySuite.Engine.Mm;

/// <summary>Allocates one page-table page (__get_free_page(GFP_PGTABLE_KERNEL), or memblock
/// at boot) into <paramref name="pfn"/>; false on ENOMEM.</summary>
public delegate bool PtAllocator(out long pfn);

/// <summary>One page-table page.</summary>
public sealed class PtTable(long pfn, PtLevel level, ulong baseVa, int entries)
{
    public long Pfn { get; } = pfn;
    public PtLevel Level { get; } = level;
    /// <summary>First virtual address translated by entry 0.</summary>
    public ulong BaseVa { get; } = baseVa;
    /// <summary>The entries, read-only: every store goes through <see cref="PageTable.Set"/>.</summary>
    public PtEntries Entries { get; } = new(entries);
    /// <summary>Number of entries that are not none.</summary>
    public int Used { get; internal set; }

    /// <summary>Indices of the entries that point at lower tables (above PTE level), ascending;
    /// kept by <see cref="PageTable.Set"/> so that walks over the tree's structure need not read
    /// every leaf.</summary>
    public IReadOnlyCollection<int> TableEntryIndices => (IReadOnlyCollection<int>?)_tableEntries ?? [];
    internal SortedSet<int>? _tableEntries;
}

/// <summary>The entries of one table page. Read-only to everyone but <see cref="PageTable"/>.</summary>
public sealed class PtEntries : IReadOnlyList<Pte>
{
    internal readonly Pte[] Items;

    internal PtEntries(int count) => Items = new Pte[count];

    public Pte this[int index] => Items[index];
    public int Length => Items.Length;
    public int Count => Items.Length;
    public IEnumerator<Pte> GetEnumerator() => ((IEnumerable<Pte>)Items).GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => Items.GetEnumerator();
}

/// <summary>Receives every entry change, in order.</summary>
public interface IPteObserver
{
    void OnPteChange(PageTable mm, PtTable table, int index, Pte oldPte, Pte newPte);
}

/// <summary>Result of a software walk: the last entry reached, its table and index.</summary>
public readonly record struct PtWalk(PtTable Table, int Index, Pte Entry)
{
    public PtLevel Level => Table.Level;
    public bool IsLeaf => Entry.IsLeaf;
}

/// <summary>A page-table tree (init_mm or a user mm).</summary>
public sealed class PageTable : IPageTableView
{
    private readonly ArchConfig _arch;
    private readonly Dictionary<long, PtTable> _tables = new();
    // Every table entry (above PTE level), reachable or not, by the frame it points at: the
    // tables holding such an entry, once per entry. Lets a change below propagate upwards.
    private readonly Dictionary<long, List<PtTable>> _parentsOf = new();
    private readonly Dictionary<(ulong, ulong), LeafFrameIndex> _leafIndexes = new();
    // Departures from a tree that make a walk by address differ from a walk of every path: frames
    // with two or more table entries pointing at them, and table entries leading to a registered
    // table one level down whose BaseVa is not the address the entry translates.
    private int _sharedTargets, _misplaced;

    public string Name { get; }
    public PtTable Root { get; }
    public IPteObserver? Observer { get; set; }

    /// <summary>Every table page of this tree, by PFN, including ones not (yet) linked.</summary>
    public IReadOnlyDictionary<long, PtTable> Tables => _tables;
    public ArchConfig Arch => _arch;

    public PageTable(ArchConfig arch, string name, long rootPfn, ulong vaBase)
    {
        _arch = arch;
        Name = name;
        Root = NewTable(rootPfn, arch.TopLevel, vaBase);
    }

    /// <summary>VA base for the kernel half: every bit above VA_BITS set.</summary>
    public static ulong KernelVaBase(ArchConfig arch) => ~((1UL << arch.VaBits) - 1);

    /// <summary>Registers a fresh, empty table page (the frame is already owned PageTable).</summary>
    public PtTable NewTable(long pfn, PtLevel level, ulong baseVa)
    {
        var t = new PtTable(pfn, level, baseVa, _arch.PtrsPerLevel(level));
        if (!_tables.TryAdd(pfn, t)) throw new ModelBugException($"{Name}: table page {pfn:x} registered twice");
        _misplaced += MisplacedEntriesTo(pfn);
        InvalidateParentsOf(pfn); // a stale entry pointing at this frame now leads somewhere
        return t;
    }

    private readonly List<long> _forgottenThisStep = new();

    /// <summary>The frames of the tables forgotten since <see cref="ClearStepRecords"/> (the
    /// kernel calls it when a step begins), in order.</summary>
    public IReadOnlyList<long> TablesForgottenThisStep => _forgottenThisStep;

    /// <summary>A step begins: the per-step records start empty.</summary>
    public void ClearStepRecords() => _forgottenThisStep.Clear();

    /// <summary>Forgets a table page (its frame is being freed by the caller).</summary>
    public void ForgetTable(PtTable t)
    {
        _misplaced -= MisplacedEntriesTo(t.Pfn);
        if (!_tables.Remove(t.Pfn)) throw new ModelBugException($"{Name}: table page {t.Pfn:x} forgotten twice");
        _forgottenThisStep.Add(t.Pfn);
        foreach (var index in _leafIndexes.Values) index.Forget(t);
        InvalidateParentsOf(t.Pfn);
    }

    /// <summary>The tables holding an entry that points at frame <paramref name="pfn"/> as a
    /// lower table (one item per such entry; reachable from the root or not).</summary>
    public IReadOnlyList<PtTable> ParentsOf(long pfn) => _parentsOf.TryGetValue(pfn, out var l) ? l : [];

    /// <inheritdoc cref="IPageTableView.IsCanonicalTree"/>
    public bool IsCanonicalTree => _sharedTargets == 0 && _misplaced == 0;

    private bool Misplaced(PtTable parent, int index, long target) =>
        _tables.TryGetValue(target, out var c) && c.Level == parent.Level - 1 && c.BaseVa != EntryVa(parent, index);

    /// <summary>How many table entries pointing at <paramref name="pfn"/> are misplaced (only a
    /// corrupt tree has any parent entry when a table is registered or forgotten).</summary>
    private int MisplacedEntriesTo(long pfn)
    {
        if (!_parentsOf.TryGetValue(pfn, out var parents)) return 0;
        int n = 0;
        foreach (var p in parents.Distinct())
            foreach (int i in p.TableEntryIndices)
                if (p.Entries[i].Pfn == pfn && Misplaced(p, i, pfn)) n++;
        return n;
    }

    private void InvalidateParentsOf(long pfn)
    {
        if (_leafIndexes.Count == 0 || !_parentsOf.TryGetValue(pfn, out var parents)) return;
        foreach (var index in _leafIndexes.Values)
            foreach (var p in parents) index.Invalidate(p);
    }

    /// <summary>The frames mapped by leaves intersecting [start, end), kept up to date
    /// incrementally (one index per range, created on first use). It always equals what a walk of
    /// <see cref="Leaves"/> over the same range would find.</summary>
    public LeafFrameIndex LeafFrames(ulong start, ulong end)
    {
        if (!_leafIndexes.TryGetValue((start, end), out var index))
            _leafIndexes[(start, end)] = index = new LeafFrameIndex(this, start, end);
        return index;
    }

    public bool TryGetTable(long pfn, out PtTable table) => _tables.TryGetValue(pfn, out table!);

    /// <summary>The lower table entry <paramref name="e"/> of <paramref name="t"/> leads to: a
    /// table entry above PTE level pointing at a registered table one level down. Every walker
    /// descends only through this, so a dangling entry or a table of the wrong level ends a walk
    /// (PageTableTreeWellFormed reports both) and no corruption can make a walk loop.</summary>
    public bool TryGetChild(PtTable t, Pte e, out PtTable child)
    {
        if (e.IsTable && t.Level > PtLevel.Pte && _tables.TryGetValue(e.Pfn, out child!) && child.Level == t.Level - 1) return true;
        child = null!;
        return false;
    }

    public int Index(ulong va, PtLevel level) =>
        (int)((va >> _arch.LevelShift(level)) & (ulong)(_arch.PtrsPerLevel(level) - 1));

    /// <summary>The first virtual address translated by entry <paramref name="index"/> of <paramref name="t"/>.</summary>
    public ulong EntryVa(PtTable t, int index) => t.BaseVa + ((ulong)index << _arch.LevelShift(t.Level));

    public ulong EntrySize(PtTable t) => 1UL << _arch.LevelShift(t.Level);

    /// <summary>The single mutation point: stores an entry and tells the observer.</summary>
    public void Set(PtTable t, int index, Pte value)
    {
        Pte old = t.Entries.Items[index];
        if (old == value) return;
        t.Entries.Items[index] = value;
        if (old.IsNone) t.Used++;
        else if (value.IsNone) t.Used--;
        if (t.Level > PtLevel.Pte && (old.IsTable || value.IsTable))
        {
            if (old.IsTable)
            {
                t._tableEntries!.Remove(index);
                var l = _parentsOf[old.Pfn];
                if (l.Count == 2) _sharedTargets--;
                if (Misplaced(t, index, old.Pfn)) _misplaced--;
                l.Remove(t);
                if (l.Count == 0) _parentsOf.Remove(old.Pfn);
            }
            if (value.IsTable)
            {
                (t._tableEntries ??= new()).Add(index);
                if (!_parentsOf.TryGetValue(value.Pfn, out var l)) _parentsOf[value.Pfn] = l = new(1);
                l.Add(t);
                if (l.Count == 2) _sharedTargets++;
                if (Misplaced(t, index, value.Pfn)) _misplaced++;
            }
        }
        foreach (var leafIndex in _leafIndexes.Values) leafIndex.Invalidate(t);
        Observer?.OnPteChange(this, t, index, old, value);
    }

    /// <summary>A software walk of <paramref name="va"/>: stops at the first leaf or none entry.
    /// A table entry pointing at a page that is not a table of this tree is a model bug.</summary>
    public PtWalk Walk(ulong va)
    {
        PtTable t = Root;
        while (true)
        {
            int i = Index(va, t.Level);
            Pte e = t.Entries[i];
            if (!e.IsTable || t.Level == PtLevel.Pte) return new PtWalk(t, i, e);
            if (!TryGetChild(t, e, out var next))
                return new PtWalk(t, i, e); // dangling: callers and invariants see a table entry to nowhere
            t = next;
        }
    }

    /// <summary>Walks down to the table at <paramref name="level"/> that covers <paramref name="va"/>,
    /// allocating missing tables with <paramref name="allocTable"/> (false on ENOMEM).
    /// Returns null on ENOMEM or when a leaf above <paramref name="level"/> covers va.</summary>
    public PtTable? WalkAlloc(ulong va, PtLevel level, PtAllocator allocTable, out Errno err)
    {
        err = Errno.Ok;
        PtTable t = Root;
        while (t.Level > level)
        {
            int i = Index(va, t.Level);
            Pte e = t.Entries[i];
            if (e.IsLeaf) { err = Errno.EBUSY; return null; }
            if (e.IsNone)
            {
                if (!allocTable(out long pfn)) { err = Errno.ENOMEM; return null; }
                var child = NewTable(pfn, t.Level - 1, EntryVa(t, i));
                Set(t, i, Pte.MkTable(pfn)); // pmd_populate_kernel and friends
                t = child;
                continue;
            }
            if (!TryGetChild(t, e, out var next))
                throw new ModelBugException($"{Name}: entry {i} of table {t.Pfn:x} points at {e.Pfn:x}, not a {t.Level - 1} table of this tree");
            t = next;
        }
        return t;
    }

    /// <summary>Every leaf intersecting [start, end) in address order (an end of 0 is the top
    /// of the address space, as in the kernel's walkers).</summary>
    public IEnumerable<PtWalk> Leaves(ulong start, ulong end)
    {
        var found = new List<PtWalk>();
        if (end == 0 || start < end) Collect(Root, start, end - 1, found);
        return found;
    }

    private void Collect(PtTable t, ulong start, ulong last, List<PtWalk> acc)
    {
        ulong size = EntrySize(t);
        ulong firstIndex = start <= t.BaseVa ? 0 : (start - t.BaseVa) / size;
        if (firstIndex >= (ulong)t.Entries.Length) return;
        for (int i = (int)firstIndex; i < t.Entries.Length; i++)
        {
            ulong va = EntryVa(t, i);
            if (va > last) break;
            Pte e = t.Entries[i];
            if (e.IsLeaf) acc.Add(new PtWalk(t, i, e));
            else if (TryGetChild(t, e, out var child))
                Collect(child, start, last, acc);
        }
    }

    /// <summary>Every table entry (above PTE level) of every table reachable from the root,
    /// depth-first in address order: the same visits, in the same order, as
    /// <see cref="ForEachEntry"/> restricted to table entries, without reading the leaves.</summary>
    public void ForEachTableEntry(Action<PtTable, int, Pte> visit) => VisitTables(Root, visit);

    /// <summary>Every table entry of <paramref name="from"/> and of the tables below it, as
    /// the walk from the root visits them.</summary>
    public void ForEachTableEntry(PtTable from, Action<PtTable, int, Pte> visit) => VisitTables(from, visit);

    private void VisitTables(PtTable t, Action<PtTable, int, Pte> visit)
    {
        if (t._tableEntries is null) return;
        foreach (int i in t._tableEntries)
        {
            Pte e = t.Entries[i];
            visit(t, i, e);
            if (TryGetChild(t, e, out var child)) VisitTables(child, visit);
        }
    }

    /// <summary>Every (table, index, entry) that is not none, depth-first in address order.</summary>
    public void ForEachEntry(Action<PtTable, int, Pte> visit) => Visit(Root, visit);

    private void Visit(PtTable t, Action<PtTable, int, Pte> visit)
    {
        for (int i = 0; i < t.Entries.Length; i++)
        {
            Pte e = t.Entries[i];
            if (e.IsNone) continue;
            visit(t, i, e);
            if (TryGetChild(t, e, out var child)) Visit(child, visit);
        }
    }
}
