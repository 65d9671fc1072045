// mm/vmalloc.c (v6.6) allocation and freeing, with huge (PMD-mapped) vmalloc:
//   __vmalloc_node_range  the huge policy (vmap_allow_huge, VM_ALLOW_HUGE_VMAP since
//                         559089e0a93d; the v5.13 "PAGE_KERNEL and at least PMD_SIZE" policy as
//                         a variant), size and alignment rounded to 1 << shift, then
//                         __get_vm_area_node, __vmalloc_area_node; on any failure with
//                         shift > PAGE_SHIFT everything is retried with small pages;
//   __vmalloc_area_node   vm_area_alloc_pages (order 0 one page at a time, as the bulk
//                         allocator's fallback does; order > 0 alloc_pages then split_page, or
//                         kept compound before 3b8000ae185c), vmap_pages_range; on failure the
//                         partly built area is vfree'd;
//                         the struct pages are written as the allocator leaves them (refcount 1
//                         each after split_page; head, tails and order for a compound page) and
//                         reset on free (free_pages_prepare), for BackingPagesIndependent;
//   vfree / remove_vm_area  unmap at once (vunmap_range_noflush over the whole vmap area), the
//                         vmap area goes to the purge list (VmapArea.cs: the TLB flush and the
//                         reuse of the range wait for purge_vmap_area_lazy), and the backing
//                         pages are freed right away, order 0 each (__free_pages(page, order)
//                         per compound page in the compound variant);
//   vm_unmap_aliases      purges the lazily freed areas (one flush);
//   vm_reset_perms        for an area with VM_FLUSH_RESET_PERMS, before vfree frees its pages:
//                         the direct-map range of every backing page at the area's page order
//                         (seed 003's fix; the v8 series' PAGE_SIZE per huge page as a variant),
//                         set_direct_map_invalid_noflush on every small page, _vm_unmap_aliases
//                         over that range joined with the lazily freed areas, then
//                         set_direct_map_default_noflush on every small page (SetMemory.cs);
//   module_alloc          x86 arch/x86/kernel/module.c before execmem (6.10), execmem_alloc
//                         after: PAGE_KERNEL, VM_FLUSH_RESET_PERMS (execmem passes it; before,
//                         the module loader's set_vm_flush_reset_perms), never VM_ALLOW_HUGE_VMAP;
//                         under the v5.13 policy it passed VM_NO_HUGE_VMAP where the arch opted
//                         out (powerpc) and not on x86 (Rick Edgecombe in seed 003: the variant).
//   vmap / vunmap         a caller's order-0 pages mapped with small PTEs (vmap_pages_range with
//                         PAGE_SHIFT, pgprot_nx), and unmapped with the range purged lazily; the
//                         pages stay the caller's (VM_MAP_PUT_PAGES hands them to vfree);
//   ioremap_prot / iounmap  device memory (the model's MMIO window above RAM: no struct pages,
//                         never RAM) mapped by ioremap_page_range with PMD/PUD leaves where VA
//                         and PA are aligned; RAM is refused with the kernel's WARN (the x86
//                         exception for PageReserved RAM is not modelled);
//   vunmap_range(_noflush) part of an area its owner keeps (percpu's pcpu_unmap_pages is such a
//                         user); a PMD/PUD leaf the range covers only in part is cleared whole
//                         with a WARN (61ef8ddaa35e, v6.16), as pmd_clear_huge does; the model
//                         records which pages the owner asked to unmap, for the invariants.
//
// Departures from the kernel: one NUMA node (no size_per_node division, which 2024 removed
// anyway); no kvmalloc of the pages array (it cannot fail here); no __GFP_NOFAIL retries; no
// kasan/kmemleak; module allocations come from the vmalloc range, not [MODULES_VADDR,
// MODULES_END), and there is no EXECMEM_ROX_CACHE. The engine's Broken* switches
// of KernelVariant keep their meaning: BrokenVunmapSkipsFlush releases the range at once, with
// no flush now or at a purge.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Mm;

/// <summary>vm_struct flags (include/linux/vmalloc.h).</summary>
[Flags]
public enum VmFlags
{
    None = 0,
    VmIoremap = 1 << 0,
    VmAlloc = 1 << 1,
    VmMap = 1 << 2,
    VmUninitialized = 1 << 5,
    VmNoGuard = 1 << 6,
    VmFlushResetPerms = 1 << 8,
    /// <summary>vmap: the area takes over the caller's page array, and vfree frees the pages.</summary>
    VmMapPutPages = 1 << 9,
    /// <summary>Opt in to PMD-sized mappings (since 559089e0a93d).</summary>
    VmAllowHugeVmap = 1 << 10,
    /// <summary>Opt out of PMD-sized mappings (v5.13-v5.17 policy).</summary>
    VmNoHugeVmap = 1 << 11,
}

