// Permission changes of kernel mappings and of the direct map (v6.6):
//   x86   arch/x86/mm/pat/set_memory.c: set_memory_ro/rw/x/nx → change_page_attr_set_clr, which
//         walks the range leaf by leaf (__change_page_attr): a large leaf wholly inside the range
//         keeps its size (try_preserve_large_page), one the range covers only in part is split
//         first (split_large_page: one page-table page, ENOMEM is a value, flush_tlb_all after
//         the split as __split_large_page does). For an address outside the direct map the
//         change is mirrored onto the direct-map alias of the same frames (cpa_process_alias),
//         leaf by leaf with the primary's leaf size (a 2M vmalloc leaf mirrors as 2M, a 4K one
//         as 4K), never touching NX there ("Directmap always has NX set"). Then cpa_flush; with an
//         alias processed cpa sets force_flush_all, so the flush is flush_tlb_all.
//         set_direct_map_invalid_noflush / set_direct_map_default_noflush: __set_pages_np /
//         __set_pages_p on the one direct-map page, splitting a large leaf if need be (the split
//         can fail with ENOMEM; vm_reset_perms does not look at the result), no flush.
//   arm64 arch/arm64/mm/pageattr.c: set_memory_* → change_memory_common, only for a range that
//         lies inside one vm area that is VM_ALLOC and not VM_ALLOW_HUGE_VMAP (else -EINVAL: a
//         live block must never be split there); __change_memory_common changes the PTEs and
//         flushes the range. The linear alias follows only with rodata_full, and
//         set_direct_map_*_noflush do something only when can_set_direct_map() (rodata_full,
//         DEBUG_PAGEALLOC, realm): the model's linear map is block-mapped (Kernel.cs), which is
//         the configuration where can_set_direct_map() is false, so on arm64 the linear alias is
//         never changed and set_direct_map_*_noflush return 0.
//
// Departures from the kernel: only write and execute permissions (no cache attributes, no
// encryption bits, no CPA_ARRAY / CPA_PAGES_ARRAY); no kernel-text high alias on x86; the x86
// large-page preservation does not check the rest of the large page for a conflicting protection
// (the model has only these two bits and a large leaf is changed as a whole); on arm64 a range
// containing a PMD leaf of an area without VM_ALLOW_HUGE_VMAP (possible only under the v5.13
// policy, which arm64 never enabled) is refused with -EINVAL before anything changes, where
// apply_to_page_range would have warned.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Mm;

/// <summary>set_memory_* and set_direct_map_* of one kernel.</summary>
public sealed class SetMemory
{
    private readonly ArchConfig _arch;
    private readonly PageTable _pgd;
    private readonly KernelPgtable _pgtable;
    private readonly TlbFlush _tlb;
    private readonly Func<ulong, VmArea?> _findVmArea;
    private readonly VmallocBreakage _breakage;
    private readonly ulong _page;

    internal SetMemory(ArchConfig arch, PageTable pgd, KernelPgtable pgtable, TlbFlush tlb, Func<ulong, VmArea?> findVmArea, VmallocBreakage breakage)
    {
        _arch = arch;
        _pgd = pgd;
        _pgtable = pgtable;
        _tlb = tlb;
        _findVmArea = findVmArea;
        _breakage = breakage;
        _page = (ulong)arch.PageSize;
    }

    /// <summary>Direct-map pages split so far by set_memory_* and set_direct_map_* (for coverage).</summary>
    public long DirectMapSplits { get; private set; }

    private bool X86 => _arch.Arch == Arch.X86_64;

    /// <summary>set_memory_ro: [addr, addr + numpages pages) read-only; 0 or an errno.</summary>
    [Kernel("arch/x86/mm/pat/set_memory.c", "set_memory_ro")]
    public Errno SetMemoryRo(ulong addr, long numpages) => Change(addr, numpages, writable: false, exec: null);

    /// <summary>set_memory_rw: [addr, addr + numpages pages) writable.</summary>
    [Kernel("arch/x86/mm/pat/set_memory.c", "set_memory_rw")]
    public Errno SetMemoryRw(ulong addr, long numpages) => Change(addr, numpages, writable: true, exec: null);

