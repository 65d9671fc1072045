// Mapping and unmapping kernel virtual ranges, mm/vmalloc.c (v6.6):
//   vmap_range_noflush   pgd → p4d → pud → pmd → pte for a physically contiguous range (ioremap,
//                        and each 1 << page_shift chunk of a huge vmalloc), trying a PUD leaf
//                        (vmap_try_huge_pud) and a PMD leaf (vmap_try_huge_pmd) where allowed;
//   vmap_pages_range     the pages of a vm area: small pages one PTE each
//                        (vmap_small_pages_range_noflush), larger ones chunk by chunk through
//                        vmap_range_noflush with max_page_shift = page_shift;
//   vunmap_range         vunmap_range_noflush, then flush_tlb_kernel_range.
//
// vmap_try_huge_pmd is the kernel's ladder of early returns, each a named reason
// (HugeMapDecision): max_page_shift below PMD_SHIFT, arch_vmap_pmd_supported(prot) false, the
// range not exactly PMD_SIZE, the virtual or the physical address not PMD-aligned; then a
// present PMD entry (a PTE table left by earlier small mappings: vmalloc never frees its page
// tables) is handed to pmd_free_pte_page before pmd_set_huge. vmap_try_huge_pud likewise with
// pud_free_pmd_page. arch_vmap_pmd_supported: x86 boot_cpu_has(X86_FEATURE_PSE), arm64 true
// (since fa93b45fd397 dropped the CONFIG_PTDUMP_DEBUGFS exclusion); arch_vmap_pud_supported:
// x86 X86_FEATURE_GBPAGES, arm64 pud_sect_supported() (4K granule). The model's CPUs have
// every feature, so both are LeafAllowed of the configuration.
//
// x86 and arm64 differ around the table replacement (KernelPgtable.PmdFreePtePage): x86
// unlinks, INVLPGs one page (which drops the paging-structure caches) and frees; arm64 unlinks
// (the break of break-before-make), TLBI VAAE1IS for the address (every level) and frees, and the
// huge entry is then the make.
//
// arm64 contiguous PTEs (06fc959fcff7 "arm64/mm: Support huge pte-mapped pages in vmap", v6.16):
// vmap_pte_range asks arch_vmap_pte_range_map_size for each PTE; a run of CONT_PTES entries
// that is whole, virtually and physically CONT_PTE_SIZE-aligned and allowed by max_page_shift is
// written with set_huge_pte_at (the contiguous bit on every entry). __vmalloc_node_range asks
// arch_vmap_pte_supported_shift for a VM_ALLOW_HUGE_VMAP allocation too small for a PMD, so such
// an area is backed by CONT_PTE_SIZE allocations; vunmap_pte_range clears a contiguous run whole
// (arch_vmap_pte_range_unmap_size), with a WARN when the range starts inside the run or ends
// before its end (2fba13371fe8). set_huge_pte_at breaks (clears and flushes) before it writes
// only when the old entries are valid; vmap never gets there, because vmap_pte_range refuses a
// PTE that is not none before it asks.
//
// Departures from the kernel: areas are mapped PAGE_KERNEL (writable, not executable) or
// read-only, and only set_memory_* (SetMemory.cs) changes the write and execute bits later;
// pgtbl_mod_mask / arch_sync_kernel_mappings are not modelled (no per-mm kernel PGD copies).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Mm;

/// <summary>Why vmap_try_huge_pmd / vmap_try_huge_pud did or did not install a huge leaf.</summary>
public enum HugeMapDecision { ShiftTooSmall, ArchUnsupported, SizeNotLeaf, VirtUnaligned, PhysUnaligned, TableNotFreed, Mapped }

/// <summary>The vmap walkers of init_mm.</summary>
public sealed class VmapRange(ArchConfig arch, PageTable pgd, KernelPgtable pgtable, TlbFlush tlb, KernelLog log, Func<ExecContext?> current)
{
    /// <summary>The meta-test breakage that skips the physical-alignment test (VmallocBreakage).</summary>
    internal bool BrokenIgnoresPhysAlignment { get; init; }

    /// <summary>What the last vmap_try_huge_* calls decided, counted by reason (for coverage).</summary>
    public Dictionary<HugeMapDecision, long> Decisions { get; } = new();

    /// <summary>vmap_range_noflush: maps [addr, end) to the frames from <paramref name="pfn"/>
    /// with leaves no larger than 1 &lt;&lt; <paramref name="maxPageShift"/>. ENOMEM when a table
    /// cannot be allocated (what was mapped stays; the caller unwinds); EBUSY (after a recorded
    /// WARN) when an entry is already mapped.</summary>
    [Kernel("mm/vmalloc.c", "vmap_range_noflush")]
    public Errno VmapRangeNoflush(ulong addr, ulong end, long pfn, bool writable, int maxPageShift)
    {
        if (addr >= end || ((addr | end) & (ulong)(arch.PageSize - 1)) != 0)
            throw new ModelBugException($"vmap_range_noflush [{addr:x}, {end:x}): not a page-aligned non-empty range");
        return VmapLevel(pgd.Root, addr, end, pfn, writable, maxPageShift);
    }

