// mm/vmalloc.c and mm/ioremap.c (v6.6) mappings of pages or device memory the area does not
// allocate: vmap / vunmap of a caller's pages (and the caller's alloc_page / __free_page),
// ioremap_prot / ioremap_page_range / iounmap, vunmap_range(_noflush) of part of an area, and the
// vmalloc_to_page walker task. See Vmalloc.cs for the departures.

using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Mm;

public sealed partial class Vmalloc
{
    /// <summary>The caller's side of a vmap user (a driver building a buffer): alloc_page
    /// <paramref name="count"/> times, each an independent order-0 page with refcount 1. On a
    /// failure the pages already allocated are freed and null returned.</summary>
    public List<long>? AllocCallerPages(long count)
    {
        var pages = new List<long>();
        for (long i = 0; i < count; i++)
        {
            if (!_mem.TryAllocPages(0, FrameOwner.Vmalloc, out long pfn))
            {
                FreeCallerPages(pages);
                return null;
            }
            PrepBackingPages(pfn, 0);
            pages.Add(pfn);
        }
        return pages;
    }

    /// <summary>The caller's __free_page of each of its pages once they are vunmap'd.</summary>
    public void FreeCallerPages(IReadOnlyList<long> pages)
    {
        ResetBackingPages(pages, 0, pages.Count);
        foreach (long pfn in pages) _mem.FreePages(pfn, 0, FrameOwner.Vmalloc, "__free_page");
    }

    /// <summary>vmap: maps the caller's <paramref name="pages"/> (order-0, any frames) into a new
    /// area of pages.Count * PAGE_SIZE, PAGE_KERNEL (not executable: pgprot_nx), small PTEs only
    /// (vmap_pages_range with PAGE_SHIFT). EINVAL (the kernel's NULL) for no pages or more than
    /// the machine's memory; ENOMEM (NULL) when the range or a table cannot be allocated, after
    /// vunmap of what was mapped. With VM_MAP_PUT_PAGES the area keeps the array and vfree frees
    /// the pages; without it the caller keeps them and frees them after vunmap.</summary>
    [Kernel("mm/vmalloc.c", "vmap")]
    public IEnumerable<StepStatus> Vmap(ExecContext? ctx, IReadOnlyList<long> pages, VmFlags flags, Ret<(VmArea? Area, Errno Err)> ret)
    {
        if (pages.Count == 0 || pages.Count > _mem.MaxPfn) { ret.Value = (null, Errno.EINVAL); yield break; }
        ulong size = (ulong)pages.Count << _arch.PageShift;
        var area = GetVmAreaNode(size, (ulong)_arch.PageSize, _arch.PageShift, VmFlags.VmMap | flags, writable: true);
        if (area is null) { ret.Value = (null, Errno.ENOMEM); yield break; }
        area.PageList.AddRange(pages);
        var err = new Ret<Errno>(Errno.Ok);
        foreach (var st in VmapRanges.VmapPagesRange(ctx, area.Addr, area.Addr + size, writable: true, area.PageList, _arch.PageShift, err)) yield return st;
        if (err.Value != Errno.Ok)
        {
            Vunmap(area);
            ret.Value = (null, err.Value);
            yield break;
        }
        area.Populating = false;
        ret.Value = (area, Errno.Ok);
    }

    /// <summary>vmap run to its end by a caller outside any task.</summary>
    public (VmArea? Area, Errno Err) Vmap(IReadOnlyList<long> pages, VmFlags flags)
    {
        var ret = NewRet();
        return RunToEnd(Vmap(null, pages, flags, ret), ret, "vmap");
    }

    /// <summary>vunmap: remove_vm_area (every entry of the area cleared at once, the flush and
    /// the reuse of the range left to the lazy purge) and the vm_struct freed; the pages are the
    /// caller's and stay allocated. Returns them for the caller to free.</summary>
    [Kernel("mm/vmalloc.c", "vunmap")]
    public IReadOnlyList<long> Vunmap(VmArea area)
    {
        RemoveVmArea(area);
        var pages = area.PageList.ToList();
        area.PageList.Clear();
        return pages;
    }

