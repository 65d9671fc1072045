// mm/vmalloc.c (v6.6) freeing: vfree, remove_vm_area (unmap now, flush and reuse of the range
// left to the lazy purge, VmapArea.cs), vm_reset_perms for VM_FLUSH_RESET_PERMS (the direct-map
// range of every backing page at its order, invalid, one flush, default: SetMemory.cs),
// _vm_unmap_aliases / vm_unmap_aliases. See Vmalloc.cs for the departures.

using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Mm;

public sealed partial class Vmalloc
{
    /// <summary>vfree: remove_vm_area (unmap now, lazy flush), vm_reset_perms for an area with
    /// VM_FLUSH_RESET_PERMS, then free every backing page.</summary>
    [Kernel("mm/vmalloc.c", "vfree")]
    public void Vfree(VmArea area)
    {
        RemoveVmArea(area);
        if ((area.Flags & VmFlags.VmFlushResetPerms) != 0) VmResetPerms(area);
        int n = area.PageList.Count - (_variant.Broken.VfreeLeaksLastPage && area.PageList.Count > 0 ? 1 : 0);
        ResetBackingPages(area.PageList, area.PageOrder, n);
        if (_options.CompoundBacking && area.PageOrder > 0)
        {
            // Before 3b8000ae185c: __free_pages(page, page_order) for each compound page.
            for (int i = 0; i + (1 << area.PageOrder) <= n; i += 1 << area.PageOrder)
                _mem.FreePages(area.PageList[i], area.PageOrder, FrameOwner.Vmalloc, "vfree");
        }
        else
            for (int i = 0; i < n; i++) _mem.FreePages(area.PageList[i], 0, FrameOwner.Vmalloc, "vfree");
        area.PageList.Clear();
    }

    /// <summary>remove_vm_area: unlink the vm_struct, then free_unmap_vmap_area: clear the
    /// entries of the whole vmap area at once and put it on the purge list.</summary>
    [Kernel("mm/vmalloc.c", "remove_vm_area")]
    private void RemoveVmArea(VmArea area)
    {
        if (!_areas.Remove(area.Addr)) throw new ModelBugException($"vfree of unknown {area}");
        _liveAreas = null;
        ulong end = area.Addr + area.Size;
        ulong unmapEnd = _variant.Broken.VunmapSkipsLastPte ? end - (ulong)_arch.PageSize : area.Va.VaEnd;
        Pgtable.VunmapRangeNoflush(area.Addr, unmapEnd);
        if (_variant.Broken.VunmapSkipsFlush) VmapAreas.FreeVmapArea(area.Va);
        else VmapAreas.FreeVmapAreaNoflush(area.Va);
    }

    /// <summary>vm_reset_perms: the direct-map range [start, end) of the backing pages, each
    /// huge page counted whole (PAGE_SIZE &lt;&lt; page_order; the v8 series before its fix counted
    /// PAGE_SIZE); every small page's direct map invalid; one flush of that range joined with the
    /// lazily freed areas; every small page's direct map back to default. The results of
    /// set_direct_map_* are not looked at, as in the kernel.</summary>
    [Kernel("mm/vmalloc.c", "vm_reset_perms")]
    private void VmResetPerms(VmArea area)
    {
        ulong start = ulong.MaxValue, end = 0;
        int order = area.PageOrder;
        bool flushDmap = false;
        ulong pageSize = _options.DirectMapFlushPageSizeOnly ? (ulong)_arch.PageSize : (ulong)_arch.PageSize << order;
        for (int i = 0; i < area.PageList.Count; i += 1 << order)
        {
            ulong addr = _arch.PfnToVirt(area.PageList[i]); // page_address: every page has one (no highmem)
            start = Math.Min(start, addr);
            end = Math.Max(end, addr + pageSize);
            flushDmap = true;
        }
        foreach (long pfn in area.PageList) SetMemory.SetDirectMapInvalidNoflush(pfn);
        if (_breakage.ResetPermsSkipsDirectMapFlush) VmUnmapAliases(ulong.MaxValue, 0, false);
        else VmUnmapAliases(start, end, flushDmap);
        foreach (long pfn in area.PageList) SetMemory.SetDirectMapDefaultNoflush(pfn);
    }

    /// <summary>_vm_unmap_aliases: purge the lazily freed areas with [start, end) joined to the
    /// flush; if nothing was waiting, flush [start, end) alone when asked to.</summary>
    [Kernel("mm/vmalloc.c", "_vm_unmap_aliases")]
    private void VmUnmapAliases(ulong start, ulong end, bool flush)
    {
        if (!VmapAreas.PurgeVmapAreaLazy(start, end) && flush) _tlb.FlushTlbKernelRange(start, end);
    }

    /// <summary>vm_unmap_aliases: purge the lazily freed areas now (one flush over them).</summary>
    [Kernel("mm/vmalloc.c", "vm_unmap_aliases")]
    public void VmUnmapAliases() => VmapAreas.PurgeVmapAreaLazy();

    /// <summary>Frames owned by live areas (for conservation checks).</summary>
    public long PagesInUse => _areas.Values.Sum(a => (long)a.PageList.Count);
}