    private Errno VmapLevel(PtTable t, ulong addr, ulong end, long pfn, bool writable, int maxPageShift)
    {
        ulong size = pgd.EntrySize(t);
        while (addr < end)
        {
            ulong next = Math.Min((addr & ~(size - 1)) + size, end);
            if (next == 0) next = end; // top of the address space
            int i = pgd.Index(addr, t.Level);
            long pfnHere = pfn;
            if (t.Level == PtLevel.Pte)
            {
                if (!t.Entries[i].IsNone)
                {
                    log.RecordFault(FaultKind.KernelBug, current(), addr, $"vmap_pte_range at {addr:x}: PTE already {t.Entries[i]} (WARN_ON(!pte_none))");
                    return Errno.EBUSY;
                }
                ulong mapSize = ArchVmapPteRangeMapSize(addr, end, pfnHere, maxPageShift);
                if (mapSize != (ulong)arch.PageSize)
                {
                    // set_huge_pte_at over none entries: every PTE of the run with PTE_CONT (a
                    // break is needed only for a valid → valid change, which the pte_none test
                    // above already refuses).
                    int n = (int)(mapSize >> arch.PageShift);
                    for (int j = 0; j < n; j++)
                        if (!t.Entries[i + j].IsNone)
                        {
                            log.RecordFault(FaultKind.KernelBug, current(), addr + ((ulong)j << arch.PageShift), $"vmap_pte_range at {addr:x}: PTE {j} of the contiguous run already {t.Entries[i + j]} (BUG)");
                            return Errno.EBUSY;
                        }
                    for (int j = 0; j < n; j++) pgd.Set(t, i + j, Pte.MkLeaf(pfnHere + j, writable, cont: true));
                    pfn += n;
                    addr += mapSize;
                    continue;
                }
                pgd.Set(t, i, Pte.MkLeaf(pfnHere, writable));
            }
            else
            {
                bool mapped = t.Level is PtLevel.Pmd or PtLevel.Pud
                    && VmapTryHuge(t, i, addr, next, pfnHere, writable, maxPageShift) == HugeMapDecision.Mapped;
                if (!mapped)
                {
                    Pte e = t.Entries[i];
                    if (e.IsLeaf)
                    {
                        log.RecordFault(FaultKind.KernelBug, current(), addr, $"vmap at {addr:x}: {t.Level} entry is already a leaf {e}");
                        return Errno.EBUSY;
                    }
                    if (!pgd.TryGetChild(t, e, out var child))
                    {
                        if (!pgtable.TryAllocPageTablePage(out long tp)) return Errno.ENOMEM;
                        child = pgd.NewTable(tp, t.Level - 1, pgd.EntryVa(t, i));
                        pgd.Set(t, i, Pte.MkTable(tp)); // pud_alloc / pmd_alloc / pte_alloc_kernel
                    }
                    var err = VmapLevel(child, addr, next, pfnHere, writable, maxPageShift);
                    if (err != Errno.Ok) return err;
                }
            }
            pfn += (long)((next - addr) >> arch.PageShift);
            addr = next;
        }
        return Errno.Ok;
    }

    /// <summary>arch_vmap_pte_range_map_size: arm64 (06fc959fcff7, v6.16) maps a run of
    /// CONT_PTE_SIZE with the contiguous bit when max_page_shift allows it, the rest of the
    /// range holds a whole run, and both the virtual and the physical address are aligned to it;
    /// PAGE_SIZE otherwise, and always on x86.</summary>
    [Kernel("arch/arm64/include/asm/vmalloc.h", "arch_vmap_pte_range_map_size")]
    public ulong ArchVmapPteRangeMapSize(ulong addr, ulong end, long pfn, int maxPageShift)
    {
        ulong page = (ulong)arch.PageSize, cont = (ulong)arch.ContSize(PtLevel.Pte);
        if (arch.Arch != Arch.Arm64 || !ContPteVmap || cont == 0) return page;
        if (maxPageShift < System.Numerics.BitOperations.Log2(cont)) return page;
        if (end - addr < cont) return page;
        if ((addr & (cont - 1)) != 0) return page;
        if ((((ulong)pfn << arch.PageShift) & (cont - 1)) != 0 && !BrokenContIgnoresPhysAlignment) return page;
        return cont;
    }

    /// <summary>Whether arm64 uses contiguous PTEs in vmap (v6.16 and later).</summary>
    internal bool ContPteVmap { get; init; } = true;