/// <summary>What an invariant may read of one vm area.</summary>
public interface IVmAreaView
{
    /// <summary>First address (vm_struct.addr).</summary>
    ulong Addr { get; }
    /// <summary>Mapped size, without the guard page (get_vm_area_size).</summary>
    ulong Size { get; }
    /// <summary>The guard page's size: PAGE_SIZE, or 0 with VM_NO_GUARD.</summary>
    ulong GuardSize { get; }
    VmFlags Flags { get; }
    /// <summary>Whether the mapping is PAGE_KERNEL (writable) rather than read-only.</summary>
    bool Writable { get; }
    /// <summary>vm_area_page_order: the order of each backing allocation.</summary>
    int PageOrder { get; }
    /// <summary>Whether page <paramref name="i"/> should be mapped writable: the area's protection,
    /// then each change set_memory_* made to its mapping (the model's record; the kernel keeps
    /// none, the page table is its only copy).</summary>
    bool PageWritable(long i);
    /// <summary>Whether page <paramref name="i"/> should be mapped executable (as PageWritable).</summary>
    bool PageExec(long i);
    /// <summary>Whether a set_memory_* on the area returned an error: the caller has been told that
    /// the mapping and its direct-map alias may be half changed (x86 changes the vmalloc leaf
    /// before it splits the alias), and must not rely on them (the module loader frees the area).</summary>
    bool SetMemoryFailed { get; }
    /// <summary>The order-0 backing pages, one per PAGE_SIZE of Size (vm_struct.pages).</summary>
    IReadOnlyList<long> Pages { get; }
    /// <summary>Whether the area's owner took page <paramref name="i"/> out of the mapping with
    /// vunmap_range / vunmap_range_noflush (the model's record of the call; the kernel keeps none).</summary>
    bool PageUnmapped(long i);
    /// <summary>How many pages the owner has vunmap_range'd.</summary>
    long UnmappedCount { get; }
    /// <summary>For an ioremap area (VM_IOREMAP): the first frame of the physically contiguous
    /// range it maps, page i mapping IoremapPfn + i; null for an area backed by pages[].</summary>
    long? IoremapPfn { get; }
}

/// <summary>What an invariant may read of vmalloc.</summary>
public interface IVmallocView
{
    /// <summary>Live vm areas by address.</summary>
    IReadOnlyList<IVmAreaView> LiveAreas { get; }
    /// <summary>Busy vmap areas that have no vm_struct yet or any more.</summary>
    IReadOnlyList<VmapArea> BusyVmapAreas { get; }
    /// <summary>Ranges freed and unmapped, whose TLB flush purge_vmap_area_lazy has not issued yet.</summary>
    IReadOnlyList<VmapArea> LazyRanges { get; }
    VmallocOptions Options { get; }
    /// <summary>[addr, addr + size + guard) of every live area created, freed or changed (flags,
    /// backing pages, protection record) in the current step, in address order.</summary>
    IReadOnlyList<(ulong Start, ulong End)> AreasChangedThisStep { get; }
}

/// <summary>A vm_struct: a reserved VA range and its backing pages.</summary>
public sealed class VmArea : IVmAreaView
{
    private const byte ProtWrite = 1, ProtExec = 2, ProtUnmapped = 4;
    private readonly byte[] _prot;
    private readonly int _pageShift;

    internal VmArea(VmapArea va, ulong size, ulong guard, VmFlags flags, bool writable, int pageOrder, int pageShift)
    {
        Va = va;
        Size = size;
        GuardSize = guard;
        Flags = flags;
        Writable = writable;
        PageOrder = pageOrder;
        _pageShift = pageShift;
        _prot = new byte[size >> pageShift];
        if (writable) Array.Fill(_prot, ProtWrite);
    }

    public bool PageWritable(long i) => (_prot[i] & ProtWrite) != 0;
    public bool PageExec(long i) => (_prot[i] & ProtExec) != 0;
    public bool PageUnmapped(long i) => (_prot[i] & ProtUnmapped) != 0;
    public long UnmappedCount { get; private set; }
    public long? IoremapPfn { get; internal set; }

