// The vmap area allocator of mm/vmalloc.c (v6.6): alloc_vmap_area reserves [va_start, va_end)
// in [VMALLOC_START, VMALLOC_END) with the requested alignment; free_vmap_area_noflush puts a
// freed area on the purge list, and purge_vmap_area_lazy (run when more than lazy_max_pages are
// waiting, when an allocation finds no room, and from vm_unmap_aliases) issues one
// flush_tlb_kernel_range over the union of the waiting areas and only then lets their ranges be
// handed out again.
//
// This is why a vfree'd address may stay in a TLB after vfree returns (its page already freed):
// the kernel accepts that, because nothing touches the address of a freed area, and the range
// is not reused before the flush. The invariants accept exactly that (VmallocView.LazyRanges).
//
// Departures from the kernel: a sorted map and a first-fit scan instead of the augmented rbtree
// and free-space tree (same result: the lowest fitting address); one node (no per-CPU vmap
// blocks, no vb_alloc); lazy_max_pages is the kernel's formula, fls(num_online_cpus()) *
// (32 MiB / PAGE_SIZE); the purge is one step (no purge worker).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Mm;

/// <summary>struct vmap_area: a reserved kernel virtual range [VaStart, VaEnd).</summary>
public sealed record VmapArea(ulong VaStart, ulong VaEnd)
{
    public override string ToString() => $"vmap_area [{VaStart:x}, {VaEnd:x})";
}

/// <summary>The busy and purge lists of vmap areas.</summary>
public sealed class VmapAreaAllocator(ArchConfig arch, TlbFlush tlb, int cpus, VmallocBreakage breakage)
{
    private readonly SortedDictionary<ulong, VmapArea> _busy = new();
    private readonly List<VmapArea> _purge = new();
    private long _lazyPages; // pages of the areas on _purge (vmap_lazy_nr)

    public IEnumerable<VmapArea> Busy => _busy.Values;
    /// <summary>Freed areas whose TLB flush has not happened yet (vmap_purge_list).</summary>
    public IReadOnlyList<VmapArea> PurgeList => _purge;

    /// <summary>lazy_max_pages: fls(num_online_cpus()) * (32 MiB / PAGE_SIZE).</summary>
    public long LazyMaxPages => (32L << 20) / arch.PageSize * (32 - System.Numerics.BitOperations.LeadingZeroCount((uint)cpus));

    /// <summary>alloc_vmap_area: the lowest range of <paramref name="size"/> bytes aligned to
    /// <paramref name="align"/> that overlaps no busy area and no area awaiting its purge; when
    /// none fits, purge_vmap_area_lazy once and retry. Null: ENOMEM.</summary>
    [Kernel("mm/vmalloc.c", "alloc_vmap_area")]
    public VmapArea? AllocVmapArea(ulong size, ulong align)
    {
        if (size == 0 || (align & (align - 1)) != 0) throw new ModelBugException($"alloc_vmap_area size {size:x} align {align:x}");
        for (int attempt = 0; attempt < 2; attempt++)
        {
            ulong addr = FindVa(size, align);
            if (addr != 0)
            {
                var va = new VmapArea(addr, addr + size);
                _busy[addr] = va;
                return va;
            }
            if (attempt == 0) PurgeVmapAreaLazy();
        }
        return null;
    }

    private ulong FindVa(ulong size, ulong align)
    {
        // First fit over the busy areas (sorted by the map) merged with the areas awaiting their
        // purge (a short list, sorted here), lowest start first.
        List<VmapArea>? waiting = null;
        if (!breakage.ReuseBeforePurge && _purge.Count > 0)
        {
            waiting = new List<VmapArea>(_purge);
            waiting.Sort((a, b) => a.VaStart.CompareTo(b.VaStart));
        }
        ulong addr = AlignUp(arch.VmallocStart, align);
        int w = 0;
        using var busy = _busy.Values.GetEnumerator();
        bool more = busy.MoveNext();
        while (more || (waiting is not null && w < waiting.Count))
        {
            VmapArea a;
            if (more && (waiting is null || w >= waiting.Count || busy.Current.VaStart <= waiting[w].VaStart))
            {
                a = busy.Current;
                more = busy.MoveNext();
            }
            else a = waiting![w++];
            if (addr + size <= a.VaStart) break;
            if (a.VaEnd > addr) addr = AlignUp(a.VaEnd, align);
        }
        return addr + size <= arch.VmallocEnd && addr >= arch.VmallocStart ? addr : 0;
    }

    private static ulong AlignUp(ulong v, ulong align) => (v + align - 1) & ~(align - 1);

    /// <summary>free_vmap_area_noflush: the area leaves the busy list for the purge list (its
    /// entries are already cleared); past lazy_max_pages the purge runs at once.</summary>
    [Kernel("mm/vmalloc.c", "free_vmap_area_noflush")]
    public void FreeVmapAreaNoflush(VmapArea va)
    {
        if (!_busy.Remove(va.VaStart)) throw new ModelBugException($"free of {va}: not busy");
        _purge.Add(va);
        _lazyPages += (long)((va.VaEnd - va.VaStart) >> arch.PageShift);
        if (_lazyPages > LazyMaxPages) PurgeVmapAreaLazy();
    }

    /// <summary>free_vmap_area: releases the range at once, without any flush (for ranges
    /// that were never mapped, or for the broken path that skips the flush).</summary>
    [Kernel("mm/vmalloc.c", "free_vmap_area")]
    public void FreeVmapArea(VmapArea va)
    {
        if (!_busy.Remove(va.VaStart)) throw new ModelBugException($"free of {va}: not busy");
    }

    /// <summary>purge_vmap_area_lazy: one flush_tlb_kernel_range over [lowest start, highest
    /// end) of the waiting areas, then their ranges are free.</summary>
    [Kernel("mm/vmalloc.c", "purge_vmap_area_lazy")]
    public void PurgeVmapAreaLazy() => PurgeVmapAreaLazy(ulong.MaxValue, 0);

    /// <summary>__purge_vmap_area_lazy with the range a caller (vm_unmap_aliases, vm_reset_perms)
    /// needs flushed as well: the flush covers [start, end) joined with the waiting areas.
    /// Returns whether a flush was issued.</summary>
    [Kernel("mm/vmalloc.c", "__purge_vmap_area_lazy")]
    public bool PurgeVmapAreaLazy(ulong start, ulong end)
    {
        foreach (var a in _purge)
        {
            start = Math.Min(start, a.VaStart);
            end = Math.Max(end, a.VaEnd);
        }
        _purge.Clear();
        _lazyPages = 0;
        if (start >= end) return false;
        tlb.FlushTlbKernelRange(start, end);
        return true;
    }
}