    /// <summary>set_memory_x: [addr, addr + numpages pages) executable.</summary>
    [Kernel("arch/x86/mm/pat/set_memory.c", "set_memory_x")]
    public Errno SetMemoryX(ulong addr, long numpages) => Change(addr, numpages, writable: null, exec: true);

    /// <summary>set_memory_nx: [addr, addr + numpages pages) not executable.</summary>
    [Kernel("arch/x86/mm/pat/set_memory.c", "set_memory_nx")]
    public Errno SetMemoryNx(ulong addr, long numpages) => Change(addr, numpages, writable: null, exec: false);

    private Errno Change(ulong addr, long numpages, bool? writable, bool? exec)
    {
        if ((addr & (_page - 1)) != 0) throw new ModelBugException($"set_memory at {addr:x}: not page-aligned (the caller rounds)");
        if (numpages <= 0) return Errno.Ok;
        var err = X86 ? ChangePageAttrSetClr(addr, numpages, writable, exec) : ChangeMemoryCommon(addr, numpages, writable, exec);
        if (err != Errno.Ok && _findVmArea(addr) is { } area) area.SetMemoryFailed = true;
        return err;
    }

    /// <summary>change_page_attr_set_clr with the alias check: the range, then cpa_flush (every
    /// TLB, as force_flush_all asks) if anything changed, whatever the result.</summary>
    [Kernel("arch/x86/mm/pat/set_memory.c", "change_page_attr_set_clr")]
    private Errno ChangePageAttrSetClr(ulong addr, long numpages, bool? writable, bool? exec)
    {
        bool changed = false;
        var err = ChangePageAttrSetClr(addr, addr + ((ulong)numpages << _arch.PageShift), writable, exec, primary: true, ref changed);
        if (changed) _tlb.FlushTlbAll();
        return err;
    }

    /// <summary>__change_page_attr_set_clr: leaf by leaf over [start, end), splitting a large leaf
    /// the range covers in part; for the primary range outside the direct map, the alias of each
    /// leaf's frames (cpa_process_alias).</summary>
    [Kernel("arch/x86/mm/pat/set_memory.c", "__change_page_attr_set_clr")]
    private Errno ChangePageAttrSetClr(ulong start, ulong end, bool? writable, bool? exec, bool primary, ref bool changed)
    {
        ulong va = start;
        while (va < end)
        {
            var w = _pgd.Walk(va);
            if (!w.Entry.IsLeaf)
            {
                // __cpa_process_fault: an unmapped primary address is -EFAULT; an alias page that
                // is not mapped (a direct-map page made invalid) is skipped.
                if (primary) return Errno.EFAULT;
                va += _page;
                continue;
            }
            ulong leafVa = _pgd.EntryVa(w.Table, w.Index), size = _pgd.EntrySize(w.Table);
            if (size > _page && (leafVa < va || leafVa + size > end))
            {
                if (SplitLargePage(w) is null) return Errno.ENOMEM;
                changed = true;
                continue;
            }
            Pte e = w.Entry;
            if (writable is bool wr) e = e.WithWritable(wr);
            if (exec is bool x) e = e.WithExec(x);
            if (e != w.Entry)
            {
                _pgd.Set(w.Table, w.Index, e);
                changed = true;
            }
            if (primary)
            {
                _findVmArea(leafVa)?.RecordProt(leafVa, size, e.Writable, e.Exec);
                if (!InDirectMap(leafVa) && !_breakage.SetMemoryNoAlias)
                {
                    // cpa_process_alias: the frames' direct-map alias, NX left alone.
                    ulong alias = _arch.PfnToVirt(w.Entry.Pfn);
                    var err = ChangePageAttrSetClr(alias, alias + size, writable, exec: null, primary: false, ref changed);
                    if (err != Errno.Ok) return err;
                }
            }
            va = leafVa + size;
        }
        return Errno.Ok;
    }

