using PropertySuite.Engine;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// Memory that has been hot-removed is gone: for every section (or ZONE_DEVICE sub-section) no
/// longer present and not claimed by an add or remove in progress, no linear-map leaf maps its frames, no vmemmap leaf maps its struct pages, no
/// CPU's TLB holds a translation of either, and every one of its frames is absent (nothing owns
/// memory inside it, nothing is on a free list there). Source: arch/arm64/mm/mmu.c
/// arch_remove_memory (__remove_pages → vmemmap_free, then __remove_pgd_mapping, each pass 1
/// clearing and invalidating every leaf), arch/x86/mm/init_64.c remove_pagetable, and
/// mm/memory_hotplug.c try_remove_memory (only offline memory, all of it isolated, is removed).
/// </summary>
public sealed class RemovedMemoryIsGone : IInvariant
{
    public string Name => nameof(RemovedMemoryIsGone);
    public string Claim => "no linear-map or vmemmap leaf, TLB entry or owned frame remains for memory that has been removed";
    public string Source => "arch/arm64/mm/mmu.c arch_remove_memory, __remove_pgd_mapping, vmemmap_free; arch/x86/mm/init_64.c remove_pagetable; mm/memory_hotplug.c try_remove_memory";

    public Violation? Check(IKernelView k)
    {
        var hp = k.Hotplug;
        long unit = hp.SubsectionPages;
        for (long s = hp.FirstHotplugSection; s < k.Mem.NrSections; s++)
        {
            var state = k.Mem.SectionStateOf(s);
            if (state == SectionState.Absent) continue; // never added: nothing was there to remove
            for (long pfn = s * k.Arch.PagesPerSection; pfn < (s + 1) * k.Arch.PagesPerSection; pfn += unit)
            {
                if (hp.LifetimeOf(pfn) is not null || hp.IsClaimed(pfn)) continue; // present, or being added or removed
                if (state != SectionState.Removed && !hp.Section(s).Device) continue;
                if (!k.Mem.AllOwnedBy(pfn, unit, FrameOwner.Absent))
                    return new(Name, $"pfn {pfn:x} of removed section {s} is owned {FirstOwner(k, pfn, unit)}");
                ulong lin = k.Arch.PfnToVirt(pfn), linEnd = k.Arch.PfnToVirt(pfn + unit);
                foreach (var w in k.SwapperPgDir.Leaves(lin, linEnd))
                    return new(Name, $"linear-map {w.Level} leaf at {k.SwapperPgDir.EntryVa(w.Table, w.Index):x} ({w.Entry}) still maps removed pfns from {pfn:x} (section {s})");
                ulong mm = k.Arch.PfnToPage(pfn), mmEnd = k.Arch.PfnToPage(pfn + unit);
                foreach (var w in k.SwapperPgDir.Leaves(mm, mmEnd))
                {
                    // A leaf shared with present memory is SectionsHavePrivateLeaves' finding.
                    ulong va = k.SwapperPgDir.EntryVa(w.Table, w.Index), size = k.SwapperPgDir.EntrySize(w.Table);
                    if (va >= mm && va + size <= mmEnd || !SharedWithPresent(k, va, size))
                        return new(Name, $"vmemmap {w.Level} leaf at {va:x} ({w.Entry}) still maps the struct pages of removed pfns from {pfn:x} (section {s})");
                }
                foreach (var cpu in k.Cpus)
                    foreach (var e in cpu.Tlb.Entries)
                        if (VaRange.Overlaps(e.Va, e.Va + e.Size, lin, linEnd) || VaRange.Overlaps(e.Va, e.Va + e.Size, mm, mmEnd) && !SharedWithPresent(k, e.Va, e.Size))
                            return new(Name, $"cpu{cpu.Id} TLB still translates {e.Va:x} (+{e.Size:x}) to frame {e.Pfn:x}: removed pfns from {pfn:x} (section {s})");
            }
        }
        return null;
    }

    private static string FirstOwner(IKernelView k, long pfn, long n)
    {
        for (long p = pfn; p < pfn + n; p++)
            if (k.Mem.OwnerOf(p) != FrameOwner.Absent) return $"{k.Mem.OwnerOf(p)} (pfn {p:x})";
        return "Absent";
    }

    /// <summary>Whether the vmemmap range [va, va+size) also describes present memory.</summary>
    private static bool SharedWithPresent(IKernelView k, ulong va, ulong size)
    {
        long first = k.Arch.PageToPfn(va), last = k.Arch.PageToPfn(va + size);
        for (long p = first; p < last && p < k.Mem.MaxPfn; p += k.Hotplug.SubsectionPages)
            if (k.Hotplug.LifetimeOf(p) is not null) return true;
        return false;
    }
}
