// What HVO saves, measured by running the engine: for every configuration,
// HVO scheme and HugeTLB size, boot a machine, note how many frames back vmemmap, allocate
// folios into the pool the way set_max_huge_pages does (alloc_pool_huge_folio: allocate, prep,
// optimize, enqueue), and count the vmemmap frames again. Nothing here is a formula: the frames
// freed are the difference of the two counts, the pages kept are the distinct frames that a
// folio's vmemmap range maps afterwards (found by walking init_mm), and the per-TiB figure scales
// the measured difference by 1 TiB / bytes allocated — exact when 1 TiB is allocated, and exact
// anyway when less is, because every folio of a size frees the same number of frames (which the
// measurement checks).
//
// Arm64 rows are measured with the arm64 HVO enablement of v6.1-v6.2 switched on (and vmemmap
// updates done with break-before-make), since today's arm64 kernel has HVO disabled: they show
// what the generic code would do there.
using System.Globalization;
using System.Text;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>What to measure.</summary>
/// <param name="MemoryBytes">HugeTLB memory actually allocated per (config, scheme, size): as many
/// folios as fit in it, at least one. 1 TiB makes the per-TiB column a direct measurement.</param>
/// <param name="Schemes">HVO schemes to measure (default: one page kept, then two).</param>
/// <param name="Configs">Configurations (default: every ArchConfig).</param>
/// <param name="Sizes">HugeTLB sizes to keep (default: every size of each configuration).</param>
public sealed record SavingsOptions(
    long MemoryBytes,
    IReadOnlyList<HvoScheme>? Schemes = null,
    IReadOnlyList<ArchConfig>? Configs = null,
    IReadOnlyList<long>? Sizes = null)
{
    public const long TiB = 1L << 40;
    public IReadOnlyList<HvoScheme> SchemesOrDefault => Schemes ?? [HvoScheme.OnePageKept, HvoScheme.TwoPagesKept];
    public IReadOnlyList<ArchConfig> ConfigsOrDefault => Configs ?? ArchConfig.All;
}

/// <summary>One measured row.</summary>
/// <param name="Config">ArchConfig name.</param>
/// <param name="Scheme">HVO scheme.</param>
/// <param name="HugePageBytes">huge_page_size(h).</param>
/// <param name="PageSize">Base page size.</param>
/// <param name="Folios">Folios allocated.</param>
/// <param name="VmemmapBytesPerFolio">Bytes of vmemmap a folio's struct pages span.</param>
/// <param name="KeptPerFolio">Distinct frames the first folio's vmemmap maps after HVO (0 when its
/// struct pages fill less than a page: then nothing is kept for it alone).</param>
/// <param name="FramesFreed">Vmemmap frames before minus after, all folios together.</param>
public sealed record SavingsRow(string Config, HvoScheme Scheme, long HugePageBytes, long PageSize, long Folios,
    long VmemmapBytesPerFolio, long KeptPerFolio, long FramesFreed)
{
    public long AllocatedBytes => Folios * HugePageBytes;
    /// <summary>Frames freed per folio (the measurement checks that it divides evenly).</summary>
    public long FreedPerFolio => FramesFreed / Folios;
    /// <summary>V when the folio's vmemmap is at least one page, else 0.</summary>
    public long VmemmapPages => VmemmapBytesPerFolio / PageSize;
    /// <summary>Bytes saved per TiB of HugeTLB memory of this size.</summary>
    public long SavedBytesPerTiB => (long)((Int128)FramesFreed * PageSize * SavingsOptions.TiB / AllocatedBytes);
    /// <summary>Vmemmap bytes per TiB of HugeTLB memory of this size.</summary>
    public long VmemmapBytesPerTiB => (long)((Int128)VmemmapBytesPerFolio * SavingsOptions.TiB / HugePageBytes);
}

public static class Savings
{
    /// <summary>Folios per write to nr_hugepages while growing the pool.</summary>
    public const long Batch = 4096;

