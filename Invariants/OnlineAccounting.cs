using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// The present / online / offline state of every section agrees with where its pages are: an
/// online section's pages belong to the page allocator's world (free in the buddy, or allocated
/// from it: HugeTLB folios, page tables, vmemmap, ...), none of them is absent or offline; a
/// present section that is not online (hot-added and not yet onlined, or offlined, or ZONE_DEVICE
/// memory) has all its pages offline: none is in the buddy or owned by anyone, and no HugeTLB
/// folio of any pool lies in it; a section's self-hosted memmap (memmap_on_memory: its first pages
/// hold its own struct pages) is vmemmap while the section is present, whatever its state, and
/// back to offline memory once the teardown has returned it to the altmap; a removed or
/// never-added section is all absent. The zone's count
/// of online pages equals the pages of the online sections. Source: mm/memory_hotplug.c
/// online_pages (adjust_present_page_count, generic_online_page), offline_pages
/// (dissolve_free_hugetlb_folios, __offline_isolated_pages), mm/sparse.c (SECTION_IS_ONLINE).
/// </summary>
public sealed class OnlineAccounting : IInvariant
{
    public string Name => nameof(OnlineAccounting);
    public string Claim => "every section's present/online/offline state agrees with the buddy, the owners of its pages, the HugeTLB pools and the zone's online page count";
    public string Source => "mm/memory_hotplug.c online_pages, offline_pages; mm/sparse.c";

    public Violation? Check(IKernelView k)
    {
        long pps = k.Arch.PagesPerSection, online = 0;
        for (long s = 0; s < k.Mem.NrSections; s++)
        {
            long pfn = s * pps;
            var state = k.Mem.SectionStateOf(s);
            switch (state)
            {
                case SectionState.Online:
                    online += pps;
                    long bad = k.Mem.CountOwned(pfn, pps, FrameOwner.Offline) + k.Mem.CountOwned(pfn, pps, FrameOwner.Absent);
                    if (bad != 0) return new(Name, $"section {s} is online but {bad} of its pages are offline or absent (first {First(k, pfn, pps, o => o is FrameOwner.Offline or FrameOwner.Absent)})");
                    break;
                case SectionState.Present or SectionState.Offline:
                    if (k.Hotplug.Section(s).Device)
                    {
                        long sub = k.Hotplug.SubsectionPages;
                        for (long p = pfn; p < pfn + pps; p += sub)
                            if (!k.Mem.AllOwnedBy(p, sub, k.Hotplug.LifetimeOf(p) is null ? FrameOwner.Absent : FrameOwner.Offline))
                                return new(Name, $"device section {s}: sub-section at pfn {p:x} is {(k.Hotplug.LifetimeOf(p) is null ? "absent" : "present")} but holds {First(k, p, sub, _ => true)}");
                    }
                    else if (k.Hotplug.Section(s).AltmapPages is var alt && !k.Mem.AllOwnedBy(pfn + alt, pps - alt, FrameOwner.Offline))
                        return new(Name, $"section {s} is {state} (not online) but holds {First(k, pfn + alt, pps - alt, o => o != FrameOwner.Offline)}");
                    else if (alt > 0 && k.Mem.CountOwned(pfn, alt, FrameOwner.Vmemmap) + k.Mem.CountOwned(pfn, alt, FrameOwner.Offline) != alt)
                        return new(Name, $"section {s} is {state}: its self-hosted memmap holds {First(k, pfn, alt, o => o is not (FrameOwner.Vmemmap or FrameOwner.Offline))}");
                    break;
                default:
                    if (!k.Mem.AllOwnedBy(pfn, pps, FrameOwner.Absent))
                        return new(Name, $"section {s} is {state} but holds {First(k, pfn, pps, o => o != FrameOwner.Absent)}");
                    break;
            }
        }
        if (online != k.Hotplug.NrOnlinePages)
            return new(Name, $"the zone counts {k.Hotplug.NrOnlinePages} online pages, the online sections have {online}");
        foreach (var h in k.Hugetlb.Hstates)
            foreach (var f in h.Folios)
                if (k.Mem.SectionStateOf(k.Mem.PfnToSection(f.HeadPfn)) != SectionState.Online)
                    return new(Name, $"{f} lies in section {k.Mem.PfnToSection(f.HeadPfn)}, which is {k.Mem.SectionStateOf(k.Mem.PfnToSection(f.HeadPfn))}");
        return null;
    }

    private static string First(IKernelView k, long pfn, long n, Func<FrameOwner, bool> bad)
    {
        for (long p = pfn; p < pfn + n; p++)
            if (bad(k.Mem.OwnerOf(p))) return $"pfn {p:x} owned {k.Mem.OwnerOf(p)}";
        return "nothing";
    }
}
