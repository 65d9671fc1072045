using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Invariants;

/// <summary>
/// A vmalloc page's direct-map alias is never more permissive than the kernel allows while the
/// area lives, and is back to the default once the page is freed. While the area lives (x86,
/// where cpa_process_alias mirrors every set_memory_* on a vmalloc address onto the direct map):
/// a page its vmalloc mapping makes read-only is read-only or not present in the direct map, in
/// the page table and in every CPU's TLB, unless a set_memory_* on the area returned an error
/// (cpa changes the vmalloc leaf before the alias split that failed, and tells the caller). After it is freed (every architecture): a direct-map
/// leaf that is not the default (present, writable, not executable), a hole in the direct map of
/// boot memory, or a read-only direct-map TLB entry on any CPU, covers only frames vmalloc still
/// owns. The second rule is what vm_reset_perms is for: invalidate, flush a range covering every
/// backing page at its page order, reset, only then free; and since that reset runs on a free path
/// whose results nobody checks, it must not depend on a split that can fail (Rick Edgecombe in
/// the v8 thread of "mm/vmalloc: Hugepage vmalloc mappings"). On arm64 the model's linear map is
/// block-mapped, so can_set_direct_map() is false, the kernel leaves the alias alone and only the
/// second rule applies. Source: arch/x86/mm/pat/set_memory.c cpa_process_alias,
/// set_direct_map_invalid_noflush/default_noflush; mm/vmalloc.c vm_reset_perms, vfree.
/// </summary>
public sealed class DirectMapAliasPermissions : IInvariant
{
    public string Name => nameof(DirectMapAliasPermissions);
    public string Claim => "a read-only vmalloc page is read-only in the direct map too (x86), and no non-default direct-map entry or read-only direct-map TLB entry covers a frame vmalloc no longer owns";
    public string Source => "arch/x86/mm/pat/set_memory.c cpa_process_alias; mm/vmalloc.c vm_reset_perms, vfree";

    public Violation? Check(IKernelView k)
    {
        var pt = k.SwapperPgDir;
        int shift = k.Arch.PageShift;
        ulong lin = k.Arch.PfnToVirt(0), linEnd = k.Arch.PfnToVirt(k.Machine.MemoryBytes >> shift);
        if (k.Arch.Arch == Arch.X86_64 && CheckLiveAliases(k, lin, linEnd) is { } live) return live;

        ulong expect = lin;
        foreach (var w in pt.Leaves(lin, linEnd))
        {
            ulong va = pt.EntryVa(w.Table, w.Index), size = pt.EntrySize(w.Table);
            if (va > expect && Hole(k, expect, va) is { } hole) return hole;
            expect = va + size;
            if (w.Entry.Writable && !w.Entry.Exec) continue;
            long n = (long)(size >> shift);
            if (k.Mem.CountOwned(w.Entry.Pfn, n, FrameOwner.Vmalloc) != n)
                return new(Name, $"direct-map {w.Level} leaf at {va:x} is {w.Entry} but maps {Foreign(k, w.Entry.Pfn, n)}: a freed page's alias was not reset to default");
        }
        if (expect < linEnd && Hole(k, expect, linEnd) is { } tail) return tail;

        foreach (var cpu in k.Cpus)
            foreach (var e in cpu.Tlb.Entries)
            {
                if (e.Asid != TlbEntry.Global || e.Writable || e.Va < lin || e.Va >= linEnd) continue;
                long n = (long)(e.Size >> shift);
                if (k.Mem.CountOwned(e.Pfn, n, FrameOwner.Vmalloc) != n)
                    return new(Name, $"cpu{cpu.Id} TLB holds the read-only direct-map entry {e}, but it covers {Foreign(k, e.Pfn, n)}: the flush before the free did not cover it");
            }
        return null;
    }

