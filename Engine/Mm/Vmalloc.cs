// mm/vmalloc.c, base-page subset: __vmalloc_node_range → __get_vm_area_node (VA reservation
// with a guard page) → __vmalloc_area_node (order-0 pages, vmap_pages_range) and vfree →
// remove_vm_area (unmap, flush) → free every page.
//
// Departures from the kernel: no lazy purge (vfree flushes at once, as vm_unmap_aliases would);
// huge (PMD) vmalloc mappings, VM_FLUSH_RESET_PERMS and direct-map permission changes belong to
// the huge-vmalloc mechanism and are not modelled here.
using PropertySuite.Engine.Config;

namespace PropertySuite.Engine.Mm;

/// <summary>A vm_struct: a reserved VA range and its backing pages.</summary>
public sealed class VmArea(ulong addr, ulong size, long[] pages)
{
    public ulong Addr { get; } = addr;
    /// <summary>Size without the guard page.</summary>
    public ulong Size { get; } = size;
    public long[] Pages { get; } = pages;
    public override string ToString() => $"vm_area [{Addr:x}, {Addr + Size:x}) {Pages.Length} pages";
}

/// <summary>The vmalloc allocator of one kernel.</summary>
public sealed class Vmalloc(ArchConfig arch, PhysMem mem, KernelPgtable pgtable, Smp.TlbFlush tlb, Breakage broken)
{
    private readonly SortedDictionary<ulong, VmArea> _areas = new();

    public IEnumerable<VmArea> Areas => _areas.Values;

    /// <summary>Lowest free VA for size + guard page, aligned to <paramref name="align"/>.</summary>
    private ulong FindVa(ulong size, ulong align)
    {
        ulong addr = (arch.VmallocStart + align - 1) & ~(align - 1);
        foreach (var a in _areas.Values)
        {
            if (addr + size + (ulong)arch.PageSize <= a.Addr) break;
            ulong next = a.Addr + a.Size + (ulong)arch.PageSize;
            if (next > addr) addr = (next + align - 1) & ~(align - 1);
        }
        return addr + size + (ulong)arch.PageSize <= arch.VmallocEnd ? addr : 0;
    }

    /// <summary>__vmalloc_node_range for base pages: returns the area or an errno. size must be
    /// a positive multiple of PAGE_SIZE (the caller rounds).</summary>
    [Kernel("mm/vmalloc.c", "__vmalloc_node_range")]
    public (VmArea? Area, Errno Err) VmallocNodeRange(ulong size)
    {
        if (size == 0 || size % (ulong)arch.PageSize != 0)
            throw new ModelBugException($"vmalloc size {size:x}: not a positive multiple of PAGE_SIZE");
        ulong addr = FindVa(size, (ulong)arch.PageSize);
        if (addr == 0) return (null, Errno.ENOMEM);
        long n = (long)(size >> arch.PageShift);
        var pages = new long[n];
        for (long i = 0; i < n; i++)
        {
            long pfn = mem.AllocPages(0, FrameOwner.Vmalloc);
            if (pfn < 0)
            {
                for (long j = 0; j < i; j++) mem.FreePages(pages[j], 0, FrameOwner.Vmalloc, "vmalloc unwind");
                return (null, Errno.ENOMEM);
            }
            pages[i] = pfn;
        }
        var area = new VmArea(addr, size, pages);
        _areas[addr] = area;
        for (long i = 0; i < n; i++)
        {
            var err = pgtable.VmapRangeNoflush(addr + (ulong)(i << arch.PageShift), pages[i], 1, PtLevel.Pte, writable: true);
            if (err != Errno.Ok)
            {
                // __vmalloc_area_node failure: __vfree what was set up.
                Vfree(area);
                return (null, err);
            }
        }
        return (area, Errno.Ok);
    }

    /// <summary>vfree: unmap, flush, free the pages, release the VA.</summary>
    [Kernel("mm/vmalloc.c", "vfree")]
    public void Vfree(VmArea area)
    {
        if (!_areas.Remove(area.Addr)) throw new ModelBugException($"vfree of unknown {area}");
        ulong end = area.Addr + area.Size;
        ulong unmapEnd = broken.VunmapSkipsLastPte ? end - (ulong)arch.PageSize : end;
        pgtable.VunmapRangeNoflush(area.Addr, unmapEnd);
        if (!broken.VunmapSkipsFlush) tlb.FlushTlbKernelRange(area.Addr, end);
        int n = area.Pages.Length - (broken.VfreeLeaksLastPage ? 1 : 0);
        for (int i = 0; i < n; i++) mem.FreePages(area.Pages[i], 0, FrameOwner.Vmalloc, "vfree");
    }

    /// <summary>Frames owned by live areas (for conservation checks).</summary>
    public long PagesInUse => _areas.Values.Sum(a => (long)a.Pages.Length);
}
