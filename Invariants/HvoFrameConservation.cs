using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// HVO frees exactly what it claims. Whenever no task is running, the number of vmemmap frames
/// equals what vmemmap population gave the present sections (PAGES_PER_SECTION × 64 / PAGE_SIZE
/// each) minus V − R for every folio whose head says it is optimized, and nothing else: each
/// optimize freed exactly V − R frames net (V − R + 1 freed and one head copy allocated, or V − R
/// freed when the copy could not be allocated), each restore allocated exactly V − R back, and no
/// frame stayed behind after a rollback, a failed restore or the surplus path. It is computed from
/// the kernel's own records — section states, the hstates' folios and their heads' optimized flag
/// — not from the in-flight count the HVO code keeps. Source: Documentation/mm/vmemmap_dedup.rst;
/// mm/hugetlb_vmemmap.h hugetlb_vmemmap_optimizable_size; mm/hugetlb_vmemmap.c vmemmap_remap_free,
/// alloc_vmemmap_page_list (all or nothing)
/// </summary>
public sealed class HvoFrameConservation : IInvariant
{
    public string Name => nameof(HvoFrameConservation);
    public string Claim => "with no task running, vmemmap frames = the sections' memmap frames − (V − R) per optimized folio";
    public string Source => "vmemmap_dedup.rst; mm/hugetlb_vmemmap.h hugetlb_vmemmap_optimizable_size; mm/hugetlb_vmemmap.c";

    /// <summary>Counts the present sections by state (PhysMem keeps one count per state where a
    /// state is set) and visits only the ZONE_DEVICE ones, so the cost does not grow with the
    /// machine; <see cref="CheckFullScan"/> visits every section and gives the same verdict.</summary>
    public Violation? Check(IKernelView k)
    {
        if (k.LiveTasks.Count > 0) return null;
        long framesPerSection = k.Arch.SectionVmemmapBytes >> k.Arch.PageShift;
        long sections = k.Mem.SectionsIn(SectionState.Online) + k.Mem.SectionsIn(SectionState.Offline) + k.Mem.SectionsIn(SectionState.Present);
        long expected = 0, device = 0;
        foreach (long s in k.Hotplug.DeviceSections)
            if (IsPresent(k.Mem.SectionStateOf(s)))
            {
                expected += DeviceSectionFrames(k, s);
                device++;
            }
        expected += (sections - device) * framesPerSection;
        return Judge(k, sections, framesPerSection, expected);
    }

    /// <summary>The oracle: every section visited.</summary>
    public Violation? CheckFullScan(IKernelView k)
    {
        if (k.LiveTasks.Count > 0) return null;
        long framesPerSection = k.Arch.SectionVmemmapBytes >> k.Arch.PageShift;
        long sections = 0, expected = 0;
        for (long s = 0; s < k.Mem.NrSections; s++)
            if (IsPresent(k.Mem.SectionStateOf(s)))
            {
                sections++;
                expected += k.Hotplug.Section(s).Device ? DeviceSectionFrames(k, s) : framesPerSection;
            }
        return Judge(k, sections, framesPerSection, expected);
    }

    private static bool IsPresent(SectionState s) => s is SectionState.Online or SectionState.Offline or SectionState.Present;

    /// <summary>Takes V − R off <paramref name="expected"/> (the sections' memmap frames) for
    /// every folio whose head says it is optimized, and compares with the vmemmap frames.</summary>
    private Violation? Judge(IKernelView k, long sections, long framesPerSection, long expected)
    {
        var v = k.PeekView;
        int r = k.Hugetlb.ReservePages;
        long optimized = 0;
        foreach (var h in k.Hugetlb.Hstates)
            foreach (var f in h.Folios)
                if (h.VmemmapPages > r && k.PageFlags.FolioTestHugetlbVmemmapOptimized(v, k.Hugetlb.FolioPage(f)))
                {
                    expected -= h.VmemmapPages - r;
                    optimized++;
                }
        long actual = k.Mem.Count(FrameOwner.Vmemmap);
        if (actual == expected) return null;
        return new(Name, $"{actual} vmemmap frames, expected {expected} ({sections} sections × {framesPerSection} − (V − {r}) for each of {optimized} optimized folios): {(actual > expected ? "leaked" : "freed")} {Math.Abs(actual - expected)} more");
    }

    /// <summary>A ZONE_DEVICE section (memremap_pages, Engine/Hotplug) got the memmap of its
    /// present sub-sections only: their vmemmap pages, or the section's whole PMD block where
    /// population mapped one.</summary>
    private static long DeviceSectionFrames(IKernelView k, long s)
    {
        ulong start = k.Arch.PfnToPage(s * k.Arch.PagesPerSection);
        var w = k.SwapperPgDir.Walk(start);
        if (w.IsLeaf && w.Level > Engine.Config.PtLevel.Pte) return k.Arch.SectionVmemmapBytes >> k.Arch.PageShift;
        long perSub = k.Hotplug.SubsectionPages * Engine.Config.ArchConfig.StructPageSize >> k.Arch.PageShift;
        return System.Numerics.BitOperations.PopCount(k.Hotplug.Section(s).SubsectionMap) * perSub;
    }
}
