// A ptdump-style rendering of a page table: mm/ptdump.c (the generic walker) with the output of
// arch/arm64/mm/ptdump.c and arch/x86/mm/dump_pagetables.c (note_page): leaves are visited in
// address order and consecutive ones that look alike are printed as one range, with a marker
// line where a named region (linear map, vmalloc, vmemmap) begins.
//
// Coalescing: the kernel merges consecutive entries with the same level and the same attributes.
// The model also requires the output frames to continue where the previous range stopped, so
// that a range line states exactly which frames it maps (HVO's remapped tails, which all point at
// one frame, show as one line per PTE, which is what a reviewer wants to see).
//
// Departures from the kernel: no attribute bits beyond RW/RO and CONT (no NX, AF, memory type);
// the target frames are printed (the kernel does not); tables are not locked while walking
// (this is an observer of the model, not the kernel's ptdump walk, which would be a task).
using System.Globalization;
using System.Text;
using PropertySuite.Engine.Config;

namespace PropertySuite.Engine.Mm;

/// <summary>A named region of the kernel virtual address space, [Start, End).</summary>
public sealed record PtDumpRegion(string Name, ulong Start, ulong End)
{
    public bool Contains(ulong va) => va >= Start && va < End;
}

/// <summary>One printed range: <see cref="Count"/> leaves at <see cref="Level"/>, virtually and
/// physically contiguous, with the same permission and contiguous bit.</summary>
public sealed record PtDumpRange(ulong Start, ulong End, PtLevel Level, int Count, bool Writable, bool Cont, long Pfn, long PfnEnd, string? Region)
{
    public ulong Size => End - Start;
}

/// <summary>Renders page tables the way /sys/kernel/debug/kernel_page_tables does.</summary>
public static class PtDump
{
    /// <summary>The regions the model maps in the kernel half, in address order: the linear
    /// map [PAGE_OFFSET, PAGE_OFFSET + linear map size), vmalloc [VMALLOC_START, VMALLOC_END],
    /// vmemmap [VMEMMAP_START, VMEMMAP_END).</summary>
    public static IReadOnlyList<PtDumpRegion> KernelRegions(ArchConfig arch) =>
        new[]
        {
            new PtDumpRegion("linear map", arch.PageOffset, arch.PageOffset + (ulong)arch.LinearMapSize),
            new PtDumpRegion("vmalloc", arch.VmallocStart, arch.VmallocEnd),
            new PtDumpRegion("vmemmap", arch.VmemmapStart, arch.VmemmapEnd),
        }.OrderBy(r => r.Start).ToArray();

    /// <summary>The coalesced ranges of every leaf intersecting [start, end), in address order.
    /// Ranges never cross a region boundary (a new region starts a new range).</summary>
    public static IReadOnlyList<PtDumpRange> Ranges(PageTable pt, ulong start, ulong end, IReadOnlyList<PtDumpRegion>? regions = null)
    {
        var result = new List<PtDumpRange>();
        PtDumpRange? cur = null;
        int pageShift = pt.Arch.PageShift;
        foreach (var w in pt.Leaves(start, end))
        {
            ulong va = pt.EntryVa(w.Table, w.Index), size = pt.EntrySize(w.Table);
            long pages = (long)(size >> pageShift);
            string? region = regions?.FirstOrDefault(r => r.Contains(va))?.Name;
            if (cur is not null && cur.End == va && cur.Level == w.Level && cur.Writable == w.Entry.Writable
                && cur.Cont == w.Entry.Cont && cur.PfnEnd == w.Entry.Pfn && cur.Region == region)
            {
                cur = cur with { End = va + size, Count = cur.Count + 1, PfnEnd = w.Entry.Pfn + pages };
                continue;
            }
            if (cur is not null) result.Add(cur);
            cur = new PtDumpRange(va, va + size, w.Level, 1, w.Entry.Writable, w.Entry.Cont, w.Entry.Pfn, w.Entry.Pfn + pages, region);
        }
        if (cur is not null) result.Add(cur);
        return result;
    }

    /// <summary>Renders init_mm of <paramref name="k"/> over [start, end) (default: all of it),
    /// with region markers unless <paramref name="markRegions"/> is false.</summary>
    public static string Render(Kernel k, ulong start = 0, ulong end = ulong.MaxValue, bool markRegions = true) =>
        Render(k.SwapperPgDir, start, end, markRegions ? KernelRegions(k.Arch) : null);

    /// <summary>Renders <paramref name="pt"/> over [start, end). Each range is one line:
    /// <c>0xSTART-0xEND  SIZE  COUNTxLEVEL  RW|RO  [CONT]  pfn 0xFIRST-0xEND</c> (both ranges
    /// half-open). A line <c>---[ name ]---</c> precedes the first range of each region, and a
    /// summary of the table pages by level closes the dump.</summary>
    public static string Render(PageTable pt, ulong start, ulong end, IReadOnlyList<PtDumpRegion>? regions)
    {
        var sb = new StringBuilder();
        var ranges = Ranges(pt, start, end, regions);
        string? shown = null;
        bool first = true;
        foreach (var r in ranges)
        {
            if (regions is not null && (first || r.Region != shown))
            {
                sb.Append("---[ ").Append(r.Region ?? "outside the named regions").Append(" ]---\n");
                shown = r.Region;
            }
            first = false;
            sb.Append(FormatRange(r)).Append('\n');
        }
        if (ranges.Count == 0) sb.Append("(no leaves in [0x").Append(Hex(start)).Append(", 0x").Append(Hex(end)).Append("))\n");
        sb.Append(TableSummary(pt)).Append('\n');
        return sb.ToString();
    }

    /// <summary>One range as a line (no newline).</summary>
    public static string FormatRange(PtDumpRange r) => string.Create(CultureInfo.InvariantCulture,
        $"0x{r.Start:x16}-0x{r.End:x16} {FormatBytes(r.Size),7} {r.Count,6}x{LevelName(r.Level),-3} {(r.Writable ? "RW" : "RO")} {(r.Cont ? "CONT" : "    ")}  pfn 0x{r.Pfn:x}-0x{r.PfnEnd:x}");

    /// <summary>"tables: N (PGD 1, PUD b, PMD c, PTE d)": every table page of the tree, the root
    /// first (the kernel's pgd, whatever the size of its entries), then the others by the
    /// level of the entries they hold.</summary>
    public static string TableSummary(PageTable pt)
    {
        var parts = new List<string> { "PGD 1" };
        foreach (var g in pt.Tables.Values.Where(t => t != pt.Root).GroupBy(t => t.Level).OrderByDescending(g => g.Key))
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"{LevelName(g.Key)} {g.Count()}"));
        return string.Create(CultureInfo.InvariantCulture, $"tables: {pt.Tables.Count} ({string.Join(", ", parts)})");
    }

    /// <summary>The kernel's name of the entries at a level, by what one entry maps (a 1 GiB
    /// block is a PUD even when arm64 3-level folds the PUD into the PGD, as ptdump prints it).</summary>
    public static string LevelName(PtLevel level) => level switch
    {
        PtLevel.Pte => "PTE",
        PtLevel.Pmd => "PMD",
        PtLevel.Pud => "PUD",
        PtLevel.P4d => "P4D",
        _ => "PGD",
    };

    /// <summary>A size in the largest binary unit that divides it exactly (12K, 2M, 768M, 1G).</summary>
    public static string FormatBytes(ulong bytes) => bytes >= (ulong)long.MaxValue ? "16E" : ArchConfig.FormatSize((long)bytes);

    private static string Hex(ulong v) => v.ToString("x", CultureInfo.InvariantCulture);
}
