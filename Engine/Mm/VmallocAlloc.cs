// mm/vmalloc.c (v6.6) allocation: __vmalloc_node_range (the huge policy, the retry with small
// pages), vmalloc_huge, __get_vm_area_node, __vmalloc_area_node, vm_area_alloc_pages (split_page,
// or compound backing before 3b8000ae185c), module_alloc / execmem_alloc, set_vm_flush_reset_perms,
// arch_vmap_pte_supported_shift; the struct pages as the allocator leaves them (split_page,
// prep_compound_page) and as free_pages_prepare resets them. See Vmalloc.cs for the departures.

using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Mm;

public sealed partial class Vmalloc
{
    /// <summary>set_vm_flush_reset_perms: marks the area VM_FLUSH_RESET_PERMS, so that vfree
    /// resets the direct map of its pages and flushes before freeing them.</summary>
    [Kernel("include/linux/vmalloc.h", "set_vm_flush_reset_perms")]
    public void SetVmFlushResetPerms(VmArea area) => area.Flags |= VmFlags.VmFlushResetPerms;

    /// <summary>module_alloc / execmem_alloc(EXECMEM_MODULE_TEXT): PAGE_KERNEL and
    /// VM_FLUSH_RESET_PERMS; VM_NO_HUGE_VMAP under the v5.13 policy unless the variant is the x86
    /// case that did not exclude modules (seed 003).</summary>
    [Kernel("arch/x86/kernel/module.c", "module_alloc")]
    public IEnumerable<StepStatus> ModuleAlloc(ExecContext? ctx, ulong size, Ret<(VmArea? Area, Errno Err)> ret)
    {
        var flags = VmFlags.VmFlushResetPerms;
        if (_options.Huge == VmallocHugePolicy.PageKernelAtLeastPmd && !_options.HugeModuleAlloc) flags |= VmFlags.VmNoHugeVmap;
        return VmallocNodeRange(ctx, AlignUp(Math.Max(size, 1), (ulong)_arch.PageSize), (ulong)_arch.PageSize, flags, writable: true, ret);
    }

    /// <summary>module_alloc run to its end by a caller outside any task.</summary>
    public (VmArea? Area, Errno Err) ModuleAlloc(ulong size)
    {
        var ret = NewRet();
        return RunToEnd(ModuleAlloc(null, size, ret), ret, "module_alloc");
    }

    public IEnumerable<VmArea> Areas => _areas.Values;

    /// <summary>vmap_allow_huge and the policy of the variant: the shift __vmalloc_node_range
    /// starts with for an allocation of <paramref name="size"/> bytes.</summary>
    private int HugeShift(ulong size, VmFlags flags, bool writable)
    {
        bool pmdSupported = _arch.LeafAllowed(PtLevel.Pmd) && (int)PtLevel.Pmd < _arch.Levels; // arch_vmap_pmd_supported
        bool big = size >= (ulong)_arch.PmdSize;
        bool tryHuge = _options.Huge switch
        {
            VmallocHugePolicy.OptIn => (flags & VmFlags.VmAllowHugeVmap) != 0 || _breakage.HugeIgnoresOptIn,
            VmallocHugePolicy.PageKernelAtLeastPmd => writable && (flags & VmFlags.VmNoHugeVmap) == 0,
            _ => false,
        };
        if (!tryHuge) return _arch.PageShift;
        if (pmdSupported && big) return _arch.PmdShift;
        return _options.Huge == VmallocHugePolicy.OptIn ? ArchVmapPteSupportedShift(size) : _arch.PageShift;
    }

    /// <summary>arch_vmap_pte_supported_shift: arm64 (06fc959fcff7, v6.16) CONT_PTE_SHIFT for an
    /// allocation of at least CONT_PTE_SIZE, PAGE_SHIFT otherwise and on x86.</summary>
    [Kernel("arch/arm64/include/asm/vmalloc.h", "arch_vmap_pte_supported_shift")]
    private int ArchVmapPteSupportedShift(ulong size)
    {
        long cont = _arch.ContSize(PtLevel.Pte);
        if (_arch.Arch != Arch.Arm64 || _options.NoContPteVmap || cont == 0 || size < (ulong)cont) return _arch.PageShift;
        return System.Numerics.BitOperations.Log2((ulong)cont);
    }

