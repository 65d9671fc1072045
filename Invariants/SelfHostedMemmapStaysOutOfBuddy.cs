using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// Self-hosted memmap never reaches the page allocator: the pages of a memory block that hold the
/// block's own struct pages (memmap_on_memory's vmem_altmap over the block's first pages) are
/// handed out by altmap_alloc_block_buf and returned by vmem_altmap_free, and as long as the block
/// is present none of them is ever freed to the buddy or lies on its free lists, whatever frees it
/// (the hot-remove teardown, HVO's freeing of tail vmemmap pages, anything else). A page of it in
/// the buddy would be handed out again while it still describes, or once described, memory that is
/// about to go away with the block. Sources: mm/sparse-vmemmap.c altmap_alloc_block_buf,
/// mm/memremap.c vmem_altmap_free, arch/x86/mm/init_64.c free_hugepage_table,
/// arch/arm64/mm/mmu.c free_hotplug_page_range, mm/memory_hotplug.c mhp_init_memmap_on_memory,
/// mm/hugetlb_vmemmap.c (PageVmemmapSelfHosted).
/// </summary>
public sealed class SelfHostedMemmapStaysOutOfBuddy : IInvariant
{
    public string Name => nameof(SelfHostedMemmapStaysOutOfBuddy);
    public string Claim => "the pages of a present memory block that hold its own memmap (memmap_on_memory's altmap) are never freed to the buddy nor on its free lists";
    public string Source => "mm/sparse-vmemmap.c altmap_alloc_block_buf, mm/memremap.c vmem_altmap_free, free_hugepage_table, free_hotplug_page_range, mm/memory_hotplug.c";

    public Violation? Check(IKernelView k)
    {
        long pps = k.Arch.PagesPerSection;
        for (long s = k.Hotplug.FirstHotplugSection; s < k.Mem.NrSections; s++)
        {
            long alt = k.Hotplug.Section(s).AltmapPages;
            if (alt == 0 || k.Mem.SectionStateOf(s) is SectionState.Absent or SectionState.Removed) continue;
            long basePfn = s * pps;
            foreach (var f in k.StepFrees)
                if (f.Pfn < basePfn + alt && basePfn < f.Pfn + f.Count)
                    return new(Name, $"{f}: section {s}'s memmap lives in its pages {basePfn:x}+{alt}");
            long free = k.Mem.CountOwned(basePfn, alt, FrameOwner.Free);
            if (free > 0) return new(Name, $"{free} pages of section {s}'s self-hosted memmap {basePfn:x}+{alt} are in the buddy");
        }
        return null;
    }
}
