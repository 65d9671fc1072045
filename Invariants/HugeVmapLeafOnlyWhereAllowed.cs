using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// A PMD or PUD leaf, or an arm64 contiguous PTE run, in the vmalloc range belongs to one live vm area whose caller allowed huge
/// mappings under the kernel's policy (today: VM_ALLOW_HUGE_VMAP, as vmalloc_huge passes; in the
/// v5.13-v5.17 policy: PAGE_KERNEL protections, at least PMD_SIZE, no VM_NO_HUGE_VMAP; never with
/// nohugevmalloc), covers a naturally aligned part of that area, and maps a naturally aligned
/// physical range that is exactly the area's own pages at those offsets (a contiguous run: every
/// entry of the aligned run with the bit and the same permissions, consecutive frames; an ioremap area: its
/// own physical range, huge leaves allowed unless nohugeiomap). The policy is restated
/// here from the flags the caller passed, not taken from the engine's decision. Source:
/// mm/vmalloc.c __vmalloc_node_range, ioremap_page_range, vmap_pte_range and vmap_try_huge_pmd /
/// vmap_try_huge_pud; arch/arm64/include/asm/vmalloc.h arch_vmap_pte_range_map_size (06fc959fcff7); 559089e0a93d;
/// the v8 thread of "mm/vmalloc: Hugepage vmalloc mappings".
/// </summary>
public sealed class HugeVmapLeafOnlyWhereAllowed : IInvariant
{
    public string Name => nameof(HugeVmapLeafOnlyWhereAllowed);
    public string Claim => "every PMD/PUD leaf and contiguous PTE run in the vmalloc range lies inside one vm area that allowed huge mappings, aligned, whole, mapping that area's own aligned pages";
    public string Source => "mm/vmalloc.c __vmalloc_node_range, vmap_try_huge_pmd, vmap_try_huge_pud, vmap_pte_range; arm64 arch_vmap_pte_range_map_size (06fc959fcff7); 559089e0a93d";

    /// <summary>Incremental: the leaves of the ranges the step touched (entry stores in the
    /// vmalloc range, areas created, freed or changed), widened to whole contiguous runs; the
    /// full scan (<see cref="CheckFullScan"/>) is the oracle.</summary>
    public Violation? Check(IKernelView k)
    {
        var touched = VmallocStepRanges.Touched(k, (ulong)Math.Max(k.Arch.ContSize(PtLevel.Pte), 1));
        return touched.Count == 0 ? null : CheckRanges(k, touched);
    }

    /// <summary>Every leaf of the vmalloc range.</summary>
    public Violation? CheckFullScan(IKernelView k) => CheckRanges(k, [(k.Arch.VmallocStart, k.Arch.VmallocEnd)]);

    private Violation? CheckRanges(IKernelView k, List<(ulong Start, ulong End)> ranges)
    {
        var areas = k.Vmalloc.LiveAreas;
        ulong next = 0; // a leaf spanning two ranges is judged once
        foreach (var (start, end) in ranges)
            foreach (var w in k.SwapperPgDir.Leaves(start, end))
            {
                ulong va = k.SwapperPgDir.EntryVa(w.Table, w.Index);
                if (va < next) continue;
                next = va + k.SwapperPgDir.EntrySize(w.Table);
                if (JudgeLeaf(k, areas, w) is { } v) return v;
            }
        return null;
    }

    private Violation? JudgeLeaf(IKernelView k, IReadOnlyList<IVmAreaView> areas, PtWalk w)
    {
        var pt = k.SwapperPgDir;
        ulong page = (ulong)k.Arch.PageSize;
        if (w.Level == PtLevel.Pte)
            return w.Entry.Cont ? CheckContRun(k, w, areas) : null;
        ulong va = pt.EntryVa(w.Table, w.Index), size = pt.EntrySize(w.Table);
        int ai = VmallocStepRanges.Containing(areas, va);
        var a = ai < 0 ? null : areas[ai];
        if (a is null) return new(Name, $"{w.Level} leaf at {va:x} ({w.Entry}) lies in no live vm area");
        string d = VmallocMappingsExact.Describe(a);
        if (!Allowed(k, a)) return new(Name, $"{w.Level} leaf at {va:x} in {d}, which did not allow huge mappings under the {k.Vmalloc.Options.Huge} policy");
        if (va + size > a.Addr + a.Size) return new(Name, $"{w.Level} leaf [{va:x}, {va + size:x}) runs past the end of {d}");
        if ((((ulong)w.Entry.Pfn << k.Arch.PageShift) & (size - 1)) != 0)
            return new(Name, $"{w.Level} leaf at {va:x} maps pfn {w.Entry.Pfn:x}, not aligned to its size {size:x}");
        long first = (long)((va - a.Addr) / page), n = (long)(size / page);
        if (a.IoremapPfn is { } phys)
        {
            if (w.Entry.Pfn != phys + first)
                return new(Name, $"{w.Level} leaf at {va:x} maps pfn {w.Entry.Pfn:x}; page {first} of {d} is its frame {phys + first:x}");
            return null;
        }
        for (long j = 0; j < n; j++)
            if (first + j >= a.Pages.Count || a.Pages[(int)(first + j)] != w.Entry.Pfn + j)
                return new(Name, $"{w.Level} leaf at {va:x} maps pfn {w.Entry.Pfn + j:x} at page {first + j} of {d}, which does not own it there");
        return null;
    }