    /// <summary>The meta-test breakage that skips the physical-alignment test of
    /// arch_vmap_pte_range_map_size (VmallocBreakage).</summary>
    internal bool BrokenContIgnoresPhysAlignment { get; init; }

    private HugeMapDecision VmapTryHuge(PtTable t, int i, ulong addr, ulong end, long pfn, bool writable, int maxPageShift)
    {
        var d = t.Level == PtLevel.Pmd ? VmapTryHugePmd(t, i, addr, end, pfn, writable, maxPageShift)
            : VmapTryHugePud(t, i, addr, end, pfn, writable, maxPageShift);
        Decisions[d] = Decisions.GetValueOrDefault(d) + 1;
        return d;
    }

    /// <summary>vmap_try_huge_pmd: the ladder of preconditions, then pmd_set_huge.</summary>
    [Kernel("mm/vmalloc.c", "vmap_try_huge_pmd")]
    public HugeMapDecision VmapTryHugePmd(PtTable t, int i, ulong addr, ulong end, long pfn, bool writable, int maxPageShift) =>
        VmapTryHugeLeaf(t, i, addr, end, pfn, writable, maxPageShift, PtLevel.Pmd);

    /// <summary>vmap_try_huge_pud: as vmap_try_huge_pmd one level up, with pud_free_pmd_page.</summary>
    [Kernel("mm/vmalloc.c", "vmap_try_huge_pud")]
    public HugeMapDecision VmapTryHugePud(PtTable t, int i, ulong addr, ulong end, long pfn, bool writable, int maxPageShift) =>
        VmapTryHugeLeaf(t, i, addr, end, pfn, writable, maxPageShift, PtLevel.Pud);

    private HugeMapDecision VmapTryHugeLeaf(PtTable t, int i, ulong addr, ulong end, long pfn, bool writable, int maxPageShift, PtLevel level)
    {
        int shift = arch.LevelShift(level);
        ulong size = 1UL << shift;
        if (maxPageShift < shift) return HugeMapDecision.ShiftTooSmall;
        if (!arch.LeafAllowed(level) || (int)level >= arch.Levels) return HugeMapDecision.ArchUnsupported;
        if (end - addr != size) return HugeMapDecision.SizeNotLeaf;
        if ((addr & (size - 1)) != 0) return HugeMapDecision.VirtUnaligned;
        if ((((ulong)pfn << arch.PageShift) & (size - 1)) != 0 && !BrokenIgnoresPhysAlignment) return HugeMapDecision.PhysUnaligned;
        if (!t.Entries[i].IsNone)
        {
            if (t.Entries[i].IsLeaf) return HugeMapDecision.TableNotFreed; // not a table: mapped already
            int freed = level == PtLevel.Pmd ? pgtable.PmdFreePtePage(t, i) : pgtable.PudFreePmdPage(t, i);
            if (freed == 0) return HugeMapDecision.TableNotFreed;
        }
        pgd.Set(t, i, Pte.MkLeaf(pfn, writable)); // pmd_set_huge / pud_set_huge
        return HugeMapDecision.Mapped;
    }

    /// <summary>vmap_pages_range_noflush: maps the pages of an area at [addr, end), each
    /// 1 &lt;&lt; <paramref name="pageShift"/> bytes (pages[] holds the order-0 pages; a larger
    /// page is its first one followed by the rest, physically contiguous).</summary>
    [Kernel("mm/vmalloc.c", "vmap_pages_range_noflush")]
    public Errno VmapPagesRangeNoflush(ulong addr, ulong end, bool writable, IReadOnlyList<long> pages, int pageShift)
    {
        long step = 1L << (pageShift - arch.PageShift);
        ulong chunk = 1UL << pageShift;
        int idx = 0;
        for (ulong a = addr; a < end; a += chunk, idx += (int)step)
        {
            var err = VmapRangeNoflush(a, a + chunk, pages[idx], writable, pageShift);
            if (err != Errno.Ok) return err;
        }
        return Errno.Ok;
    }

    /// <summary>vmap_pages_range: vmap_pages_range_noflush, then flush_cache_vmap (nothing on
    /// x86 and arm64).</summary>
    [Kernel("mm/vmalloc.c", "vmap_pages_range")]
    public Errno VmapPagesRange(ulong addr, ulong end, bool writable, IReadOnlyList<long> pages, int pageShift) =>
        VmapPagesRangeNoflush(addr, end, writable, pages, pageShift);

    /// <summary>vunmap_range: clears every leaf in [addr, end) (a huge leaf the range cuts is
    /// cleared whole, with the WARN of vunmap_pmd_range) and flushes [addr, end).</summary>
    [Kernel("mm/vmalloc.c", "vunmap_range")]
    public void VunmapRange(ulong addr, ulong end)
    {
        pgtable.VunmapRangeNoflush(addr, end);
        tlb.FlushTlbKernelRange(addr, end);
    }
}