    /// <summary>Runs the measurement. <paramref name="progress"/>, if given, is told each row.</summary>
    public static List<SavingsRow> Compute(SavingsOptions options, Action<SavingsRow>? progress = null)
    {
        var rows = new List<SavingsRow>();
        foreach (var arch in options.ConfigsOrDefault)
            foreach (var scheme in options.SchemesOrDefault)
                foreach (long size in arch.HugetlbSizes)
                {
                    if (options.Sizes is { } only && !only.Contains(size)) continue;
                    var row = Measure(arch, scheme, size, options.MemoryBytes);
                    rows.Add(row);
                    progress?.Invoke(row);
                }
        return rows;
    }

    /// <summary>The machine <see cref="Measure"/> boots for one row: room for the folios, one
    /// more for the alignment of the first, the memmap (1/64 of memory at 4K) and the kernel,
    /// rounded up to whole sections. Not validated: callers check it against the config first.</summary>
    public static MachineConfig MachineFor(ArchConfig arch, long size, long memoryBytes)
    {
        ArgumentNullException.ThrowIfNull(arch);
        long folios = Math.Max(1, memoryBytes / size);
        long need = (folios + 1) * size;
        long machineBytes = need + need / 32 + (1L << 30);
        machineBytes = (machineBytes + arch.SectionSize - 1) / arch.SectionSize * arch.SectionSize;
        return new MachineConfig(machineBytes, 1);
    }

    /// <summary>Boots one machine and measures one row.</summary>
    public static SavingsRow Measure(ArchConfig arch, HvoScheme scheme, long size, long memoryBytes)
    {
        long folios = Math.Max(1, memoryBytes / size);
        long machineBytes = MachineFor(arch, size, memoryBytes).MemoryBytes;
        var variant = new KernelVariant
        {
            Name = "savings",
            Hugetlb = new() { Hvo = scheme, HvoAllocatesHeadCopy = scheme == HvoScheme.OnePageKept, Arm64Hvo = arch.Arch == Arch.Arm64 },
            Arm64 = new() { VmemmapUpdate = arch.Arch == Arch.Arm64 ? VmemmapUpdate.StopMachine : VmemmapUpdate.InPlace },
        };
        var k = Kernel.Boot(arch, new MachineConfig(machineBytes, 1), variant);
        var h = k.Hugetlb.SizeToHstate(size) ?? throw new Mm.ModelBugException($"{arch.Name} has no {ArchConfig.FormatSize(size)} hstate");
        long before = k.Mem.Count(Mm.FrameOwner.Vmemmap);
        // Grow the pool in writes of at most Batch folios to nr_hugepages (each write is one
        // set_max_huge_pages: one batch of allocations, one hugetlb_vmemmap_optimize_folios).
        for (long done = 0; done < folios;)
        {
            long target = Math.Min(folios, done + Batch);
            var task = new LambdaTask("set_max_huge_pages", (kk, ctx) => kk.Hugetlb.SetMaxHugePages(ctx, h, target));
            if (!k.Sched.StartTask(0, task) || !k.Sched.RunToCompletionOrBlock(0, task, int.MaxValue))
                throw new Mm.ModelBugException($"savings: set_max_huge_pages({target}) did not run to completion");
            if (h.NrHugePages != target)
                throw new Mm.ModelBugException($"savings: {arch.Name} {machineBytes >> 20} MiB holds {h.NrHugePages} of {target} {ArchConfig.FormatSize(size)} folios");
            done = target;
            k.Mem.ClearChanged();
            k.Mem.Buddy.ClearTouched();
        }
        var first = h.FoliosByPfn()[0];
        long after = k.Mem.Count(Mm.FrameOwner.Vmemmap);
        long freed = before - after;
        if (freed % folios != 0)
            throw new Mm.ModelBugException($"savings: {freed} frames freed by {folios} folios is not the same for each");

        ulong end = k.Arch.PfnToPage(first.HeadPfn + first.NrPages);
        long vmemmapBytes = (long)(end - k.Arch.PfnToPage(first.HeadPfn));
        long kept = 0;
        if (vmemmapBytes >= arch.PageSize)
        {
            var frames = new HashSet<long?>(); // an unmapped page (null) counts once, as a frame would
            for (ulong va = k.Arch.PfnToPage(first.HeadPfn); va < end; va += (ulong)arch.PageSize)
                frames.Add(k.Mmu.FrameOf(va, out _));
            kept = frames.Count;
            if (kept + freed / folios != vmemmapBytes / arch.PageSize)
                throw new Mm.ModelBugException($"savings: {arch.Name} {ArchConfig.FormatSize(size)}: kept {kept} + freed {freed / folios} ≠ V = {vmemmapBytes / arch.PageSize}");
        }
        return new SavingsRow(arch.Name, scheme, size, arch.PageSize, folios, vmemmapBytes, kept, freed);
    }

