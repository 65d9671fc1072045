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

    /// <summary>Judges only the sections a step could have made wrong: those whose state was
    /// set (<see cref="IPhysMemView.SectionsChanged"/>) and those holding frames whose owner
    /// changed; the per-section rules read nothing else that a step can change without one of
    /// the two (a hot-add or remove changes the owners of what it adds or takes away). The zone's
    /// count is compared with the online sections' count by state; the folio rule is judged for
    /// the folios overlapping changed frames or lying in changed sections. After a clean check of
    /// the previous step this is the verdict of <see cref="CheckFullScan"/>, which supplies the
    /// evidence when something is wrong (and runs at step 0, whose boot is not in the log).</summary>
    public Violation? Check(IKernelView k)
    {
        if (k.Step == 0) return CheckFullScan(k);
        long pps = k.Arch.PagesPerSection;
        if (k.Mem.SectionsIn(SectionState.Online) * pps != k.Hotplug.NrOnlinePages) return Evidence(k);
        var sections = new List<long>(k.Mem.SectionsChanged);
        foreach (var r in k.Mem.Changed)
            for (long s = k.Mem.PfnToSection(r.Start); s <= k.Mem.PfnToSection(r.End - 1); s++)
                if (sections.Count == 0 || sections[^1] != s) sections.Add(s);
        if (sections.Count == 0) return null;
        sections.Sort();
        var folios = new List<HugetlbFolio>();
        long last = -1;
        foreach (long s in sections)
        {
            if (s == last) continue;
            last = s;
            if (CheckSection(k, s) is not null) return Evidence(k);
            if (k.Mem.SectionStateOf(s) == SectionState.Online) continue;
            k.Hugetlb.FoliosOverlapping(s * pps, (s + 1) * pps, folios);
            foreach (var f in folios)
                if (CheckFolio(k, f) is not null) return Evidence(k);
        }
        foreach (var r in k.Mem.Changed)
        {
            k.Hugetlb.FoliosOverlapping(r.Start, r.End, folios);
            foreach (var f in folios)
                if (CheckFolio(k, f) is not null) return Evidence(k);
        }
        return null;
    }

    /// <summary>The full scan: every section, the zone's count, every folio.</summary>
    public Violation? CheckFullScan(IKernelView k)
    {
        long pps = k.Arch.PagesPerSection, online = 0;
        for (long s = 0; s < k.Mem.NrSections; s++)
        {
            if (k.Mem.SectionStateOf(s) == SectionState.Online) online += pps;
            if (CheckSection(k, s) is { } v) return v;
        }
        if (online != k.Hotplug.NrOnlinePages)
            return new(Name, $"the zone counts {k.Hotplug.NrOnlinePages} online pages, the online sections have {online}");
        foreach (var h in k.Hugetlb.Hstates)
            foreach (var f in h.Folios)
                if (CheckFolio(k, f) is { } v) return v;
        return null;
    }

    private Violation Evidence(IKernelView k) =>
        CheckFullScan(k) ?? throw new Engine.Mm.ModelBugException($"{Name}: a section or folio the step changed breaks the rule, but a full scan finds nothing");

    private Violation? CheckFolio(IKernelView k, HugetlbFolio f)
    {
        long s = k.Mem.PfnToSection(f.HeadPfn);
        var state = k.Mem.SectionStateOf(s);
        return state == SectionState.Online ? null : new(Name, $"{f} lies in section {s}, which is {state}");
    }

    private Violation? CheckSection(IKernelView k, long s)
    {
        long pps = k.Arch.PagesPerSection, pfn = s * pps;
        var state = k.Mem.SectionStateOf(s);
        switch (state)
        {
            case SectionState.Online:
                long bad = k.Mem.CountOwned(pfn, pps, FrameOwner.Offline) + k.Mem.CountOwned(pfn, pps, FrameOwner.Absent);
                if (bad != 0) return new(Name, $"section {s} is online but {bad} of its pages are offline or absent (first {First(k, pfn, pps, o => o is FrameOwner.Offline or FrameOwner.Absent)})");
                return null;
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
                return null;
            default:
                if (!k.Mem.AllOwnedBy(pfn, pps, FrameOwner.Absent))
                    return new(Name, $"section {s} is {state} but holds {First(k, pfn, pps, o => o != FrameOwner.Absent)}");
                return null;
        }
    }

    private static string First(IKernelView k, long pfn, long n, Func<FrameOwner, bool> bad)
    {
        for (long p = pfn; p < pfn + n; p++)
            if (bad(k.Mem.OwnerOf(p))) return $"pfn {p:x} owned {k.Mem.OwnerOf(p)}";
        return "nothing";
    }
}