    /// <summary>vmalloc(size) for a size the caller has rounded to PAGE_SIZE (no huge mappings
    /// unless the policy of the variant gives them to plain vmalloc).</summary>
    public (VmArea? Area, Errno Err) VmallocNodeRange(ulong size) => VmallocNodeRange(size, (ulong)_arch.PageSize, VmFlags.None, writable: true);

    /// <summary>vmalloc_huge: __vmalloc_node_range with VM_ALLOW_HUGE_VMAP.</summary>
    [Kernel("mm/vmalloc.c", "vmalloc_huge")]
    public IEnumerable<StepStatus> VmallocHuge(ExecContext? ctx, ulong size, Ret<(VmArea? Area, Errno Err)> ret) =>
        VmallocNodeRange(ctx, size, (ulong)_arch.PageSize, VmFlags.VmAllowHugeVmap, writable: true, ret);

    /// <summary>vmalloc_huge run to its end by a caller outside any task.</summary>
    public (VmArea? Area, Errno Err) VmallocHuge(ulong size)
    {
        var ret = NewRet();
        return RunToEnd(VmallocHuge(null, size, ret), ret, "vmalloc_huge");
    }

    /// <summary>__vmalloc_node_range run to its end by a caller outside any task.</summary>
    public (VmArea? Area, Errno Err) VmallocNodeRange(ulong size, ulong align, VmFlags flags, bool writable)
    {
        var ret = NewRet();
        return RunToEnd(VmallocNodeRange(null, size, align, flags, writable, ret), ret, "__vmalloc_node_range");
    }

    private static Ret<(VmArea? Area, Errno Err)> NewRet() => new((null, Errno.Ok));

    /// <summary>Runs an allocation's steps to their end for a caller outside any task (an
    /// engine test, a benchmark): nothing else runs, so no step may block.</summary>
    private T RunToEnd<T>(IEnumerable<StepStatus> steps, Ret<T> ret, string what)
    {
        foreach (var st in steps)
            if (st.IsBlocked)
                throw new ModelBugException($"{what}: a caller outside any task would wait for a lock");
        return ret.Value;
    }

    /// <summary>__vmalloc_node_range: the area or an errno (EINVAL for size 0, ENOMEM for a
    /// size above the machine's memory or when both the huge and the small attempt fail), as a
    /// task's steps: the page-table population of vmap_pages_range takes steps of its own
    /// (VmapRange.cs); the rest happens within the step it is in. The area is on the list of
    /// areas from __get_vm_area_node on, VM_UNINITIALIZED and Populating until it is mapped.</summary>
    [Kernel("mm/vmalloc.c", "__vmalloc_node_range")]
    public IEnumerable<StepStatus> VmallocNodeRange(ExecContext? ctx, ulong size, ulong align, VmFlags flags, bool writable, Ret<(VmArea? Area, Errno Err)> ret)
    {
        if (size == 0) { ret.Value = (null, Errno.EINVAL); yield break; }
        ulong realSize = AlignUp(size, (ulong)_arch.PageSize), realAlign = Math.Max(align, (ulong)_arch.PageSize);
        if ((realSize >> _arch.PageShift) > (ulong)_mem.MaxPfn) { ret.Value = (null, Errno.ENOMEM); yield break; }
        int shift = HugeShift(realSize, flags, writable);
        ulong alignNow = Math.Max(realAlign, 1UL << shift);
        var err = new Ret<Errno>(Errno.Ok);
        while (true)
        {
            var area = GetVmAreaNode(realSize, alignNow, shift, VmFlags.VmAlloc | VmFlags.VmUninitialized | flags, writable);
            if (area is null) err.Value = Errno.ENOMEM;
            else foreach (var st in VmallocAreaNode(ctx, area, shift, writable, err)) yield return st;
            if (err.Value == Errno.Ok)
            {
                area!.Flags &= ~VmFlags.VmUninitialized; // clear_vm_uninitialized_flag
                area.Populating = false;
                ret.Value = (area, Errno.Ok);
                yield break;
            }
            if (shift == _arch.PageShift) { ret.Value = (null, err.Value); yield break; }
            shift = _arch.PageShift; // fall back to small pages
            alignNow = realAlign;
        }
    }

    private static ulong AlignUp(ulong v, ulong a) => (v + a - 1) & ~(a - 1);