    /// <summary>Records that the owner asked vunmap_range to unmap [va, va + size) of this area.</summary>
    internal void RecordUnmapped(ulong va, ulong size)
    {
        long first = (long)((va - Addr) >> _pageShift), n = (long)(size >> _pageShift);
        for (long i = Math.Max(first, 0); i < first + n && i < _prot.Length; i++)
        {
            if ((_prot[i] & ProtUnmapped) == 0) UnmappedCount++;
            _prot[i] |= ProtUnmapped;
        }
        ProtVersion++;
    }

    /// <summary>Counts the changes to the protection / unmapped record (VmAreaChanges compares it).</summary>
    internal long ProtVersion { get; private set; }

    /// <summary>Whether any page of [va, va + size) has been vunmap_range'd by the owner.</summary>
    public bool AnyUnmapped(ulong va, ulong size)
    {
        long first = (long)((va - Addr) >> _pageShift), n = (long)(size >> _pageShift);
        for (long i = Math.Max(first, 0); i < first + n && i < _prot.Length; i++)
            if ((_prot[i] & ProtUnmapped) != 0) return true;
        return false;
    }
    public bool SetMemoryFailed { get; internal set; }

    /// <summary>Records what set_memory_* made of the leaf [va, va + size) of this area.</summary>
    internal void RecordProt(ulong va, ulong size, bool writable, bool exec)
    {
        byte p = (byte)((writable ? ProtWrite : 0) | (exec ? ProtExec : 0));
        long first = (long)((va - Addr) >> _pageShift), n = (long)(size >> _pageShift);
        for (long i = first; i < first + n && i < _prot.Length; i++) _prot[i] = (byte)(p | (_prot[i] & ProtUnmapped));
        ProtVersion++;
    }

    internal VmapArea Va { get; }
    public ulong Addr => Va.VaStart;
    public ulong Size { get; }
    public ulong GuardSize { get; }
    public VmFlags Flags { get; internal set; }
    public bool Writable { get; }
    public int PageOrder { get; }
    internal List<long> PageList { get; } = new();
    public IReadOnlyList<long> Pages => PageList;
    public override string ToString() => $"vm_area [{Addr:x}, {Addr + Size:x}) {PageList.Count} pages order {PageOrder}";
}

/// <summary>The vmalloc allocator of one kernel.</summary>
public sealed class Vmalloc : IVmallocView
{
    private readonly ArchConfig _arch;
    private readonly PhysMem _mem;
    private readonly KernelVariant _variant;
    private readonly VmallocOptions _options;
    private readonly VmallocBreakage _breakage;
    private readonly SortedDictionary<ulong, VmArea> _areas = new();
    private readonly KernelLog _log;

    public VmapAreaAllocator VmapAreas { get; }
    public VmapRange VmapRanges { get; }

    internal Vmalloc(ArchConfig arch, PhysMem mem, KernelPgtable pgtable, PageTable pgd, TlbFlush tlb, KernelLog log, Func<ExecContext?> current, int cpus, KernelVariant variant)
    {
        _arch = arch;
        _mem = mem;
        _variant = variant;
        _options = variant.Vmalloc;
        _options.Validate();
        _breakage = variant.VmallocBreakage;
        _log = log;
        VmapAreas = new VmapAreaAllocator(arch, tlb, cpus, _breakage);
        VmapRanges = new VmapRange(arch, pgd, pgtable, tlb, log, current) { BrokenIgnoresPhysAlignment = _breakage.HugeVmapIgnoresPhysAlignment, BrokenContIgnoresPhysAlignment = _breakage.ContPteIgnoresPhysAlignment, ContPteVmap = !_options.NoContPteVmap };
        Pgtable = pgtable;
        _tlb = tlb;
        _current = current;
        SetMemory = new SetMemory(arch, pgd, pgtable, tlb, FindVmArea, _breakage);
        _changes = new VmAreaChanges(() => _areas.Values);
    }

    private readonly VmAreaChanges _changes;
    private List<IVmAreaView>? _liveAreas;

    /// <summary>A scenario step begins (Kernel.BeginStep): the areas' state is noted, so that
    /// the step's changes to them can be listed (IVmallocView.AreasChangedThisStep).</summary>
    internal void BeginStep() => _changes.BeginStep();

