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

/// <summary>The vmalloc allocator of one kernel: the state and the views here; allocation in
/// VmallocAlloc.cs, vmap/ioremap/vunmap_range and vmalloc_to_page in VmallocVmap.cs, vfree and
/// vm_reset_perms in VmallocFree.cs.</summary>
public sealed partial class Vmalloc : IVmallocView
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

    internal Vmalloc(ArchConfig arch, PhysMem mem, KernelPgtable pgtable, PageTable pgd, TlbFlush tlb, KernelLog log, Func<ExecContext?> current, int cpus, KernelVariant variant, Spinlocks locks, KernelLock pageTableLock)
    {
        _arch = arch;
        _mem = mem;
        _variant = variant;
        _options = variant.Vmalloc;
        _options.Validate();
        _breakage = variant.VmallocBreakage;
        _log = log;
        VmapAreas = new VmapAreaAllocator(arch, tlb, cpus, _breakage);
        VmapRanges = new VmapRange(arch, pgd, pgtable, tlb, log, current) { BrokenIgnoresPhysAlignment = _breakage.HugeVmapIgnoresPhysAlignment, BrokenContIgnoresPhysAlignment = _breakage.ContPteIgnoresPhysAlignment, ContPteVmap = !_options.NoContPteVmap,
            Locks = locks, PageTableLock = pageTableLock, BrokenPopulateSkipsLockRecheck = _breakage.PopulateSkipsLockRecheck };
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



    IReadOnlyList<IVmAreaView> IVmallocView.LiveAreas => _liveAreas ??= _areas.Values.ToList<IVmAreaView>();
    IReadOnlyList<(ulong Start, ulong End)> IVmallocView.AreasChangedThisStep => _changes.ChangedThisStep;
    IReadOnlyList<VmapArea> IVmallocView.BusyVmapAreas => VmapAreas.Busy.Where(v => !_areas.ContainsKey(v.VaStart)).ToList();
    IReadOnlyList<VmapArea> IVmallocView.LazyRanges => VmapAreas.PurgeList;
    VmallocOptions IVmallocView.Options => _options;
}
