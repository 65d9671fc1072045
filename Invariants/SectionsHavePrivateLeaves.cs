using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// No vmemmap or linear-map leaf covers memory of two hot-plug units whose lifetimes differ: a
/// leaf may describe (vmemmap) or map (linear map) memory of one memory block, of one
/// memremap_pages call (ZONE_DEVICE sub-sections), or of boot memory only. Otherwise removing one
/// unit clears and frees a leaf the other still uses (arm64's unmap_hotplug_pmd_range clears a
/// whole pmd_sect block), or the unit cannot be removed at all. Source: S000 (Muchun Song: "a
/// HugeTLB will not share any leaf page table entries with anything else"; the minimum hot-plug
/// granularity is a section); arch/arm64/include/asm/sparsemem.h (the section is at least 128M on
/// 4K "otherwise PMD based huge page entries could not be created for vmemmap"); "arm64: mm:
/// Populate vmemmap at the page level if not section aligned" (2025); x86 vmemmap_populate (base
/// pages for less than a section's memmap).
/// </summary>
public sealed class SectionsHavePrivateLeaves : IInvariant
{
    public string Name => nameof(SectionsHavePrivateLeaves);
    public string Claim => "no vmemmap or linear-map leaf covers memory of two hot-plug units (memory blocks, memremap_pages ranges, boot memory) whose lifetimes differ";
    public string Source => "S000 (Muchun Song's answer to Anshuman Khandual); arch/arm64/mm/mmu.c vmemmap_populate; arch/x86/mm/init_64.c vmemmap_populate";

    public Violation? Check(IKernelView k)
    {
        var hp = k.Hotplug;
        long firstHot = hp.FirstHotplugSection * k.Arch.PagesPerSection;
        if (firstHot >= k.Mem.MaxPfn) return null;
        // Leaves that touch hot-pluggable memory (a leaf reaching in from boot memory included).
        var regions = new[]
        {
            ("linear-map", k.Arch.PfnToVirt(firstHot), k.Arch.PfnToVirt(k.Mem.MaxPfn), true),
            ("vmemmap", k.Arch.PfnToPage(firstHot), k.Arch.PfnToPage(k.Mem.MaxPfn), false),
        };
        foreach (var (what, start, end, linear) in regions)
            foreach (var w in k.SwapperPgDir.Leaves(start, end))
            {
                ulong va = k.SwapperPgDir.EntryVa(w.Table, w.Index), size = k.SwapperPgDir.EntrySize(w.Table);
                long first = linear ? (long)((va - k.Arch.PageOffset) >> k.Arch.PageShift) : k.Arch.PageToPfn(va);
                long last = linear ? first + (long)(size >> k.Arch.PageShift) : k.Arch.PageToPfn(va + size);
                string? seen = null;
                for (long p = Math.Max(first, 0); p < last && p < k.Mem.MaxPfn; p += hp.SubsectionPages)
                {
                    if (hp.LifetimeOf(p) is not { } life) continue;
                    if (seen is null) seen = life;
                    else if (seen != life)
                        return new(Name, $"{what} {w.Level} leaf at {va:x} ({w.Entry}) covers memory of {seen} and {life} (pfn {p:x})");
                }
            }
        return null;
    }
}
