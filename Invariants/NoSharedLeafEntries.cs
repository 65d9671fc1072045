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

    private readonly record struct Mapping(long Frame, long Frames, ulong Va, ulong Size, long Owner, HugetlbFolio? Folio, bool Writable);

    /// <summary>Judges only the leaves a step could have made wrong, with every leaf that shares a
    /// frame with one of them. Both rules quantify over leaves and pairs of leaves mapping a common
    /// frame, and removing a leaf breaks neither, so after a clean check of the previous step a
    /// violation needs a leaf that is new or changed (an init_mm entry store on its path, whose
    /// range covers everything below a table entry) or whose struct pages changed owner (a
    /// folio's frames were allocated or freed: <see cref="IPhysMemView.Changed"/>, with the
    /// hstates' touched folios for good measure). Those leaves, and the leaves meeting their
    /// frames (found through the page table's leaf-frame index), are swept as
    /// <see cref="CheckFullScan"/> sweeps all of them. At step 0 (boot is not in the step's
    /// log) or in a tree a walk by address does not cover (<see cref="IPageTableView.IsCanonicalTree"/>)
    /// it is the full scan; on a violation the full scan supplies the evidence, so both forms
    /// report alike (Properties/EngineCore/IncrementalOracleTests.cs compares them).</summary>
    public Violation? Check(IKernelView k)
    {
        var pgd = k.SwapperPgDir;
        if (k.Step == 0 || !pgd.IsCanonicalTree) return CheckFullScan(k);
        ulong lo = k.Arch.VmemmapStart, hi = k.Arch.VmemmapEnd;
        var dirty = new List<(ulong Start, ulong End)>();
        string init = pgd.Name;
        foreach (var e in k.StepEvents)
            if (e.Kind == KernelEventKind.EntryStore && e.Mm == init) VmallocStepRanges.AddClipped(dirty, e.Start, e.End, lo, hi);
        foreach (var r in k.Mem.Changed) VmallocStepRanges.AddClipped(dirty, k.Arch.PfnToPage(r.Start), k.Arch.PfnToPage(r.End), lo, hi);
        foreach (var h in k.Hugetlb.Hstates)
            foreach (var f in h.TouchedThisStep) VmallocStepRanges.AddClipped(dirty, k.Arch.PfnToPage(f.HeadPfn), k.Arch.PfnToPage(f.HeadPfn + f.NrPages), lo, hi);
        if (dirty.Count == 0) return null;
        dirty = VmallocStepRanges.Merge(dirty);

        var scratch = new List<HugetlbFolio>();
        var frames = new List<(long Pfn, long Count)>();
        foreach (var (s, e) in dirty)
            foreach (var w in pgd.Leaves(s, e))
            {
                // A leaf wider than the gap between two dirty ranges is found twice; its frames
                // are looked up once either way.
                ulong va = pgd.EntryVa(w.Table, w.Index), size = pgd.EntrySize(w.Table);
                if (!w.Entry.Writable && OwnerOf(k, scratch, va, size, out _, out _) == long.MinValue) return Evidence(k);
                frames.Add((w.Entry.Pfn, (long)(size >> k.Arch.PageShift)));
            }
        if (frames.Count == 0) return null;
        var meeting = new List<PtWalk>();
        pgd.LeafFrames(lo, hi).LeavesMapping(LeafFrameIndex.Coalesce(frames), meeting);
        var maps = new List<Mapping>(meeting.Count);
        foreach (var w in meeting)
            if (ToMapping(k, scratch, w, out _) is { } m) maps.Add(m);
        return Sweep(k, maps) is null ? null : Evidence(k);
    }

    /// <summary>The full-scan oracle: every vmemmap leaf, swept by frame.</summary>
    public Violation? CheckFullScan(IKernelView k)
    {
        var scratch = new List<HugetlbFolio>();
        var maps = new List<Mapping>();
        foreach (var w in k.SwapperPgDir.Leaves(k.Arch.VmemmapStart, k.Arch.VmemmapEnd))
        {
            if (ToMapping(k, scratch, w, out var v) is { } m) maps.Add(m);
            else return v;
        }
        return Sweep(k, maps);
    }

    private Violation Evidence(IKernelView k) =>
        CheckFullScan(k) ?? throw new Engine.Mm.ModelBugException($"{Name}: the step's leaves break the rule, but a full scan finds nothing");

    /// <summary>The leaf as a mapping, or null with the violation when it is read-only yet covers
    /// struct pages of several owners.</summary>
    private Mapping? ToMapping(IKernelView k, List<HugetlbFolio> scratch, PtWalk w, out Violation? v)
    {
        ulong va = k.SwapperPgDir.EntryVa(w.Table, w.Index), size = k.SwapperPgDir.EntrySize(w.Table);
        long owner = OwnerOf(k, scratch, va, size, out var folio, out string owners);
        v = null;
        if (owner == long.MinValue && !w.Entry.Writable)
        {
            v = new(Name, $"read-only vmemmap {w.Level} leaf at {va:x} ({w.Entry}) covers struct pages of {owners}");
            return null;
        }
        return new Mapping(w.Entry.Pfn, (long)(size >> k.Arch.PageShift), va, size, owner, folio, w.Entry.Writable);
    }

    /// <summary>Sweeps the frame ranges in order: a range that starts before the end of the
    /// current group of overlapping ranges aliases a frame of that group, and every member of a
    /// group with an alias must be a single-owner leaf of one and the same folio. (Equivalently:
    /// every two leaves that map a common frame belong to one folio, so any set of leaves holding
    /// every leaf that meets a given one judges that one as the whole set would.)</summary>
    private Violation? Sweep(IKernelView k, List<Mapping> maps)
    {
        maps.Sort((a, b) => a.Frame != b.Frame ? a.Frame.CompareTo(b.Frame) : a.Va.CompareTo(b.Va));
        int group = -1;
        long groupEnd = long.MinValue;
        for (int i = 0; i < maps.Count; i++)
        {
            var m = maps[i];
            if (m.Frame < groupEnd)
            {
                var g = maps[group];
                if (!(m.Owner == g.Owner && g.Owner >= 0))
                    return new(Name, $"frame {m.Frame:x} is mapped by vmemmap leaves at {g.Va:x} ({Describe(k, g)}) and {m.Va:x} ({Describe(k, m)})");
                groupEnd = Math.Max(groupEnd, m.Frame + m.Frames);
                continue;
            }
            group = i;
            groupEnd = m.Frame + m.Frames;
        }
        return null;
    }

    /// <summary>The single owner of the struct pages a vmemmap leaf at [va, va + size) holds: a
    /// folio (its head PFN, ≥ 0), a section as −(section + 1), or long.MinValue when they belong
    /// to several owners (a folio and what lies outside it, two folios, or two sections).</summary>
    private static long OwnerOf(IKernelView k, List<HugetlbFolio> scratch, ulong va, ulong size, out HugetlbFolio? folio, out string owners)
    {
        long spp = ArchConfig.StructPageSize;
        long first = (long)((va - k.Arch.VmemmapStart) / (ulong)spp);
        long last = first + (long)(size / (ulong)spp); // exclusive
        owners = "";
        folio = null;
        k.Hugetlb.FoliosOverlapping(first, last, scratch);
        if (scratch.Count > 0)
        {
            var f = scratch[0];
            if (f.HeadPfn <= first)
            {
                if (scratch.Count == 1 && last <= f.HeadPfn + f.NrPages) { folio = f; return f.HeadPfn; }
                owners = $"{f} and pfns from {f.HeadPfn + f.NrPages:x}";
            }
            else owners = $"pfn {first:x} (section {k.Mem.PfnToSection(first)}) and {f}";
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

    private static string Describe(IKernelView k, Mapping m) =>
        m.Owner == long.MinValue ? "several owners" : m.Folio is { } f ? f.ToString() : $"section {-m.Owner - 1}";
}
