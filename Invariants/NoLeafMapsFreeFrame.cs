using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// No kernel leaf outside the linear map maps a frame that is free or absent, or a frame of
/// another mechanism: vmemmap leaves map vmemmap frames, vmalloc leaves map vmalloc frames. The
/// linear map is exempt because it maps all memory by design; a leaf of a live ioremap area maps
/// device memory outside RAM (no frame the allocator owns), exactly the area's own physical
/// range, and is exempt for that range only. A leaf to a free frame is a
/// use-after-free waiting for its first access. Source: the clear →
/// flush → free order of mm/vmalloc.c vfree and arm64 unmap_hotplug_range.
/// </summary>
public sealed class NoLeafMapsFreeFrame : IInvariant
{
    public string Name => nameof(NoLeafMapsFreeFrame);
    public string Claim => "every vmemmap and vmalloc leaf maps live frames owned by that region's mechanism";
    public string Source => "mm/vmalloc.c vfree; arch/arm64/mm/mmu.c unmap_hotplug_range";

    /// <summary>Checks the distinct frames of each region's leaves, as runs from the page table's
    /// incremental <see cref="PageTable.LeafFrames"/> index; only when a run has a frame of the
    /// wrong owner does it walk the region's leaves to name the first offending leaf, so the
    /// verdict and the evidence are those of <see cref="CheckFullScan"/>.</summary>
    public Violation? Check(IKernelView k) =>
        CheckRegionRuns(k, k.Arch.VmemmapStart, k.Arch.VmemmapEnd, FrameOwner.Vmemmap, "vmemmap")
        ?? CheckRegionRuns(k, k.Arch.VmallocStart, k.Arch.VmallocEnd, FrameOwner.Vmalloc, "vmalloc");

    /// <summary>The full-scan oracle: every leaf of both regions, frame by frame.</summary>
    public Violation? CheckFullScan(Kernel k) =>
        CheckRegion(k, k.Arch.VmemmapStart, k.Arch.VmemmapEnd, FrameOwner.Vmemmap, "vmemmap")
        ?? CheckRegion(k, k.Arch.VmallocStart, k.Arch.VmallocEnd, FrameOwner.Vmalloc, "vmalloc");

    private Violation? CheckRegionRuns(IKernelView k, ulong start, ulong end, FrameOwner expected, string region)
    {
        foreach (var (pfn, count) in k.SwapperPgDir.LeafFrames(start, end).Runs)
            if (!k.Mem.AllOwnedBy(pfn, count, expected) && !(pfn >= k.Mem.MaxPfn && region == "vmalloc" && IoremapLeavesOnly(k, pfn, count)))
                return CheckRegion(k, start, end, expected, region)
                    ?? throw new Engine.Mm.ModelBugException($"{Name}: frames {pfn:x}+{count} of {region} leaves are not all {expected}, but no leaf maps one");
        return null;
    }

    /// <summary>Whether the leaf at <paramref name="va"/> lies in a live ioremap area and maps
    /// that area's own frames there, all outside RAM.</summary>
    private static bool OwnIoremapFrames(IKernelView k, ulong va, long pfn, long n)
    {
        if (pfn < k.Mem.MaxPfn) return false;
        foreach (var a in k.Vmalloc.LiveAreas)
            if (a.IoremapPfn is { } phys && va >= a.Addr && va - a.Addr < a.Size)
                return pfn == phys + (long)((va - a.Addr) >> k.Arch.PageShift) && va + ((ulong)n << k.Arch.PageShift) <= a.Addr + a.Size;
        return false;
    }

    /// <summary>Whether frames [pfn, pfn + count), outside RAM, lie within live ioremap areas'
    /// physical ranges (the leaves themselves are then checked one by one only on a mismatch).</summary>
    private static bool IoremapLeavesOnly(IKernelView k, long pfn, long count)
    {
        long p = pfn, end = pfn + count;
        while (p < end)
        {
            var a = k.Vmalloc.LiveAreas.FirstOrDefault(x => x.IoremapPfn is { } phys && p >= phys && p < phys + (long)(x.Size >> k.Arch.PageShift));
            if (a?.IoremapPfn is not { } start) return false;
            p = start + (long)(a.Size >> k.Arch.PageShift);
        }
        return true;
    }

    private Violation? CheckRegion(IKernelView k, ulong start, ulong end, FrameOwner expected, string region)
    {
        foreach (var w in k.SwapperPgDir.Leaves(start, end))
        {
            long n = (long)(k.SwapperPgDir.EntrySize(w.Table) >> k.Arch.PageShift);
            if (k.Mem.AllOwnedBy(w.Entry.Pfn, n, expected)) continue;
            if (region == "vmalloc" && OwnIoremapFrames(k, k.SwapperPgDir.EntryVa(w.Table, w.Index), w.Entry.Pfn, n)) continue;
            for (long p = w.Entry.Pfn; p < w.Entry.Pfn + n; p++)
            {
                var owner = k.Mem.OwnerOf(p);
                if (owner != expected)
                    return new(Name, $"{region} {w.Level} leaf at {k.SwapperPgDir.EntryVa(w.Table, w.Index):x} maps frame {p:x} owned {owner}");
            }
        }
        return null;
    }
}