    public static readonly string[] Columns =
        ["config", "scheme", "hugepage", "hugepage_bytes", "vmemmap_pages", "kept", "freed", "vmemmap_per_tib", "saved_per_tib", "folios"];

    /// <summary>The rows as text: aligned columns for people, or tab-separated raw numbers
    /// (<paramref name="tsv"/>). Deterministic; sizes in the text form are binary units.</summary>
    public static string Format(IReadOnlyList<SavingsRow> rows, bool tsv)
    {
        var table = new List<string[]> { Columns };
        foreach (var r in rows)
        {
            string v = r.VmemmapBytesPerFolio >= r.PageSize
                ? (r.VmemmapBytesPerFolio / r.PageSize).ToString(CultureInfo.InvariantCulture)
                : $"1/{r.PageSize / r.VmemmapBytesPerFolio}";
            string kept = r.VmemmapBytesPerFolio >= r.PageSize ? r.KeptPerFolio.ToString(CultureInfo.InvariantCulture) : v;
            table.Add(
            [
                r.Config,
                SchemeName(r.Scheme),
                ArchConfig.FormatSize(r.HugePageBytes),
                r.HugePageBytes.ToString(CultureInfo.InvariantCulture),
                v,
                kept,
                r.FreedPerFolio.ToString(CultureInfo.InvariantCulture),
                tsv ? r.VmemmapBytesPerTiB.ToString(CultureInfo.InvariantCulture) : Gib(r.VmemmapBytesPerTiB),
                tsv ? r.SavedBytesPerTiB.ToString(CultureInfo.InvariantCulture) : Gib(r.SavedBytesPerTiB),
                r.Folios.ToString(CultureInfo.InvariantCulture),
            ]);
        }
        var sb = new StringBuilder();
        if (tsv)
        {
            foreach (var line in table) sb.Append(string.Join('\t', line)).Append('\n');
            return sb.ToString();
        }
        var widths = Enumerable.Range(0, Columns.Length).Select(c => table.Max(l => l[c].Length)).ToArray();
        foreach (var line in table)
        {
            for (int c = 0; c < line.Length; c++)
            {
                bool number = c >= 3;
                string cell = number ? line[c].PadLeft(widths[c]) : line[c].PadRight(widths[c]);
                sb.Append(cell);
                if (c < line.Length - 1) sb.Append("  ");
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>The scheme as the snapshot names it: v5.18+ (one page kept) or v5.14 (two).</summary>
    public static string SchemeName(HvoScheme s) => s switch
    {
        HvoScheme.OnePageKept => "1-kept",
        HvoScheme.TwoPagesKept => "2-kept",
        _ => "off",
    };

    private static string Gib(long bytes) =>
        (bytes / (double)(1L << 30)).ToString("0.000", CultureInfo.InvariantCulture) + "G";
}
