using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// Every live vm area maps exactly its own backing pages: page i of [addr, addr + size) maps
/// pages[i] with the protection set_memory_* last gave it, whatever the leaf size, except the
/// pages its owner took out with vunmap_range (a vmap user unmapping part of its buffer), which
/// are not mapped at all; an ioremap area maps its physical range instead, page i at the i-th
/// frame of it (ioremap_page_range); its guard page is neither mapped
/// nor part of another area; and nothing else in [VMALLOC_START, VMALLOC_END) is mapped at all
/// (a freed area is unmapped at once by remove_vm_area, only its TLB flush is lazy). Compares the
/// page table, walked, with the vm_struct's own record (addr, size, pages[]), the two things
/// vmalloc_to_page and the hardware each rely on. Source: mm/vmalloc.c __vmalloc_area_node,
/// vmap_pages_range, vmap, vunmap_range_noflush, ioremap_page_range, __get_vm_area_node (the guard page), remove_vm_area.
/// </summary>
public sealed class VmallocMappingsExact : IInvariant
{
    public string Name => nameof(VmallocMappingsExact);
    public string Claim => "each live vm area maps exactly its pages[] (an ioremap area: its physical range) at their offsets, except the pages its owner vunmap_range'd, which are unmapped; its guard page is unmapped and unshared, and nothing else in the vmalloc range is mapped";
    public string Source => "mm/vmalloc.c __vmalloc_area_node, vmap_pages_range, vmap, vunmap_range_noflush, ioremap_page_range, __get_vm_area_node, remove_vm_area";

    /// <summary>Incremental: the leaves of the ranges the step touched (entry stores in the
    /// vmalloc range, areas created, freed or changed) and the areas overlapping them; the full
    /// scan (<see cref="CheckFullScan"/>) is the oracle.</summary>
    public Violation? Check(IKernelView k)
    {
        var touched = VmallocStepRanges.Touched(k, 1);
        return touched.Count == 0 ? null : CheckRanges(k, touched, all: false);
    }

    /// <summary>Every leaf of the vmalloc range and every live area.</summary>
    public Violation? CheckFullScan(IKernelView k) => CheckRanges(k, [(k.Arch.VmallocStart, k.Arch.VmallocEnd)], all: true);

    private Violation? CheckRanges(IKernelView k, List<(ulong Start, ulong End)> touched, bool all)
    {
        var areas = k.Vmalloc.LiveAreas;
        var pt = k.SwapperPgDir;
        ulong page = (ulong)k.Arch.PageSize;
        // The areas judged whole: those the touched ranges overlap (with their guard pages); their
        // ranges join the scan so that their mapped pages can be counted.
        var judged = new bool[areas.Count];
        var scan = new List<(ulong Start, ulong End)>(touched);
        for (int i = 0; i < areas.Count; i++)
        {
            var a = areas[i];
            if (!all && !VmallocStepRanges.Overlaps(touched, a.Addr, a.Addr + a.Size + a.GuardSize)) continue;
            judged[i] = true;
            if (!all) scan.Add((a.Addr, a.Addr + a.Size));
        }
        scan = VmallocStepRanges.Merge(scan);
        var mapped = new long[areas.Count];
        ulong next = 0; // a leaf spanning two scanned ranges is judged once
        foreach (var (start, end) in scan)
            foreach (var w in pt.Leaves(start, end))
            {
                ulong va = pt.EntryVa(w.Table, w.Index), size = pt.EntrySize(w.Table);
                if (va < next) continue;
                next = va + size;
                if (JudgeLeaf(k, areas, w, va, size, page, mapped) is { } v) return v;
            }
        for (int i = 0; i < areas.Count; i++)
        {
            if (!judged[i] && !(i + 1 < areas.Count && judged[i + 1])) continue;
            var a = areas[i];
            if (judged[i] && !a.Populating) // an area still being mapped by its task is not counted
            {
                long want = (long)(a.Size / page), kept = want - a.UnmappedCount;
                if (mapped[i] != kept || a.Pages.Count != (a.IoremapPfn is null ? want : 0))
                    return new(Name, $"{Describe(a)} maps {mapped[i]} of the {kept} of its {want} pages its owner has not vunmap_range'd (pages[] holds {a.Pages.Count}){FirstUnmapped(k, a)}");
            }
            // __get_vm_area_node adds one guard page unless the caller passed VM_NO_GUARD.
            ulong guard = (a.Flags & VmFlags.VmNoGuard) != 0 ? 0 : page;
            if (i + 1 < areas.Count && areas[i + 1].Addr < a.Addr + a.Size + guard)
                return new(Name, $"the guard page of {Describe(a)} at {a.Addr + a.Size:x} belongs to {Describe(areas[i + 1])}");
        }
        return null;
    }