    private KernelPgtable Pgtable { get; }
    private readonly TlbFlush _tlb;
    private readonly Func<ExecContext?> _current = () => null;

    /// <summary>The MMU through which the backing pages' struct pages are written (set by the
    /// composition root; null in a Vmalloc built without one, which then writes none).</summary>
    internal Mmu? Mmu { get; init; }

    /// <summary>set_memory_* and set_direct_map_* (SetMemory.cs).</summary>
    public SetMemory SetMemory { get; }

    /// <summary>find_vm_area: the live area whose [addr, addr + size) contains <paramref name="addr"/>, or null.</summary>
    [Kernel("mm/vmalloc.c", "find_vm_area")]
    public VmArea? FindVmArea(ulong addr)
    {
        VmArea? found = null;
        foreach (var a in _areas.Values)
        {
            if (a.Addr > addr) break;
            if (addr - a.Addr < a.Size) found = a;
        }
        return found;
    }

    /// <summary>set_vm_flush_reset_perms: marks the area VM_FLUSH_RESET_PERMS, so that vfree
    /// resets the direct map of its pages and flushes before freeing them.</summary>
    [Kernel("include/linux/vmalloc.h", "set_vm_flush_reset_perms")]
    public void SetVmFlushResetPerms(VmArea area) => area.Flags |= VmFlags.VmFlushResetPerms;