    /// <summary>The first frame of the model's MMIO window: the first PUD-aligned physical
    /// address above all RAM the machine can have (device memory has no struct pages and is
    /// never RAM, so every frame there is Absent to the allocator).</summary>
    public long MmioBasePfn => (long)(AlignUp((ulong)_mem.MaxPfn << _arch.PageShift, (ulong)_arch.PudSize) >> _arch.PageShift);

    /// <summary>ioremap_prot (mm/ioremap.c generic_ioremap_prot; x86 __ioremap_caller): maps
    /// [physAddr, physAddr + size) of device memory. The offset within the first page is
    /// dropped and the size rounded to whole pages; the area is VM_IOREMAP, aligned to its size
    /// rounded up to a power of two (at most IOREMAP_MAX_ORDER: PUD_SHIFT on x86-64 and arm64
    /// 4K, PMD_SHIFT on arm64 16K/64K) so that huge leaves can be used; ioremap_page_range maps
    /// it with leaves up to ioremap_max_page_shift (no limit; nohugeiomap: PAGE_SHIFT). EINVAL
    /// (the kernel's NULL) for size 0 or a range that wraps; EINVAL with the kernel's WARN for a
    /// range that touches RAM (x86 "ioremap on RAM", arm64 pfn_is_map_memory); ENOMEM when the
    /// range or a table cannot be allocated.</summary>
    [Kernel("mm/ioremap.c", "ioremap_prot")]
    public IEnumerable<StepStatus> IoremapProt(ExecContext? ctx, ulong physAddr, ulong size, Ret<(VmArea? Area, Errno Err)> ret)
    {
        ulong last = physAddr + size - 1;
        if (size == 0 || last < physAddr) { ret.Value = (null, Errno.EINVAL); yield break; }
        ulong page = (ulong)_arch.PageSize;
        ulong offset = physAddr & (page - 1);
        physAddr -= offset;
        size = AlignUp(size + offset, page);
        long pfn = (long)(physAddr >> _arch.PageShift);
        if (pfn < _mem.MaxPfn)
        {
            _log.RecordFault(FaultKind.KernelBug, _current(), physAddr, $"ioremap of [{physAddr:x}, {physAddr + size:x}): RAM (WARN: ioremap on RAM)");
            ret.Value = (null, Errno.EINVAL);
            yield break;
        }
        int maxOrder = _arch.Arch == Arch.Arm64 && _arch.PageShift != 12 ? _arch.PmdShift : _arch.PudShift;
        int order = Math.Clamp(64 - System.Numerics.BitOperations.LeadingZeroCount(size - 1), _arch.PageShift, maxOrder);
        var area = GetVmAreaNode(size, 1UL << order, _arch.PageShift, VmFlags.VmIoremap, writable: true);
        if (area is null) { ret.Value = (null, Errno.ENOMEM); yield break; }
        area.IoremapPfn = pfn;
        var err = new Ret<Errno>(Errno.Ok);
        foreach (var st in IoremapPageRange(ctx, area.Addr, area.Addr + size, physAddr, err)) yield return st;
        if (err.Value != Errno.Ok)
        {
            RemoveVmArea(area); // free_vm_area
            ret.Value = (null, err.Value);
            yield break;
        }
        area.Populating = false;
        ret.Value = (area, Errno.Ok);
    }

    /// <summary>ioremap_prot run to its end by a caller outside any task.</summary>
    public (VmArea? Area, Errno Err) IoremapProt(ulong physAddr, ulong size)
    {
        var ret = NewRet();
        return RunToEnd(IoremapProt(null, physAddr, size, ret), ret, "ioremap_prot");
    }

    /// <summary>ioremap_page_range: vmap_range_noflush with ioremap_max_page_shift, then
    /// flush_cache_vmap (nothing on x86 and arm64).</summary>
    [Kernel("mm/vmalloc.c", "ioremap_page_range")]
    public IEnumerable<StepStatus> IoremapPageRange(ExecContext? ctx, ulong addr, ulong end, ulong physAddr, Ret<Errno> err) =>
        VmapRanges.VmapRangeNoflush(ctx, addr, end, (long)(physAddr >> _arch.PageShift), writable: true,
            _options.NoHugeIomap ? _arch.PageShift : 63, err);

    /// <summary>iounmap: vunmap of the ioremap area (entries cleared at once, the range purged
    /// lazily); there are no pages to free.</summary>
    [Kernel("mm/ioremap.c", "iounmap")]
    public void Iounmap(VmArea area)
    {
        if ((area.Flags & VmFlags.VmIoremap) == 0) throw new ModelBugException($"iounmap of {area}: not an ioremap area");
        RemoveVmArea(area);
    }

