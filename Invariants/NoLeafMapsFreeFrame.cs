using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// No kernel leaf outside the linear map maps a frame that is free or absent, or a frame of
/// another mechanism: vmemmap leaves map vmemmap frames, vmalloc leaves map vmalloc frames. The
/// linear map is exempt because it maps all memory by design. A leaf to a free frame is a
/// use-after-free waiting for its first access. Source: KERNEL-MODEL.md INV-2; the clear →
/// flush → free order of mm/vmalloc.c vfree and arm64 unmap_hotplug_range.
/// </summary>
public sealed class NoLeafMapsFreeFrame : IInvariant
{
    public string Name => nameof(NoLeafMapsFreeFrame);
    public string Claim => "every vmemmap and vmalloc leaf maps live frames owned by that region's mechanism";
    public string Source => "KERNEL-MODEL.md INV-2; mm/vmalloc.c vfree; arch/arm64/mm/mmu.c unmap_hotplug_range";

    public Violation? Check(Kernel k) =>
        CheckRegion(k, k.Arch.VmemmapStart, k.Arch.VmemmapEnd, FrameOwner.Vmemmap, "vmemmap")
        ?? CheckRegion(k, k.Arch.VmallocStart, k.Arch.VmallocEnd, FrameOwner.Vmalloc, "vmalloc");

    private Violation? CheckRegion(Kernel k, ulong start, ulong end, FrameOwner expected, string region)
    {
        foreach (var w in k.InitMm.Leaves(start, end))
        {
            long n = (long)(k.InitMm.EntrySize(w.Table) >> k.Arch.PageShift);
            if (k.Mem.AllOwnedBy(w.Entry.Pfn, n, expected)) continue;
            for (long p = w.Entry.Pfn; p < w.Entry.Pfn + n; p++)
            {
                var owner = k.Mem.OwnerOf(p);
                if (owner != expected)
                    return new(Name, $"{region} {w.Level} leaf at {k.InitMm.EntryVa(w.Table, w.Index):x} maps frame {p:x} owned {owner}");
            }
        }
        return null;
    }
}