    /// <summary>__get_vm_area_node: size rounded up to 1 &lt;&lt; shift, plus the guard page
    /// unless VM_NO_GUARD; a vmap area for it; the vm_struct linked in.</summary>
    [Kernel("mm/vmalloc.c", "__get_vm_area_node")]
    private VmArea? GetVmAreaNode(ulong size, ulong align, int shift, VmFlags flags, bool writable)
    {
        size = AlignUp(size, 1UL << shift);
        ulong guard = (flags & VmFlags.VmNoGuard) != 0 || _breakage.NoGuardPage ? 0 : (ulong)_arch.PageSize;
        var va = VmapAreas.AllocVmapArea(size + guard, align);
        if (va is null) return null;
        var area = new VmArea(va, size, guard, flags, writable, shift - _arch.PageShift, _arch.PageShift) { Populating = true };
        _areas[area.Addr] = area;
        _liveAreas = null;
        return area;
    }

    /// <summary>__vmalloc_area_node: allocate every backing page at the area's order and map
    /// them; on failure the partly built area is freed (vfree) and ENOMEM returned.</summary>
    [Kernel("mm/vmalloc.c", "__vmalloc_area_node")]
    private IEnumerable<StepStatus> VmallocAreaNode(ExecContext? ctx, VmArea area, int pageShift, bool writable, Ret<Errno> err)
    {
        long nrSmallPages = (long)(area.Size >> _arch.PageShift);
        long got = VmAreaAllocPages(area.PageOrder, nrSmallPages, area.PageList);
        err.Value = Errno.ENOMEM;
        if (got == nrSmallPages)
            foreach (var st in VmapRanges.VmapPagesRange(ctx, area.Addr, area.Addr + area.Size, writable, area.PageList, pageShift, err)) yield return st;
        if (err.Value != Errno.Ok) Vfree(area);
    }

    /// <summary>vm_area_alloc_pages: <paramref name="nrPages"/> order-0 pages into
    /// <paramref name="pages"/>, allocated 1 &lt;&lt; <paramref name="order"/> at a time and
    /// split_page'd; stops at the first failure and returns how many it got.</summary>
    [Kernel("mm/vmalloc.c", "vm_area_alloc_pages")]
    private long VmAreaAllocPages(int order, long nrPages, List<long> pages)
    {
        long per = 1L << order;
        pages.EnsureCapacity((int)Math.Min(nrPages, int.MaxValue)); // area->pages is sized once, as kvmalloc_array does
        while (pages.Count < nrPages)
        {
            if (!_mem.TryAllocPages(order, FrameOwner.Vmalloc, out long pfn)) break;
            PrepBackingPages(pfn, order);
            for (long i = 0; i < per; i++) pages.Add(pfn + i); // split_page, or the compound's subpages
        }
        return pages.Count;
    }

    /// <summary>The struct pages of a new allocation of 1 &lt;&lt; <paramref name="order"/> pages
    /// as the allocator hands them over: split_page'd, every page an independent order-0 page
    /// with refcount 1 (set_page_refcounted, split_page); before 3b8000ae185c (__GFP_COMP) a
    /// compound page: the head with PG_head and refcount 1, the tails pointing at it with
    /// refcount 0, the order in the first tail (prep_compound_page).</summary>
    private void PrepBackingPages(long pfn, int order)
    {
        if (Mmu is null) return;
        long n = 1L << order;
        if (_options.CompoundBacking && order > 0)
        {
            ulong tail = _arch.PfnToPage(pfn) | 1;
            Mmu.WriteStructPageRange(_current(), pfn, n, new StructPage { CompoundHead = tail },
                [(pfn, new StructPage { Flags = PageFlags.Head, Refcount = 1 }), (pfn + 1, new StructPage { CompoundHead = tail, Order = (byte)order })], "prep_compound_page");
        }
        else
            Mmu.WriteStructPageRange(_current(), pfn, n, new StructPage { Refcount = 1 }, [], "split_page");
    }

    /// <summary>free_pages_prepare: the struct pages of freed backing pages back to what the buddy
    /// allocator keeps (no flags, refcount 0, no compound metadata).</summary>
    private void ResetBackingPages(IReadOnlyList<long> pages, int order, int count)
    {
        if (Mmu is null) return;
        int per = 1 << order;
        for (int i = 0; i < count;)
        {
            int run = i % per == 0 && i + per <= count ? per : 1; // a whole high-order block is contiguous
            Mmu.WriteStructPageRange(_current(), pages[i], run, default, [], "free_pages_prepare");
            i += run;
        }
    }
}
