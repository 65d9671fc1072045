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
// Page-table population as a task (mm/vmalloc.c vmap_p4d_range .. vmap_pte_range with the
// p4d/pud/pmd_alloc_track and pte_alloc_kernel_track helpers, mm/memory.c __p4d_alloc,
// __pud_alloc, __pmd_alloc, __pte_alloc_kernel, v6.6). The walk down takes no lock: each level
// reads its parent entry and, only if that is none, calls the allocator, which
//   1. allocates a zeroed table page with no lock held (pte_alloc_one_kernel, pmd_alloc_one, ...);
//   2. takes init_mm.page_table_lock (for init_mm, pud_lock and pmd_lock are that lock too);
//   3. re-checks the parent entry ("Has another populated it?") and, if it is still none, issues
//      smp_wmb (the zeroing must be visible before the pointer to the page) and populates it
//      (pmd_populate_kernel, pud_populate, p4d_populate, pgd_populate);
//   4. drops the lock. A loser (the entry was populated meanwhile) frees its page: __pmd_alloc,
//      __pud_alloc and __p4d_alloc under the lock (pmd_free, ...), __pte_alloc_kernel after the
//      unlock (pte_free_kernel).
// Each of these is one step here, named after its kernel function; the walk then reads the
// parent entry again (pmd_offset, pte_offset_kernel) and descends into whichever table won. A
// walk that finds every table present takes no step of its own, so a vmalloc that needs no new
// table is still one step. The populating task records the tables it has descended into
// (Hotplug/TableWalkers) until it leaves them, as vmalloc_to_page and ptdump do.
//
// How the kernel keeps this walk safe, per architecture. The lock serialises installers only;
// the walk itself and every reader (vmalloc_to_page, ptdump, the MMU) are lockless, and what
// makes that safe is that nothing frees a table of the vmalloc range while a walk may be in it:
// the only frees there are pmd_free_pte_page / pud_free_pmd_page from vmap_try_huge_pmd / _pud,
// for a PMD (PUD) range that one new area owns whole. x86-64 (arch/x86/mm/init_64.c): the
// top-level entries of the vmalloc range are filled at boot (preallocate_vmalloc_pages,
// 6eb82f994026, v5.9) so that no PGD entry ever changes later (every mm copies the kernel PGD
// entries; arch_sync_kernel_mappings would otherwise have to propagate them), and set_pmd /
// set_pud are plain stores ordered by the smp_wmb above; hot-remove's remove_pagetable frees
// only linear-map and vmemmap tables, which share nothing with vmalloc below the PGD. arm64
// (arch/arm64/include/asm/pgalloc.h, pgtable.h): one kernel table, swapper_pg_dir, so nothing is
// synchronised; __pmd_populate / __pud_populate write the entry with set_pmd / set_pud, which
// issue dsb(ishst) and isb so that the table walker sees the new table before the next access;
// hot-remove's free_empty_tables runs only on the linear map and vmemmap ranges, with
// floor/ceiling (pgtable_range_aligned) keeping every table shared with another region.
//
// Departures from the kernel: the model does not preallocate x86's top-level vmalloc tables at
// boot, so on x86 the first vmallocs also race for the PUD table (on arm64 they do in the kernel
// too); areas are mapped PAGE_KERNEL (writable, not executable) or
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

    /// <summary>The meta-test breakage that installs a table without re-checking, under
    /// init_mm.page_table_lock, that the entry is still none (VmallocBreakage).</summary>
    internal bool BrokenPopulateSkipsLockRecheck { get; init; }

    /// <summary>spin_lock / spin_unlock, for init_mm.page_table_lock.</summary>
    internal Spinlocks? Locks { get; init; }

    /// <summary>init_mm.page_table_lock, which __pte_alloc_kernel, __pmd_alloc, __pud_alloc and
    /// __p4d_alloc take around the re-check and the populate.</summary>
    internal KernelLock? PageTableLock { get; init; }

    /// <summary>Where a populating task records the tables it has descended into (the kernel's
    /// local pmd/pte pointers), so that NoWalkerHoldsFreedTable sees a table freed under it. Set
    /// by the composition root once hot-plug (which owns the record) exists.</summary>
    internal Hotplug.TableWalkers? Walkers { get; set; }

    /// <summary>vmap_range_noflush: maps [addr, end) to the frames from <paramref name="pfn"/>
    /// with leaves no larger than 1 &lt;&lt; <paramref name="maxPageShift"/>. ENOMEM when a table
    /// cannot be allocated (what was mapped stays; the caller unwinds); EBUSY (after a recorded
    /// WARN) when an entry is already mapped. Run to its end by a caller that cannot wait (an
    /// engine test outside any task): see <see cref="RunToEnd"/>.</summary>
    [Kernel("mm/vmalloc.c", "vmap_range_noflush")]
    public Errno VmapRangeNoflush(ulong addr, ulong end, long pfn, bool writable, int maxPageShift)
    {
        var ret = new Ret<Errno>(Errno.Ok);
        return RunToEnd(VmapRangeNoflush(null, addr, end, pfn, writable, maxPageShift, ret), ret, "vmap_range_noflush");
    }

    /// <summary>vmap_range_noflush as a task's steps (see the file header): every missing table
    /// is allocated, the lock taken, the entry re-checked and populated, the lock dropped, and a
    /// loser's page freed, one step each; a walk that needs no new table takes no step of its
    /// own. <paramref name="ctx"/> null: a caller outside any task, which takes no lock (nothing
    /// else runs) and must not find it held.</summary>
    public IEnumerable<StepStatus> VmapRangeNoflush(ExecContext? ctx, ulong addr, ulong end, long pfn, bool writable, int maxPageShift, Ret<Errno> ret)
    {
        if (addr >= end || ((addr | end) & (ulong)(arch.PageSize - 1)) != 0)
            throw new ModelBugException($"vmap_range_noflush [{addr:x}, {end:x}): not a page-aligned non-empty range");
        ret.Value = Errno.Ok;
        return VmapLevel(ctx, pgd.Root, addr, end, pfn, writable, maxPageShift, ret);
    }

    /// <summary>Runs the steps of a vmap walk to their end for a caller that cannot wait; a
    /// blocked step there is a model bug (only a task can wait for a lock).</summary>
    internal Errno RunToEnd(IEnumerable<StepStatus> steps, Ret<Errno> ret, string what)
    {
        foreach (var st in steps)
            if (st.IsBlocked)
                throw new ModelBugException($"{what}: a caller outside any task would wait for {PageTableLock?.Name}, held by {PageTableLock?.Holder}");
        return ret.Value;
    }

    private IEnumerable<StepStatus> VmapLevel(ExecContext? ctx, PtTable t, ulong addr, ulong end, long pfn, bool writable, int maxPageShift, Ret<Errno> ret)
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
                    ret.Value = Errno.EBUSY;
                    yield break;
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
                            ret.Value = Errno.EBUSY;
                            yield break;
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
                    if (t.Entries[i].IsNone)
                    {
                        var alloc = t.Level switch
                        {
                            PtLevel.Pmd => PteAllocKernel(ctx, t, i, ret),
                            PtLevel.Pud => PmdAlloc(ctx, t, i, ret),
                            PtLevel.P4d => PudAlloc(ctx, t, i, ret), // with 4 levels the root: the P4D folded into the PGD
                            _ => P4dAlloc(ctx, t, i, ret),
                        };
                        foreach (var st in alloc) yield return st;
                        if (ret.Value != Errno.Ok) yield break;
                    }
                    // pud_offset / pmd_offset / pte_offset_kernel: the entry is read again after
                    // the allocation, so a walk that lost the race descends into the winner's table.
                    Pte e = t.Entries[i];
                    if (e.IsLeaf)
                    {
                        log.RecordFault(FaultKind.KernelBug, current(), addr, $"vmap at {addr:x}: {t.Level} entry is already a leaf {e}");
                        ret.Value = Errno.EBUSY;
                        yield break;
                    }
                    if (!pgd.TryGetChild(t, e, out var child))
                    {
                        // Only a free of the table under the walk (no kernel path frees vmalloc
                        // tables so) leaves the entry none here: pte_offset_kernel of it is an oops.
                        log.RecordFault(FaultKind.TranslationFault, current(), addr, $"vmap at {addr:x}: {t.Level} entry {i} of table {t.Pfn:x} is {e} right after it was populated: the table was freed under the walk");
                        ret.Value = Errno.EBUSY;
                        yield break;
                    }
                    if (ctx is not null) Walkers?.Hold(ctx.Task, "vmap_range_noflush", pgd, child);
                    foreach (var st in VmapLevel(ctx, child, addr, next, pfnHere, writable, maxPageShift, ret)) yield return st;
                    if (ctx is not null) Walkers?.Release(ctx.Task, child);
                    if (ret.Value != Errno.Ok) yield break;
                }
            }
            pfn += (long)((next - addr) >> arch.PageShift);
            addr = next;
        }
    }

    /// <summary>__pte_alloc_kernel: a PTE table for the none PMD entry <paramref name="i"/> of
    /// <paramref name="t"/> (see <see cref="AllocAndPopulate"/>).</summary>
    [Kernel("mm/memory.c", "__pte_alloc_kernel")]
    private IEnumerable<StepStatus> PteAllocKernel(ExecContext? ctx, PtTable t, int i, Ret<Errno> ret) => AllocAndPopulate(ctx, t, i, ret);

    /// <summary>__pmd_alloc: a PMD table for a none PUD entry.</summary>
    [Kernel("mm/memory.c", "__pmd_alloc")]
    private IEnumerable<StepStatus> PmdAlloc(ExecContext? ctx, PtTable t, int i, Ret<Errno> ret) => AllocAndPopulate(ctx, t, i, ret);

    /// <summary>__pud_alloc: a PUD table for a none P4D entry (the PGD entry with 4 levels).</summary>
    [Kernel("mm/memory.c", "__pud_alloc")]
    private IEnumerable<StepStatus> PudAlloc(ExecContext? ctx, PtTable t, int i, Ret<Errno> ret) => AllocAndPopulate(ctx, t, i, ret);

    /// <summary>__p4d_alloc: a P4D table for a none PGD entry (5 levels only).</summary>
    [Kernel("mm/memory.c", "__p4d_alloc")]
    private IEnumerable<StepStatus> P4dAlloc(ExecContext? ctx, PtTable t, int i, Ret<Errno> ret) => AllocAndPopulate(ctx, t, i, ret);

    /// <summary>__pte_alloc_kernel / __pmd_alloc / __pud_alloc / __p4d_alloc for the none
    /// entry <paramref name="i"/> of <paramref name="t"/> (the lockless pXd_none test of
    /// pte_alloc_kernel_track and the pXd_alloc_track helpers saw no table): a zeroed page
    /// allocated without any lock; init_mm.page_table_lock; the entry re-checked ("Has another
    /// populated it?") and, if still none, populated after smp_wmb (the zeroed page visible
    /// before the pointer to it); the lock dropped. The loser of a race frees its page:
    /// __pte_alloc_kernel after spin_unlock (pte_free_kernel), the others under the lock
    /// (pmd_free / pud_free / p4d_free). ENOMEM when the page cannot be allocated.</summary>
    private IEnumerable<StepStatus> AllocAndPopulate(ExecContext? ctx, PtTable t, int i, Ret<Errno> ret)
    {
        PtLevel level = t.Level - 1;
        var (alloc, populate, free) = level switch
        {
            PtLevel.Pte => ("pte_alloc_one_kernel", "pmd_populate_kernel", "pte_free_kernel"),
            PtLevel.Pmd => ("pmd_alloc_one", "pud_populate", "pmd_free"),
            PtLevel.Pud => ("pud_alloc_one", "p4d_populate", "pud_free"),
            _ => ("p4d_alloc_one", "pgd_populate", "p4d_free"),
        };
        if (!pgtable.TryAllocPageTablePage(out long tp))
        {
            ret.Value = Errno.ENOMEM;
            yield break;
        }
        var fresh = pgd.NewTable(tp, level, pgd.EntryVa(t, i)); // zeroed, linked nowhere yet
        yield return StepStatus.After(alloc);
        var lk = PageTableLock ?? throw new ModelBugException("vmap_range_noflush: no init_mm.page_table_lock");
        if (ctx is not null)
            foreach (var st in (Locks ?? throw new ModelBugException("vmap_range_noflush: no spinlocks")).SpinLock(ctx, lk)) yield return st;
        else if (lk.Holder is { } holder)
            throw new ModelBugException($"vmap_range_noflush outside any task: {lk.Name} is held by {holder}");
        bool install = t.Entries[i].IsNone || BrokenPopulateSkipsLockRecheck;
        if (install)
        {
            pgd.Set(t, i, Pte.MkTable(tp)); // smp_wmb(); pmd_populate_kernel / pud_populate / p4d_populate / pgd_populate
            yield return StepStatus.After(populate);
        }
        else if (level != PtLevel.Pte)
        {
            pgtable.FreeTable(fresh, free); // another CPU populated it: freed under the lock
            yield return StepStatus.After(free);
        }
        if (ctx is not null) Locks!.SpinUnlock(ctx, lk);
        yield return StepStatus.After($"spin_unlock({lk.Name})");
        if (!install && level == PtLevel.Pte)
        {
            pgtable.FreeTable(fresh, free); // __pte_alloc_kernel frees the loser's page after unlocking
            yield return StepStatus.After(free);
        }
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
    public IEnumerable<StepStatus> VmapPagesRangeNoflush(ExecContext? ctx, ulong addr, ulong end, bool writable, IReadOnlyList<long> pages, int pageShift, Ret<Errno> ret)
    {
        long step = 1L << (pageShift - arch.PageShift);
        ulong chunk = 1UL << pageShift;
        int idx = 0;
        ret.Value = Errno.Ok;
        for (ulong a = addr; a < end; a += chunk, idx += (int)step)
        {
            foreach (var st in VmapRangeNoflush(ctx, a, a + chunk, pages[idx], writable, pageShift, ret)) yield return st;
            if (ret.Value != Errno.Ok) yield break;
        }
    }

    /// <summary>vmap_pages_range: vmap_pages_range_noflush, then flush_cache_vmap (nothing on
    /// x86 and arm64).</summary>
    [Kernel("mm/vmalloc.c", "vmap_pages_range")]
    public IEnumerable<StepStatus> VmapPagesRange(ExecContext? ctx, ulong addr, ulong end, bool writable, IReadOnlyList<long> pages, int pageShift, Ret<Errno> ret) =>
        VmapPagesRangeNoflush(ctx, addr, end, writable, pages, pageShift, ret);

    /// <summary>vmap_pages_range run to its end by a caller outside any task.</summary>
    public Errno VmapPagesRange(ulong addr, ulong end, bool writable, IReadOnlyList<long> pages, int pageShift)
    {
        var ret = new Ret<Errno>(Errno.Ok);
        return RunToEnd(VmapPagesRange(null, addr, end, writable, pages, pageShift, ret), ret, "vmap_pages_range");
    }

    /// <summary>vunmap_range: clears every leaf in [addr, end) (a huge leaf the range cuts is
    /// cleared whole, with the WARN of vunmap_pmd_range) and flushes [addr, end).</summary>
    [Kernel("mm/vmalloc.c", "vunmap_range")]
    public void VunmapRange(ulong addr, ulong end)
    {
        pgtable.VunmapRangeNoflush(addr, end);
        tlb.FlushTlbKernelRange(addr, end);
    }
}
