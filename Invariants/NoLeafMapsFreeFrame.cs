using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// No kernel leaf outside the linear map maps a frame that is free or absent, or a frame of
/// another mechanism: vmemmap leaves map vmemmap frames, vmalloc leaves map vmalloc frames. The
/// linear map is exempt because it maps all memory by design. A leaf to a free frame is a
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
            if (!k.Mem.AllOwnedBy(pfn, count, expected))
                return CheckRegion(k, start, end, expected, region)
                    ?? throw new Engine.Mm.ModelBugException($"{Name}: frames {pfn:x}+{count} of {region} leaves are not all {expected}, but no leaf maps one");
        return null;
    }

    private Violation? CheckRegion(IKernelView k, ulong start, ulong end, FrameOwner expected, string region)
    {
        foreach (var w in k.SwapperPgDir.Leaves(start, end))
        {
            long n = (long)(k.SwapperPgDir.EntrySize(w.Table) >> k.Arch.PageShift);
            if (k.Mem.AllOwnedBy(w.Entry.Pfn, n, expected)) continue;
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