    /// <summary>Rule 1: the direct-map alias of every read-only page of a live area is read-only or absent.</summary>
    private Violation? CheckLiveAliases(IKernelView k, ulong lin, ulong linEnd)
    {
        var pt = k.SwapperPgDir;
        var readOnly = new List<(ulong Start, ulong End, ulong VmallocVa)>();
        var areas = k.Vmalloc.LiveAreas;
        foreach (var w in pt.Leaves(k.Arch.VmallocStart, k.Arch.VmallocEnd))
        {
            if (w.Entry.Writable) continue;
            ulong va = pt.EntryVa(w.Table, w.Index), size = pt.EntrySize(w.Table);
            if (FailedArea(areas, va)) continue;
            ulong alias = k.Arch.PfnToVirt(w.Entry.Pfn);
            if (alias < lin || alias >= linEnd) continue;
            foreach (var d in pt.Leaves(alias, alias + size))
                if (d.Entry.Writable)
                    return new(Name, $"vmalloc {w.Level} leaf at {va:x} is {w.Entry}, but the direct-map alias of pfn {d.Entry.Pfn:x} at {pt.EntryVa(d.Table, d.Index):x} is {d.Entry}: set_memory_ro was not mirrored");
            readOnly.Add((alias, alias + size, va));
        }
        if (readOnly.Count == 0) return null;
        readOnly.Sort((a, b) => a.Start.CompareTo(b.Start));
        foreach (var cpu in k.Cpus)
            foreach (var e in cpu.Tlb.Entries)
            {
                if (e.Asid != TlbEntry.Global || !e.Writable || e.Va < lin || e.Va >= linEnd) continue;
                // The ranges are disjoint (distinct frames) and sorted: only those from the one
                // starting last before e.Va up to the one starting last before its end can overlap.
                int lo = Math.Max(0, LastStartingBefore(readOnly, e.Va));
                for (int i = LastStartingBefore(readOnly, e.Va + e.Size); i >= lo; i--)
                    if (readOnly[i].End > e.Va && readOnly[i].Start < e.Va + e.Size)
                        return new(Name, $"cpu{cpu.Id} TLB holds the writable direct-map entry {e} over the alias of the read-only vmalloc page at {readOnly[i].VmallocVa:x}");
            }
        return null;
    }

    /// <summary>Whether <paramref name="va"/> lies in a live area a set_memory_* failed on (the
    /// caller was told, with -ENOMEM, that the alias may not follow).</summary>
    private static bool FailedArea(IReadOnlyList<IVmAreaView> areas, ulong va)
    {
        foreach (var a in areas)
            if (va >= a.Addr && va - a.Addr < a.Size) return a.SetMemoryFailed;
        return false;
    }

    /// <summary>The index of the last range starting before <paramref name="va"/>, or -1.</summary>
    private static int LastStartingBefore(List<(ulong Start, ulong End, ulong VmallocVa)> ranges, ulong va)
    {
        int lo = 0, hi = ranges.Count - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) / 2;
            if (ranges[mid].Start < va) { found = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        return found;
    }

    private Violation? Hole(IKernelView k, ulong start, ulong end)
    {
        int shift = k.Arch.PageShift;
        long pfn = (long)((start - k.Arch.PfnToVirt(0)) >> shift), n = (long)((end - start) >> shift);
        long owned = k.Mem.CountOwned(pfn, n, FrameOwner.Vmalloc) + k.Mem.CountOwned(pfn, n, FrameOwner.Absent);
        return owned == n ? null
            : new(Name, $"the direct map [{start:x}, {end:x}) is not present, but it covers {Foreign(k, pfn, n)}: a freed page's alias was left invalid");
    }

    private static string Foreign(IKernelView k, long pfn, long n)
    {
        for (long p = pfn; p < pfn + n; p++)
        {
            var owner = k.Mem.OwnerOf(p);
            if (owner != FrameOwner.Vmalloc) return $"pfn {p:x}, which is {owner}";
        }
        return "only vmalloc frames";
    }
}
