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
public sealed class Vmalloc(Kernel k)
{
    private readonly SortedDictionary<ulong, VmArea> _areas = new();

    public IEnumerable<VmArea> Areas => _areas.Values;

    /// <summary>Lowest free VA for size + guard page, aligned to <paramref name="align"/>.</summary>
    private ulong FindVa(ulong size, ulong align)
    {
        ulong addr = (k.Arch.VmallocStart + align - 1) & ~(align - 1);
        foreach (var a in _areas.Values)
        {
            if (addr + size + (ulong)k.Arch.PageSize <= a.Addr) break;
            ulong next = a.Addr + a.Size + (ulong)k.Arch.PageSize;
            if (next > addr) addr = (next + align - 1) & ~(align - 1);
        }
        return addr + size <= k.Arch.VmallocEnd ? addr : 0;
    }

    /// <summary>vmalloc(size): returns the area or an errno. size must be a positive multiple of
    /// PAGE_SIZE (the caller rounds).</summary>
    public (VmArea? Area, Errno Err) VmallocArea(ulong size)
    {
        if (size == 0 || size % (ulong)k.Arch.PageSize != 0)
            throw new ModelBugException($"vmalloc size {size:x}: not a positive multiple of PAGE_SIZE");
        ulong addr = FindVa(size, (ulong)k.Arch.PageSize);
        if (addr == 0) return (null, Errno.ENOMEM);
        long n = (long)(size >> k.Arch.PageShift);
        var pages = new long[n];
        for (long i = 0; i < n; i++)
        {
            long pfn = k.Mem.AllocPages(0, FrameOwner.Vmalloc);
            if (pfn < 0)
            {
                for (long j = 0; j < i; j++) k.Mem.FreePages(pages[j], 0, FrameOwner.Vmalloc, "vmalloc unwind");
                return (null, Errno.ENOMEM);
            }
            pages[i] = pfn;
        }
        var area = new VmArea(addr, size, pages);
        _areas[addr] = area;
        for (long i = 0; i < n; i++)
        {
            var err = k.MapKernelRange(addr + (ulong)(i << k.Arch.PageShift), pages[i], 1, PtLevel.Pte, writable: true);
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
    public void Vfree(VmArea area)
    {
        if (!_areas.Remove(area.Addr)) throw new ModelBugException($"vfree of unknown {area}");
        ulong end = area.Addr + area.Size;
        ulong unmapEnd = k.Variant.BrokenVunmapSkipsLastPte ? end - (ulong)k.Arch.PageSize : end;
        k.UnmapKernelRange(area.Addr, unmapEnd);
        if (!k.Variant.BrokenVunmapSkipsFlush) k.FlushTlbKernelRange(area.Addr, end);
        int n = area.Pages.Length - (k.Variant.BrokenVfreeLeaksLastPage ? 1 : 0);
        for (int i = 0; i < n; i++) k.Mem.FreePages(area.Pages[i], 0, FrameOwner.Vmalloc, "vfree");
    }

    /// <summary>Frames owned by live areas (for conservation checks).</summary>
    public long PagesInUse => _areas.Values.Sum(a => (long)a.Pages.Length);
}
