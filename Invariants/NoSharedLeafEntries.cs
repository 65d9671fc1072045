using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// No vmemmap leaf is shared between owners whose lifetimes differ. The owner of a struct page is
/// the HugeTLB folio it belongs to, or else the memory section it describes. A leaf that covers
/// struct pages of more than one owner (a boot PMD block covering a section with several folios
/// in it) must be left as vmemmap population made it: writable and mapping frames that no other
/// vmemmap leaf maps. A frame mapped by several vmemmap leaves (HVO's aliasing) may be mapped only
/// by leaves that lie wholly inside one folio's vmemmap — so restoring, dissolving or hot-removing
/// one owner never changes what another owner's struct pages map to. Source: S000, Muchun Song's
/// answer to Anshuman Khandual (the hot-remove thread). Enforced by HugeTLB's
/// natural alignment (alloc_pages / alloc_contig_pages of the folio order) and by
/// vmemmap_split_pmd, which turns a PMD block into PTEs before any entry is remapped.
/// </summary>
public sealed class NoSharedLeafEntries : IInvariant
{
    public string Name => nameof(NoSharedLeafEntries);
    public string Claim => "a vmemmap leaf covering struct pages of several owners is writable and unaliased, and an aliased vmemmap frame is mapped only from within one folio's vmemmap";
    public string Source => "S000 (Muchun Song's conditions 1-3); mm/hugetlb_vmemmap.c vmemmap_split_pmd";

    private readonly record struct Mapping(long Frame, long Frames, ulong Va, ulong Size, long Owner, bool Writable);

    public Violation? Check(IKernelView k)
    {
        var folios = k.Hugetlb.AllFoliosByPfn();
        var heads = folios.Select(f => f.HeadPfn).ToArray();
        var maps = new List<Mapping>();
        long spp = ArchConfig.StructPageSize;
        foreach (var w in k.SwapperPgDir.Leaves(k.Arch.VmemmapStart, k.Arch.VmemmapEnd))
        {
            ulong va = k.SwapperPgDir.EntryVa(w.Table, w.Index), size = k.SwapperPgDir.EntrySize(w.Table);
            long first = (long)((va - k.Arch.VmemmapStart) / (ulong)spp);
            long last = first + (long)(size / (ulong)spp); // exclusive
            long owner = OwnerOf(k, folios, heads, first, last, out string owners);
            if (owner == long.MinValue && !w.Entry.Writable)
                return new(Name, $"read-only vmemmap {w.Level} leaf at {va:x} ({w.Entry}) covers struct pages of {owners}");
            maps.Add(new Mapping(w.Entry.Pfn, (long)(size >> k.Arch.PageShift), va, size, owner, w.Entry.Writable));
        }
        maps.Sort((a, b) => a.Frame.CompareTo(b.Frame));
        // Sweep the frame ranges in order: a range that starts before the end of the current group
        // of overlapping ranges aliases a frame of that group, and every member of a group with an
        // alias must be a single-owner leaf of one and the same folio.
        int group = -1;
        long groupEnd = long.MinValue;
        for (int i = 0; i < maps.Count; i++)
        {
            var m = maps[i];
            if (m.Frame < groupEnd)
            {
                var g = maps[group];
                if (!(m.Owner == g.Owner && g.Owner >= 0))
                    return new(Name, $"frame {m.Frame:x} is mapped by vmemmap leaves at {g.Va:x} ({Describe(k, folios, g.Owner)}) and {m.Va:x} ({Describe(k, folios, m.Owner)})");
                groupEnd = Math.Max(groupEnd, m.Frame + m.Frames);
                continue;
            }
            group = i;
            groupEnd = m.Frame + m.Frames;
        }
        return null;
    }

    /// <summary>The single owner of struct pages [first, last): a folio index (≥ 0), a section as
    /// −(section + 1), or long.MinValue when they belong to several owners.</summary>
    private static long OwnerOf(IKernelView k, List<HugetlbFolio> folios, long[] heads, long first, long last, out string owners)
    {
        owners = "";
        int i = Array.BinarySearch(heads, first);
        if (i < 0) i = ~i - 1;
        // The folio containing `first`, if any.
        if (i >= 0 && first < folios[i].HeadPfn + folios[i].NrPages)
        {
            if (last <= folios[i].HeadPfn + folios[i].NrPages) return i;
            owners = $"{folios[i]} and pfns from {folios[i].HeadPfn + folios[i].NrPages:x}";
            return long.MinValue;
        }
        // Not in a folio: the section, unless a folio starts inside the range or it crosses a section.
        int nextFolio = i + 1;
        if (nextFolio < folios.Count && folios[nextFolio].HeadPfn < last)
        {
            owners = $"pfn {first:x} (section {k.Mem.PfnToSection(first)}) and {folios[nextFolio]}";
            return long.MinValue;
        }
        long s = k.Mem.PfnToSection(first), sLast = k.Mem.PfnToSection(last - 1);
        if (s != sLast)
        {
            owners = $"sections {s} and {sLast}";
            return long.MinValue;
        }
        return -(s + 1);
    }

    private static string Describe(IKernelView k, List<HugetlbFolio> folios, long owner) =>
        owner == long.MinValue ? "several owners" : owner >= 0 ? folios[(int)owner].ToString() : $"section {-owner - 1}";
}
