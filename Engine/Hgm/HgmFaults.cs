// Mapping pages of the page cache into user page tables: hugetlb_fault / hugetlb_no_page
// (mm/hugetlb.c), a user access through the TLB, and UFFDIO_CONTINUE (mm/userfaultfd.c,
// mfill_atomic_hugetlb with the series' PAGE_SIZE pieces). Part of HugetlbHgm (see HugetlbHgm.cs).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Hgm;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>Faults and UFFDIO_CONTINUE.</summary>
public sealed class HgmFaults : HgmPart
{
    internal HgmFaults(Kernel k, HugetlbHgm hgm) : base(k, hgm) { }

    /// <summary>hugetlb_fault (and hugetlb_no_page) for a user access to <paramref name="addr"/>:
    /// allocate the folio and add it to the page cache if missing, then map the natural size,
    /// or below an HGM table the size of the entry the walk ends at. A page already in the page
    /// cache of a VMA registered in minor mode is a minor fault for userspace (EAGAIN; with
    /// MADV_SPLIT its address is reported rounded to PAGE_SIZE, else to the huge page size).</summary>
    [Kernel("mm/hugetlb.c", "hugetlb_fault")]
    public IEnumerable<StepStatus> HugetlbFault(ExecContext ctx, HugetlbMm hm, ulong addr, bool write, Ret<Errno> ret) =>
        HugetlbHgm.WithMmapLock(ctx, hm, write: false, HugetlbFaultLocked(ctx, hm, addr, write, ret));

    private IEnumerable<StepStatus> HugetlbFaultLocked(ExecContext ctx, HugetlbMm hm, ulong addr, bool write, Ret<Errno> ret)
    {
        var v = hm.VmaLookup(addr);
        ret.Value = Errno.EFAULT;
        if (v is null || !v.IsVmHugetlbPage || (write && (v.VmFlags & VmaFlags.VmWrite) == 0))
        {
            Note("hgm.fault_sigsegv");
            yield return StepStatus.After("find_vma");
            yield break;
        }
        var file = v.VmFile!;
        var h = file.Hstate;
        foreach (var s in v.VmaLock!.DownRead(ctx)) yield return s;
        KernelLock? mutex = null;
        try
        {
            var (index, subpage) = HugetlbHgm.FileOffset(v, addr, Arch.PageShift);
            foreach (var s in SpinLock(ctx, file.FaultMutex(index))) yield return s;
            mutex = file.FaultMutex(index);
            if (Walk.FindLeaf(hm.Mm, h, addr) is not null) { ret.Value = Errno.Ok; Note("hgm.fault_spurious"); yield break; }
            if (index >= file.ISize) { Note("hgm.fault_sigbus"); yield break; }
            bool fresh = false;
            if (!file.PageCache.TryGetValue(index, out var f))
            {
                var got = new Ret<HugetlbFolio?>();
                foreach (var s in K.Hugetlb.AllocHugetlbFolio(ctx, h, got, null)) yield return s;
                if (got.Value is null) { ret.Value = Errno.ENOMEM; Note("hgm.fault_oom"); yield break; }
                f = got.Value;
                f.UserReference = false; // the mapping, not a `hugetlb_free` handle, holds this reference
                // hugetlb_add_to_page_cache: the page cache takes its own reference.
                Hgm.CacheAdd(file, index, f);
                Hgm.FolioGet(ctx, f);
                fresh = true;
                yield return StepStatus.After("hugetlb_add_to_page_cache");
            }
            else
            {
                // filemap_lock_hugetlb_folio: the lookup takes a reference, which the mapping
                // keeps (migration's reference freeze fails while a fault holds it).
                Hgm.FolioGet(ctx, f);
                if ((v.VmFlags & VmaFlags.VmUffdMinor) != 0)
                {
                    // handle_userfault(vmf, VM_UFFD_MINOR), after the folio is put
                    foreach (var s in Hgm.PutAll(ctx, [f])) yield return s;
                    ret.Value = Errno.EAGAIN;
                    Note(v.HgmEnabled ? "hgm.uffd_minor_fault_page_size" : "hgm.uffd_minor_fault_huge_size");
                    yield break;
                }
            }
            var hpte = Walk.HugetlbHgmWalk(hm.Mm, h, addr, Arch.PageShift, alloc: false, out _)
                ?? Walk.HugetlbHgmWalk(hm.Mm, h, addr, Hgm.NaturalShift(h), alloc: true, out ret.Value);
            if (hpte is not { None: true } p)
            {
                if (fresh) Hgm.CacheRemove(file, index);
                foreach (var s in Hgm.PutAll(ctx, fresh ? [f, f] : [f])) yield return s;
                if (ret.Value == Errno.Ok) ret.Value = Errno.ENOMEM;
                yield break;
            }
            foreach (var s in SpinLock(ctx, p.Ptl)) yield return s;
            ulong va = hm.Mm.Pgd.EntryVa(p.Table, p.Index);
            long first = HugetlbHgm.FileOffset(v, va, Arch.PageShift).Subpage;
            long nr = (long)(p.Size / PageSize);
            hm.Mm.Pgd.Set(p.Table, p.Index, Pte.MkLeaf(f.HeadPfn + first, (v.VmFlags & VmaFlags.VmWrite) != 0));
            Hgm.HugetlbAddFileRmap(ctx, f, first, nr);
            // (A fresh folio's allocation reference, like a cached one's lookup reference, becomes the mapping's.)
            SpinUnlock(ctx, p.Ptl);
            // hugetlb_no_page's last act for a folio it added: folio_set_hugetlb_migratable.
            if (fresh) ModifyPageFlags(ctx, Hgm.Page(f, 0), PageFlags.HugetlbMigratable, PageFlags.None, "folio_set_hugetlb_migratable");
            ret.Value = Errno.Ok;
            Note(nr == f.NrPages ? "hgm.fault_natural" : "hgm.fault_hgm");
            yield return StepStatus.After("set_huge_pte_at");
        }
        finally
        {
            if (mutex is not null) SpinUnlock(ctx, mutex);
            v.VmaLock!.UpRead(ctx);
        }
    }