    /// <summary>The contiguous run a PTE with PTE_CONT belongs to (arm64): checked at its first
    /// entry. Every entry of the naturally aligned run of CONT_PTES is a leaf with the bit and the
    /// same permissions, the frames are consecutive from a naturally aligned first frame, and the
    /// run lies inside one area that allowed huge mappings, mapping its own frames.</summary>
    private Violation? CheckContRun(IKernelView k, PtWalk w, IReadOnlyList<IVmAreaView> areas)
    {
        var pt = k.SwapperPgDir;
        ulong page = (ulong)k.Arch.PageSize, cont = (ulong)k.Arch.ContSize(PtLevel.Pte);
        ulong va = pt.EntryVa(w.Table, w.Index), run = va & ~(cont - 1);
        int n = (int)(cont / page), first = w.Index - (int)((va - run) / page);
        if (cont == 0) return new(Name, $"PTE at {va:x} has the contiguous bit on {k.Arch.Name}, which has no contiguous PTEs");
        if (va != run)
        {
            // Judged at the run's first entry, which must itself be a contiguous leaf.
            var h = w.Table.Entries[first];
            return h.IsLeaf && h.Cont ? null
                : new(Name, $"PTE at {va:x} has the contiguous bit, but the first entry of its run [{run:x}, {run + cont:x}) is {h}");
        }
        var head = w.Table.Entries[first];
        for (int j = 0; j < n; j++)
        {
            var e = w.Table.Entries[first + j];
            if (!e.IsLeaf || !e.Cont || e.Pfn != head.Pfn + j || e.Writable != head.Writable || e.Exec != head.Exec)
                return new(Name, $"contiguous PTE run [{run:x}, {run + cont:x}): entry {j} is {e}, the run starts with {head}; every entry must map the next frame with the bit and the same permissions");
        }
        if ((((ulong)head.Pfn << k.Arch.PageShift) & (cont - 1)) != 0)
            return new(Name, $"contiguous PTE run at {run:x} maps pfn {head.Pfn:x}, not aligned to its size {cont:x}");
        int ai = VmallocStepRanges.Containing(areas, run);
        var a = ai < 0 ? null : areas[ai];
        if (a is null) return new(Name, $"contiguous PTE run at {run:x} lies in no live vm area");
        string d = VmallocMappingsExact.Describe(a);
        if (!Allowed(k, a)) return new(Name, $"contiguous PTE run at {run:x} in {d}, which did not allow huge mappings under the {k.Vmalloc.Options.Huge} policy");
        if (run + cont > a.Addr + a.Size) return new(Name, $"contiguous PTE run [{run:x}, {run + cont:x}) runs past the end of {d}");
        long at = (long)((run - a.Addr) / page);
        long? want = a.IoremapPfn is { } phys ? phys + at : at < a.Pages.Count ? a.Pages[(int)at] : null;
        if (head.Pfn != want) return new(Name, $"contiguous PTE run at {run:x} maps pfn {head.Pfn:x} at page {at} of {d}, which does not own it there");
        return null;
    }

    private static bool Allowed(IKernelView k, IVmAreaView a) => (a.Flags & VmFlags.VmIoremap) != 0 ? !k.Vmalloc.Options.NoHugeIomap : k.Vmalloc.Options.Huge switch
    {
        VmallocHugePolicy.OptIn => (a.Flags & VmFlags.VmAllowHugeVmap) != 0,
        VmallocHugePolicy.PageKernelAtLeastPmd => a.Writable && (a.Flags & VmFlags.VmNoHugeVmap) == 0 && a.Size >= (ulong)k.Arch.PmdSize,
        _ => false,
    };
}