    /// <summary>split_large_page: the large leaf becomes a table of the next size down with the
    /// same frames and permissions (one page-table page), then flush_tlb_all. Null: ENOMEM.</summary>
    [Kernel("arch/x86/mm/pat/set_memory.c", "split_large_page")]
    private PtTable? SplitLargePage(PtWalk w)
    {
        var child = w.Level == PtLevel.Pmd ? _pgtable.SplitPmd(w.Table, w.Index) : _pgtable.SplitPud(w.Table, w.Index);
        if (child is null) return null;
        if (InDirectMap(_pgd.EntryVa(w.Table, w.Index))) DirectMapSplits++;
        _tlb.FlushTlbAll();
        return child;
    }

    private bool InDirectMap(ulong va) => va >= _arch.PfnToVirt(0) && va - _arch.PfnToVirt(0) < (ulong)_arch.LinearMapSize;

    /// <summary>set_direct_map_invalid_noflush: the direct-map page of <paramref name="pfn"/>
    /// not present (x86 __set_pages_np; arm64 without can_set_direct_map: nothing).</summary>
    [Kernel("arch/x86/mm/pat/set_memory.c", "set_direct_map_invalid_noflush")]
    public Errno SetDirectMapInvalidNoflush(long pfn) => X86 ? SetDirectMapPage(pfn, present: false) : Errno.Ok;

    /// <summary>set_direct_map_default_noflush: the direct-map page of <paramref name="pfn"/>
    /// present and PAGE_KERNEL again (x86 __set_pages_p; arm64 without can_set_direct_map: nothing).</summary>
    [Kernel("arch/x86/mm/pat/set_memory.c", "set_direct_map_default_noflush")]
    public Errno SetDirectMapDefaultNoflush(long pfn) => X86 ? SetDirectMapPage(pfn, present: true) : Errno.Ok;

    private Errno SetDirectMapPage(long pfn, bool present)
    {
        ulong va = _arch.PfnToVirt(pfn);
        while (true)
        {
            var w = _pgd.Walk(va);
            if (w.Level != PtLevel.Pte && !w.Entry.IsLeaf)
                throw new ModelBugException($"direct map of pfn {pfn:x} at {va:x}: {w.Level} entry {w.Entry}, the linear map must cover all memory");
            if (w.Level != PtLevel.Pte)
            {
                if (SplitLargePage(w) is null) return Errno.ENOMEM;
                continue;
            }
            Pte want = present ? Pte.MkLeaf(pfn, writable: true) : Pte.None;
            if (w.Entry != want) _pgd.Set(w.Table, w.Index, want);
            return Errno.Ok;
        }
    }

    /// <summary>change_memory_common (arm64): EINVAL unless [addr, end) lies in one vm area that
    /// is VM_ALLOC without VM_ALLOW_HUGE_VMAP; then the PTEs change and the range is flushed.</summary>
    [Kernel("arch/arm64/mm/pageattr.c", "change_memory_common")]
    private Errno ChangeMemoryCommon(ulong addr, long numpages, bool? writable, bool? exec)
    {
        ulong end = addr + ((ulong)numpages << _arch.PageShift);
        var area = _findVmArea(addr);
        if (area is null || end > area.Addr + area.Size || (area.Flags & (VmFlags.VmAlloc | VmFlags.VmAllowHugeVmap)) != VmFlags.VmAlloc)
            return Errno.EINVAL;
        var leaves = _pgd.Leaves(addr, end).ToList();
        if (leaves.Any(l => l.Level != PtLevel.Pte)) return Errno.EINVAL;
        foreach (var l in leaves)
        {
            Pte e = l.Entry;
            if (writable is bool wr) e = e.WithWritable(wr);
            if (exec is bool x) e = e.WithExec(x);
            if (e != l.Entry) _pgd.Set(l.Table, l.Index, e);
            ulong va = _pgd.EntryVa(l.Table, l.Index);
            area.RecordProt(va, _page, e.Writable, e.Exec);
        }
        _tlb.FlushTlbKernelRange(addr, end);
        return Errno.Ok;
    }
}