    /// <summary>A user load or store at <paramref name="addr"/>: through the TLB or a hardware
    /// walk of the mm's page table; a miss (or a store to a read-only entry) is a page fault.</summary>
    public IEnumerable<StepStatus> UserAccess(ExecContext ctx, HugetlbMm hm, ulong addr, bool write, Ret<Errno> ret)
    {
        var mm = hm.Mm;
        bool cached = K.Cpus[ctx.CpuId].Tlb.TryLookup(addr, out var te, mm.Asid);
        var walk = mm.Pgd.Walk(addr);
        if ((cached && (te.Writable || !write)) || (!cached && walk.IsLeaf && (walk.Entry.Writable || !write)))
        {
            ret.Value = Translate(ctx, mm, addr, write) ? Errno.Ok : Errno.EFAULT;
            yield return StepStatus.After(write ? "user_store" : "user_load");
            yield break;
        }
        foreach (var s in HugetlbFault(ctx, hm, addr, write, ret)) yield return s;
    }

    private bool Translate(ExecContext ctx, MmStruct mm, ulong addr, bool write) => K.Mmu.Translate(ctx, mm, addr, write, out _, out _);



    /// <summary>UFFDIO_CONTINUE of [start, start + len) (mfill_atomic_hugetlb with
    /// MFILL_ATOMIC_CONTINUE): maps pages already in the page cache, each piece by the largest
    /// entry that fits. ENOENT: no VMA, a VMA not registered in minor mode, or a range past the
    /// VMA's end; EINVAL: not aligned to PAGE_SIZE (HGM VMA) or to the huge page size; EFAULT:
    /// the page is not in the page cache; EEXIST: already mapped; ENOMEM.</summary>
    [Kernel("mm/userfaultfd.c", "mfill_atomic_hugetlb")]
    public IEnumerable<StepStatus> MfillAtomicHugetlb(ExecContext ctx, HugetlbMm hm, ulong start, ulong len, Ret<Errno> ret) =>
        HugetlbHgm.WithMmapLock(ctx, hm, write: false, MfillAtomicHugetlbLocked(ctx, hm, start, len, ret));

    private IEnumerable<StepStatus> MfillAtomicHugetlbLocked(ExecContext ctx, HugetlbMm hm, ulong start, ulong len, Ret<Errno> ret)
    {
        var v = hm.Exited ? null : hm.VmaLookup(start);
        ret.Value = Errno.ENOENT;
        if (v is null || start + len < start || start + len > v.VmEnd || (v.VmFlags & VmaFlags.VmUffdMinor) == 0)
        {
            yield return StepStatus.After("find_dst_vma");
            yield break;
        }
        ulong gran = v.HgmEnabled ? PageSize : (ulong)v.VmFile!.Hstate.Size;
        if (len == 0 || start % gran != 0 || len % gran != 0) { ret.Value = Errno.EINVAL; yield return StepStatus.After("find_dst_vma"); yield break; }
        var file = v.VmFile!;
        foreach (var s in v.VmaLock!.DownRead(ctx)) yield return s;
        KernelLock? held = null;
        try
        {
            ulong end = start + len;
            ret.Value = Errno.Ok;
            for (ulong addr = start; addr < end;)
            {
                var (index, subpage) = HugetlbHgm.FileOffset(v, addr, Arch.PageShift);
                var mutex = file.FaultMutex(index);
                foreach (var s in SpinLock(ctx, mutex)) yield return s;
                held = mutex;
                if (!file.PageCache.TryGetValue(index, out var f)) { ret.Value = Errno.EFAULT; yield break; }
                // filemap_lock_hugetlb_folio: the lookup's reference becomes the mapping's.
                Hgm.FolioGet(ctx, f);
                // A piece never crosses a huge page: clip the range at the end of this one.
                ulong pageEnd = Math.Min(end, addr - (ulong)subpage * PageSize + (ulong)file.Hstate.Size);
                var hpte = Walk.HugetlbAllocLargestPte(hm.Mm, v, addr, pageEnd, out var err);
                if (hpte is not { } p || err != Errno.Ok)
                {
                    foreach (var s in Hgm.PutAll(ctx, [f])) yield return s;
                    ret.Value = err;
                    yield break;
                }
                foreach (var s in SpinLock(ctx, p.Ptl)) yield return s;
                long nr = (long)(p.Size / PageSize);
                long mapped = Bad.ContinueMapsNextSubpage ? subpage + 1 : subpage;
                hm.Mm.Pgd.Set(p.Table, p.Index, Pte.MkLeaf(f.HeadPfn + mapped, (v.VmFlags & VmaFlags.VmWrite) != 0));
                if (!Bad.ContinueSkipsMapcount) Hgm.HugetlbAddFileRmap(ctx, f, subpage, nr);
                SpinUnlock(ctx, p.Ptl);
                SpinUnlock(ctx, mutex);
                held = null;
                Note(nr == f.NrPages ? "hgm.continue_natural" : "hgm.continue_hgm");
                yield return StepStatus.After("hugetlb_mfill_atomic_pte");
                addr += p.Size;
            }
        }
        finally
        {
            if (held is not null) SpinUnlock(ctx, held);
            v.VmaLock!.UpRead(ctx);
        }
    }
}
