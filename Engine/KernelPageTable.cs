// Kernel page-table operations on init_mm: map a range at a leaf size (vmap_range_noflush,
// vmap_pte_range), unmap (vunmap_range_noflush), split a block into a table (split_vmemmap_huge_pmd,
// arm64 split_pmd), change permissions (set_memory_ro/rw on the vmalloc alias), and free empty
// tables (arch/arm64/mm/mmu.c free_empty_tables with its floor/ceiling check).
//
// None of these flush the TLB: callers do, as in the kernel (the *_noflush convention).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine;

public sealed partial class Kernel
{
    /// <summary>Maps [va, va + pages * PAGE_SIZE) to [pfn, ...) with leaves at <paramref name="level"/>.
    /// va and pfn must be aligned to the leaf size. Allocates missing tables; ENOMEM leaves what
    /// was already mapped in place (the caller unwinds, as __vmalloc_area_node does).</summary>
    public Errno MapKernelRange(ulong va, long pfn, long pages, PtLevel level, bool writable)
    {
        long leafPages = Arch.LevelSize(level) >> Arch.PageShift;
        if (!Arch.LeafAllowed(level) || (int)level >= Arch.Levels)
            throw new ModelBugException($"map at {va:x}: no leaf at {level} on {Arch.Name}");
        if ((va & (ulong)(Arch.LevelSize(level) - 1)) != 0 || (pfn & (leafPages - 1)) != 0 || pages % leafPages != 0)
            throw new ModelBugException($"map at {va:x} pfn {pfn:x} pages {pages}: not aligned to the {level} leaf size");
        for (long i = 0; i < pages; i += leafPages)
        {
            ulong a = va + (ulong)(i << Arch.PageShift);
            var t = InitMm.WalkAlloc(a, level, AllocPageTablePage, out var err);
            if (t is null) return err;
            int idx = InitMm.Index(a, level);
            if (!t.Entries[idx].IsNone)
                throw new ModelBugException($"map at {a:x}: {level} entry already {t.Entries[idx]}");
            InitMm.Set(t, idx, Pte.MkLeaf(pfn + i, writable));
        }
        return Errno.Ok;
    }

    /// <summary>vunmap_range_noflush: clears every leaf in [start, end). A leaf that straddles a
    /// boundary is a caller bug the kernel WARNs about; it is recorded and left mapped.</summary>
    public void UnmapKernelRange(ulong start, ulong end)
    {
        foreach (var w in InitMm.Leaves(start, end).ToList())
        {
            ulong va = InitMm.EntryVa(w.Table, w.Index), size = InitMm.EntrySize(w.Table);
            if (!VaRange.Contains(start, end, va, va + size))
            {
                RecordFault(FaultKind.KernelBug, Current, va, $"unmap [{start:x}, {end:x}) splits a {w.Level} leaf at {va:x}");
                continue;
            }
            InitMm.Set(w.Table, w.Index, Pte.None);
        }
    }

    /// <summary>Changes the write permission of every leaf in [start, end) (no flush).</summary>
    public void ProtectKernelRange(ulong start, ulong end, bool writable)
    {
        foreach (var w in InitMm.Leaves(start, end).ToList())
            InitMm.Set(w.Table, w.Index, w.Entry.WithWritable(writable));
    }

    /// <summary>Splits the block leaf at (<paramref name="t"/>, <paramref name="index"/>) into a
    /// table of leaves one level down that map the same frames with the same permission.
    /// Installs the table over the live block (the caller decides whether that is allowed).
    /// Returns the new table, or null on ENOMEM.</summary>
    public PtTable? SplitBlock(PtTable t, int index)
    {
        Pte block = t.Entries[index];
        if (!block.IsLeaf || t.Level == PtLevel.Pte)
            throw new ModelBugException($"split of {t.Level} entry {index} of table {t.Pfn:x}: not a block ({block})");
        long pfn = AllocPageTablePage();
        if (pfn < 0) return null;
        var child = InitMm.NewTable(pfn, t.Level - 1, InitMm.EntryVa(t, index));
        long step = Arch.LevelSize(child.Level) >> Arch.PageShift;
        for (int i = 0; i < child.Entries.Length; i++)
            InitMm.Set(child, i, Pte.MkLeaf(block.Pfn + i * step, block.Writable));
        InitMm.Set(t, index, Pte.MkTable(pfn));
        return child;
    }

    /// <summary>pgtable_range_aligned: whether the table covering [start, end) at the given mask
    /// lies wholly inside [floor, ceiling) (borrowed by arm64 from free_pgd_range).</summary>
    public static bool PgtableRangeAligned(ulong start, ulong end, ulong floor, ulong ceiling, ulong mask)
    {
        start &= mask;
        if (start < floor) return false;
        if (ceiling != 0)
        {
            ceiling &= mask;
            if (ceiling == 0) return false;
        }
        return end - 1 <= ceiling - 1;
    }

    /// <summary>free_empty_tables (arch/arm64/mm/mmu.c): bottom-up, frees every table page under
    /// [start, end) whose entries are all none and whose span lies inside [floor, ceiling):
    /// clear the parent entry, flush the walk cache for the span, free the page. The root is
    /// never freed. Returns the number of table pages freed.</summary>
    public int FreeEmptyTables(ulong start, ulong end, ulong floor, ulong ceiling)
    {
        int freed = 0;
        FreeEmptyTablesBelow(InitMm.Root, start, end, floor, ceiling, ref freed);
        return freed;
    }

    private void FreeEmptyTablesBelow(Mm.PtTable t, ulong start, ulong end, ulong floor, ulong ceiling, ref int freed)
    {
        ulong size = InitMm.EntrySize(t);
        for (int i = 0; i < t.Entries.Length; i++)
        {
            ulong va = InitMm.EntryVa(t, i);
            if (!VaRange.Overlaps(va, va + size, start, end)) continue;
            Pte e = t.Entries[i];
            if (!InitMm.TryGetChild(t, e, out var child)) continue;
            FreeEmptyTablesBelow(child, start, end, floor, ceiling, ref freed);
            if (child.Used != 0) continue;
            if (!PgtableRangeAligned(va, va + size, floor, ceiling, ~(size - 1))) continue;
            if (!Variant.BrokenFreeTableKeepsParentEntry) InitMm.Set(t, i, Pte.None);
            FlushTlbKernelRange(va, va + size); // __flush_tlb_kernel_pgtable
            InitMm.ForgetTable(child);
            Mem.FreePages(child.Pfn, 0, FrameOwner.PageTable, "free_empty_tables");
            freed++;
        }
    }
}