    /// <summary>module_alloc / execmem_alloc(EXECMEM_MODULE_TEXT): PAGE_KERNEL and
    /// VM_FLUSH_RESET_PERMS; VM_NO_HUGE_VMAP under the v5.13 policy unless the variant is the x86
    /// case that did not exclude modules (seed 003).</summary>
    [Kernel("arch/x86/kernel/module.c", "module_alloc")]
    public (VmArea? Area, Errno Err) ModuleAlloc(ulong size)
    {
        var flags = VmFlags.VmFlushResetPerms;
        if (_options.Huge == VmallocHugePolicy.PageKernelAtLeastPmd && !_options.HugeModuleAlloc) flags |= VmFlags.VmNoHugeVmap;
        return VmallocNodeRange(AlignUp(Math.Max(size, 1), (ulong)_arch.PageSize), (ulong)_arch.PageSize, flags, writable: true);
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
    public (VmArea? Area, Errno Err) VmallocHuge(ulong size) => VmallocNodeRange(size, (ulong)_arch.PageSize, VmFlags.VmAllowHugeVmap, writable: true);

    /// <summary>__vmalloc_node_range: the area or an errno (EINVAL for size 0, ENOMEM for a
    /// size above the machine's memory or when both the huge and the small attempt fail).</summary>
    [Kernel("mm/vmalloc.c", "__vmalloc_node_range")]
    public (VmArea? Area, Errno Err) VmallocNodeRange(ulong size, ulong align, VmFlags flags, bool writable)
    {
        if (size == 0) return (null, Errno.EINVAL);
        ulong realSize = AlignUp(size, (ulong)_arch.PageSize), realAlign = Math.Max(align, (ulong)_arch.PageSize);
        if ((realSize >> _arch.PageShift) > (ulong)_mem.MaxPfn) return (null, Errno.ENOMEM);
        int shift = HugeShift(realSize, flags, writable);
        ulong alignNow = Math.Max(realAlign, 1UL << shift);
        while (true)
        {
            var area = GetVmAreaNode(realSize, alignNow, shift, VmFlags.VmAlloc | VmFlags.VmUninitialized | flags, writable);
            var err = area is null ? Errno.ENOMEM : VmallocAreaNode(area, shift, writable);
            if (err == Errno.Ok)
            {
                area!.Flags &= ~VmFlags.VmUninitialized; // clear_vm_uninitialized_flag
                return (area, Errno.Ok);
            }
            if (shift == _arch.PageShift) return (null, err);
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
        var area = new VmArea(va, size, guard, flags, writable, shift - _arch.PageShift, _arch.PageShift);
        _areas[area.Addr] = area;
        _liveAreas = null;
        return area;
    }

    /// <summary>__vmalloc_area_node: allocate every backing page at the area's order and map
    /// them; on failure the partly built area is freed (vfree) and ENOMEM returned.</summary>
    [Kernel("mm/vmalloc.c", "__vmalloc_area_node")]
    private Errno VmallocAreaNode(VmArea area, int pageShift, bool writable)
    {
        long nrSmallPages = (long)(area.Size >> _arch.PageShift);
        long got = VmAreaAllocPages(area.PageOrder, nrSmallPages, area.PageList);
        Errno err = got != nrSmallPages ? Errno.ENOMEM
            : VmapRanges.VmapPagesRange(area.Addr, area.Addr + area.Size, writable, area.PageList, pageShift);
        if (err != Errno.Ok) Vfree(area);
        return err;
    }

    /// <summary>vm_area_alloc_pages: <paramref name="nrPages"/> order-0 pages into
    /// <paramref name="pages"/>, allocated 1 &lt;&lt; <paramref name="order"/> at a time and
    /// split_page'd; stops at the first failure and returns how many it got.</summary>
    [Kernel("mm/vmalloc.c", "vm_area_alloc_pages")]
    private long VmAreaAllocPages(int order, long nrPages, List<long> pages)
    {
        long per = 1L << order;
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
    public (VmArea? Area, Errno Err) Vmap(IReadOnlyList<long> pages, VmFlags flags)
    {
        if (pages.Count == 0 || pages.Count > _mem.MaxPfn) return (null, Errno.EINVAL);
        ulong size = (ulong)pages.Count << _arch.PageShift;
        var area = GetVmAreaNode(size, (ulong)_arch.PageSize, _arch.PageShift, VmFlags.VmMap | flags, writable: true);
        if (area is null) return (null, Errno.ENOMEM);
        area.PageList.AddRange(pages);
        var err = VmapRanges.VmapPagesRange(area.Addr, area.Addr + size, writable: true, area.PageList, _arch.PageShift);
        if (err != Errno.Ok)
        {
            Vunmap(area);
            return (null, err);
        }
        return (area, Errno.Ok);
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
    public (VmArea? Area, Errno Err) IoremapProt(ulong physAddr, ulong size)
    {
        ulong last = physAddr + size - 1;
        if (size == 0 || last < physAddr) return (null, Errno.EINVAL);
        ulong page = (ulong)_arch.PageSize;
        ulong offset = physAddr & (page - 1);
        physAddr -= offset;
        size = AlignUp(size + offset, page);
        long pfn = (long)(physAddr >> _arch.PageShift);
        if (pfn < _mem.MaxPfn)
        {
            _log.RecordFault(FaultKind.KernelBug, _current(), physAddr, $"ioremap of [{physAddr:x}, {physAddr + size:x}): RAM (WARN: ioremap on RAM)");
            return (null, Errno.EINVAL);
        }
        int maxOrder = _arch.Arch == Arch.Arm64 && _arch.PageShift != 12 ? _arch.PmdShift : _arch.PudShift;
        int order = Math.Clamp(64 - System.Numerics.BitOperations.LeadingZeroCount(size - 1), _arch.PageShift, maxOrder);
        var area = GetVmAreaNode(size, 1UL << order, _arch.PageShift, VmFlags.VmIoremap, writable: true);
        if (area is null) return (null, Errno.ENOMEM);
        area.IoremapPfn = pfn;
        var err = IoremapPageRange(area.Addr, area.Addr + size, physAddr);
        if (err != Errno.Ok)
        {
            RemoveVmArea(area); // free_vm_area
            return (null, err);
        }
        return (area, Errno.Ok);
    }

    /// <summary>ioremap_page_range: vmap_range_noflush with ioremap_max_page_shift, then
    /// flush_cache_vmap (nothing on x86 and arm64).</summary>
    [Kernel("mm/vmalloc.c", "ioremap_page_range")]
    public Errno IoremapPageRange(ulong addr, ulong end, ulong physAddr) =>
        VmapRanges.VmapRangeNoflush(addr, end, (long)(physAddr >> _arch.PageShift), writable: true,
            _options.NoHugeIomap ? _arch.PageShift : 63);

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

    IReadOnlyList<IVmAreaView> IVmallocView.LiveAreas => _liveAreas ??= _areas.Values.ToList<IVmAreaView>();
    IReadOnlyList<(ulong Start, ulong End)> IVmallocView.AreasChangedThisStep => _changes.ChangedThisStep;
    IReadOnlyList<VmapArea> IVmallocView.BusyVmapAreas => VmapAreas.Busy.Where(v => !_areas.ContainsKey(v.VaStart)).ToList();
    IReadOnlyList<VmapArea> IVmallocView.LazyRanges => VmapAreas.PurgeList;
    VmallocOptions IVmallocView.Options => _options;
}