    /// <summary>The pfn the last vmalloc_to_page walk found (null: none), for tests.</summary>
    public long? LastVmallocToPage { get; private set; }

    /// <summary>vmalloc_to_page as a walker task: pgd_offset, then one entry read per level
    /// (p4d_offset ... pte_offset_kernel), stopping at a huge leaf (pud_leaf / pmd_leaf: the
    /// subpage of the block) or a none entry (NULL). No lock is taken, as in the kernel: the walk
    /// is kept safe by the caller holding a live area, because the only code that frees a table
    /// of the vmalloc range, pmd_free_pte_page / pud_free_pmd_page from vmap_try_huge_pmd /
    /// _pud, frees a table only when the whole range it maps is the one new area being mapped
    /// (end - addr == PMD_SIZE, aligned), which no other live area overlaps, on x86 and arm64
    /// alike; hot-remove's free_empty_tables frees only tables wholly inside
    /// [VMEMMAP_START, VMEMMAP_END) (floor/ceiling, bbd6ec605c0f), and arm64's ptdump
    /// synchronisation around pud_free_pmd_page (fa93b45fd397) concerns ptdump, not this walk.
    /// Each table the walk reads is held (<paramref name="walkers"/>) until it returns.</summary>
    [Kernel("mm/vmalloc.c", "vmalloc_to_page")]
    public IEnumerable<StepStatus> VmallocToPage(ExecContext ctx, ulong addr, Hotplug.TableWalkers walkers)
    {
        var pgd = Pgtable.InitMmPgd;
        var t = pgd.Root;
        walkers.Hold(ctx.Task, "vmalloc_to_page", pgd, t);
        LastVmallocToPage = null;
        yield return StepStatus.After("pgd_offset");
        while (true)
        {
            // READ_ONCE of the entry in t (t may have been freed meanwhile: the walk reads it
            // anyway, which NoWalkerHoldsFreedTable reports).
            Pte e = t.Entries[pgd.Index(addr, t.Level)];
            if (e.IsNone) break;
            if (e.IsLeaf)
            {
                ulong size = pgd.EntrySize(t);
                LastVmallocToPage = e.Pfn + (long)((addr & (size - 1)) >> _arch.PageShift);
                break;
            }
            if (t.Level == PtLevel.Pte || !pgd.TryGetChild(t, e, out var child)) break;
            walkers.Hold(ctx.Task, "vmalloc_to_page", pgd, child);
            t = child;
            yield return StepStatus.After(child.Level switch { PtLevel.Pte => "pte_offset_kernel", PtLevel.Pmd => "pmd_offset", PtLevel.Pud => "pud_offset", _ => "p4d_offset" });
        }
        walkers.ReleaseAll(ctx.Task);
        yield return StepStatus.After("vmalloc_to_page");
    }

    /// <summary>vunmap_range: vunmap_range_noflush, then flush_tlb_kernel_range(addr, end). The
    /// caller (a vmap user) unmaps part of an area it keeps; the model records the hole in the
    /// area that contains <paramref name="addr"/>, for the invariants (the kernel keeps no record).</summary>
    [Kernel("mm/vmalloc.c", "vunmap_range")]
    public void VunmapRange(ulong addr, ulong end)
    {
        VunmapRangeNoflush(addr, end);
        _tlb.FlushTlbKernelRange(addr, end);
    }

    /// <summary>vunmap_range_noflush: clears the entries of [addr, end) and leaves the TLB flush
    /// to the caller (as pcpu_unmap_pages does, flushing once for many ranges). A huge leaf the
    /// range covers only in part is cleared whole with a WARN (KernelPgtable.VunmapRangeNoflush).</summary>
    [Kernel("mm/vmalloc.c", "vunmap_range_noflush")]
    public void VunmapRangeNoflush(ulong addr, ulong end)
    {
        FindVmArea(addr)?.RecordUnmapped(addr, end - addr);
        ulong clearEnd = _breakage.VunmapRangeOvershoots ? end + (ulong)_arch.PageSize : end;
        Pgtable.VunmapRangeNoflush(addr, clearEnd);
    }
}