    /// <summary>One leaf of the vmalloc range: inside a live area, mapping that area's page (or
    /// physical frame) at its offset with the recorded protection; counted towards the area.</summary>
    private Violation? JudgeLeaf(IKernelView k, IReadOnlyList<IVmAreaView> areas, PtWalk w, ulong va, ulong size, ulong page, long[] mapped)
    {
        int ai = VmallocStepRanges.Containing(areas, va);
        if (ai < 0)
            return new(Name, $"{w.Level} leaf at {va:x} ({w.Entry}) lies in no live vm area{GuardOf(areas, va)}");
        var a = areas[ai];
        if (va + size > a.Addr + a.Size)
            return new(Name, $"{w.Level} leaf [{va:x}, {va + size:x}) runs past the end {a.Addr + a.Size:x} of {Describe(a)}");
        long first = (long)((va - a.Addr) / page), n = (long)(size / page);
        if (a.IoremapPfn is { } phys)
        {
            // An ioremap area maps its physical range, page i at IoremapPfn + i, as ioremap made it.
            if (a.UnmappedCount > 0)
                for (long j = 0; j < n; j++)
                    if (a.PageUnmapped(first + j))
                        return new(Name, $"{va + (ulong)j * page:x} (page {first + j} of {Describe(a)}) is mapped by a {w.Level} leaf ({w.Entry}), but its owner unmapped it with vunmap_range");
            if (w.Entry.Pfn != phys + first || !w.Entry.Writable || w.Entry.Exec)
                return new(Name, $"{w.Level} leaf at {va:x} is {w.Entry}; page {first} of {Describe(a)} is its physical frame {phys + first:x}, RW, not executable");
            mapped[ai] += n;
            return null;
        }
        for (long j = 0; j < n; j++)
        {
            if (a.PageUnmapped(first + j))
                return new(Name, $"{va + (ulong)j * page:x} (page {first + j} of {Describe(a)}) is mapped by a {w.Level} leaf ({w.Entry}), but its owner unmapped it with vunmap_range");
            if (w.Entry.Writable != a.PageWritable(first + j) || w.Entry.Exec != a.PageExec(first + j))
                return new(Name, $"{w.Level} leaf at {va:x} is {Prot(w.Entry.Writable, w.Entry.Exec)}, page {first + j} of {Describe(a)} should be {Prot(a.PageWritable(first + j), a.PageExec(first + j))}");
            long want = first + j < a.Pages.Count ? a.Pages[(int)(first + j)] : -1;
            if (w.Entry.Pfn + j != want)
                return new(Name, $"{va + (ulong)j * page:x} (page {first + j} of {Describe(a)}) maps pfn {w.Entry.Pfn + j:x}, pages[] has {(want < 0 ? "no such page" : $"pfn {want:x}")}");
        }
        mapped[ai] += n;
        return null;
    }

    private static string FirstUnmapped(IKernelView k, IVmAreaView a)
    {
        ulong page = (ulong)k.Arch.PageSize;
        for (long j = 0; j < (long)(a.Size / page) && j < 1 << 20; j++)
            if (!a.PageUnmapped(j) && !k.SwapperPgDir.Walk(a.Addr + (ulong)j * page).Entry.IsLeaf)
                return $": page {j} at {a.Addr + (ulong)j * page:x} is not mapped";
        return "";
    }

    private static string GuardOf(IReadOnlyList<IVmAreaView> areas, ulong va)
    {
        foreach (var a in areas)
            if (va >= a.Addr + a.Size && va - (a.Addr + a.Size) < 4096) return $": it is the guard page of {Describe(a)}";
        return "";
    }

    private static string Prot(bool writable, bool exec) => (writable ? "RW" : "RO") + (exec ? "X" : "");

    internal static string Describe(IVmAreaView a) => a.IoremapPfn is { } phys
        ? $"ioremap area [{a.Addr:x}, {a.Addr + a.Size:x}) of the frames from {phys:x}"
        : $"vm area [{a.Addr:x}, {a.Addr + a.Size:x}) ({a.Pages.Count} pages, order {a.PageOrder}, {a.Flags})";
}
