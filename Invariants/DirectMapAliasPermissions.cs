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
///
/// Checked incrementally (<see cref="Check"/>); <see cref="CheckFullScan"/> is the oracle. The
/// page-table parts are judged where the step could have changed their verdict: the second rule
/// on the direct-map addresses of the step's init_mm entry stores and of the frames whose owner
/// changed; the first on the vmalloc leaves the step stored or whose area changed, and on the
/// vmalloc leaves mapping frames whose direct-map entries the step stored (found through the
/// vmalloc range's leaf-frame index). The TLB parts are judged whole: a TLB holds a bounded
/// number of entries, whatever the memory size; the vmalloc leaves behind a writable direct-map
/// entry are found through the same index. On a violation the full scan gives the evidence.
/// </summary>
public sealed class DirectMapAliasPermissions : IInvariant
{
    public string Name => nameof(DirectMapAliasPermissions);
    public string Claim => "a read-only vmalloc page is read-only in the direct map too (x86), and no non-default direct-map entry or read-only direct-map TLB entry covers a frame vmalloc no longer owns";
    public string Source => "arch/x86/mm/pat/set_memory.c cpa_process_alias; mm/vmalloc.c vm_reset_perms, vfree";

    public Violation? Check(IKernelView k)
    {
        var pt = k.SwapperPgDir;
        if (k.Step == 0 || !pt.IsCanonicalTree) return CheckFullScan(k);
        int shift = k.Arch.PageShift;
        ulong lin = k.Arch.PfnToVirt(0), linEnd = k.Arch.PfnToVirt(k.Machine.MemoryBytes >> shift);
        string init = pt.Name;
        var linStores = new List<(ulong Start, ulong End)>();
        foreach (var e in k.StepEvents)
            if (e.Kind == KernelEventKind.EntryStore && e.Mm == init) VmallocStepRanges.AddClipped(linStores, e.Start, e.End, lin, linEnd);
        linStores = VmallocStepRanges.Merge(linStores);
        if (k.Arch.Arch == Arch.X86_64 && !LiveAliasesHold(k, lin, linEnd, linStores)) return Evidence(k);

        var dirty = new List<(ulong Start, ulong End)>(linStores);
        foreach (var r in k.Mem.Changed) VmallocStepRanges.AddClipped(dirty, k.Arch.PfnToVirt(r.Start), k.Arch.PfnToVirt(r.End), lin, linEnd);
        foreach (var (s, e) in VmallocStepRanges.Merge(dirty))
        {
            ulong expect = s;
            foreach (var w in pt.Leaves(s, e))
            {
                ulong va = pt.EntryVa(w.Table, w.Index), size = pt.EntrySize(w.Table);
                if (va > expect && Hole(k, expect, va) is not null) return Evidence(k);
                expect = Math.Max(expect, va + size);
                if (w.Entry.Writable && !w.Entry.Exec) continue;
                long n = (long)(size >> shift);
                if (k.Mem.CountOwned(w.Entry.Pfn, n, FrameOwner.Vmalloc) != n) return Evidence(k);
            }
            if (expect < e && Hole(k, expect, e) is not null) return Evidence(k);
        }
        return ReadOnlyTlbEntriesHold(k, lin, linEnd) ? null : Evidence(k);
    }

    /// <summary>Rule 1 where the step could have changed it: the vmalloc leaves it stored or
    /// whose area changed, and those mapping a frame whose direct-map entry it stored; then every
    /// writable direct-map TLB entry (a bounded set).</summary>
    private static bool LiveAliasesHold(IKernelView k, ulong lin, ulong linEnd, List<(ulong Start, ulong End)> linStores)
    {
        var pt = k.SwapperPgDir;
        var areas = k.Vmalloc.LiveAreas;
        int shift = k.Arch.PageShift;
        foreach (var (s, e) in VmallocStepRanges.Touched(k, (ulong)k.Arch.PageSize))
            foreach (var w in pt.Leaves(s, e))
                if (!AliasHolds(k, areas, w, lin, linEnd)) return false;
        var index = pt.LeafFrames(k.Arch.VmallocStart, k.Arch.VmallocEnd);
        var meeting = new List<PtWalk>();
        if (linStores.Count > 0)
        {
            var frames = new List<(long Pfn, long Count)>(linStores.Count);
            foreach (var (s, e) in linStores) frames.Add(((long)((s - lin) >> shift), (long)((e - s) >> shift)));
            index.LeavesMapping(LeafFrameIndex.Coalesce(frames), meeting);
            foreach (var w in meeting)
                if (!AliasHolds(k, areas, w, lin, linEnd)) return false;
        }
        var one = new List<(long Pfn, long Count)>(1);
        foreach (var cpu in k.Cpus)
            foreach (var e in cpu.Tlb.Entries)
            {
                if (e.Asid != TlbEntry.Global || !e.Writable || e.Va < lin || e.Va >= linEnd) continue;
                one.Clear();
                one.Add((e.Pfn, (long)(e.Size >> shift)));
                meeting.Clear();
                index.LeavesMapping(one, meeting);
                foreach (var w in meeting)
                    if (!w.Entry.Writable && !FailedArea(areas, pt.EntryVa(w.Table, w.Index)) && InLinearMap(k, w, lin, linEnd)) return false;
            }
        return true;
    }

    /// <summary>Whether the direct-map alias of vmalloc leaf <paramref name="w"/> obeys rule 1:
    /// writable leaves, leaves of an area whose set_memory_* failed and aliases outside the
    /// direct map are not judged; otherwise every direct-map leaf over the alias is read-only.</summary>
    private static bool AliasHolds(IKernelView k, IReadOnlyList<IVmAreaView> areas, PtWalk w, ulong lin, ulong linEnd)
    {
        if (w.Entry.Writable) return true;
        var pt = k.SwapperPgDir;
        ulong va = pt.EntryVa(w.Table, w.Index), size = pt.EntrySize(w.Table);
        if (FailedArea(areas, va) || !InLinearMap(k, w, lin, linEnd)) return true;
        ulong alias = k.Arch.PfnToVirt(w.Entry.Pfn);
        foreach (var d in pt.Leaves(alias, alias + size))
            if (d.Entry.Writable) return false;
        return true;
    }

    private static bool InLinearMap(IKernelView k, PtWalk w, ulong lin, ulong linEnd)
    {
        ulong alias = k.Arch.PfnToVirt(w.Entry.Pfn);
        return alias >= lin && alias < linEnd;
    }

    /// <summary>Rule 2's TLB part, whole: every read-only direct-map TLB entry covers vmalloc frames only.</summary>
    private static bool ReadOnlyTlbEntriesHold(IKernelView k, ulong lin, ulong linEnd)
    {
        int shift = k.Arch.PageShift;
        foreach (var cpu in k.Cpus)
            foreach (var e in cpu.Tlb.Entries)
            {
                if (e.Asid != TlbEntry.Global || e.Writable || e.Va < lin || e.Va >= linEnd) continue;
                long n = (long)(e.Size >> shift);
                if (k.Mem.CountOwned(e.Pfn, n, FrameOwner.Vmalloc) != n) return false;
            }
        return true;
    }

    private Violation Evidence(IKernelView k) =>
        CheckFullScan(k) ?? throw new Engine.Mm.ModelBugException($"{Name}: the step's entries break the rule, but a full scan finds nothing");

    /// <summary>The full-scan oracle: the whole direct map, every read-only vmalloc leaf, every TLB entry.</summary>
    public Violation? CheckFullScan(IKernelView k)
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
