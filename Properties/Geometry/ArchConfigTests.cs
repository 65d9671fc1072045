using PropertySuite.Properties.Infra;
// The geometry the kernel documents, checked against ArchConfig.
//
// The expected rows are literals from Documentation/mm/vmemmap_dedup.rst, Documentation/arch/arm64/hugetlbpage.rst and memory.rst (and, for the virtual
// layout, from Documentation/arch/x86/x86_64/mm.rst and Documentation/arch/arm64/memory.rst);
// every actual value is computed from ArchConfig, never from the literal it is compared with.
using System.Globalization;
using PropertySuite.Engine.Config;

namespace PropertySuite.Properties.Geometry;

[Trait("Category", "geometry")]
public class ArchConfigTests
{
    private static long Size(string text) =>
        ArchConfig.TryParseSize(text, out long bytes) ? bytes : throw new ArgumentException($"bad size literal {text}");

    private static IEnumerable<ArchConfig> ConfigsOf(string arch, int granuleKiB) =>
        ArchConfig.All.Where(c => c.Arch == (arch == "x86-64" ? Arch.X86_64 : Arch.Arm64) && c.PageSize == granuleKiB * 1024L);

    // ---------------------------------------------------------------------------------------
    // vmemmap_dedup.rst: vmemmap pages per HugeTLB page and how many HVO frees
    // ---------------------------------------------------------------------------------------

    /// <summary>The HVO savings rows of vmemmap_dedup.rst, one per line: arch / granule, huge
    /// size, base pages, vmemmap bytes, V (pages, possibly a fraction), freed with one page kept
    /// (v5.18+), freed with two pages kept (v5.14-v5.17).</summary>
    public static TheoryData<string, int, string, long, string, string, long, long> Section14 => new()
    {
        { "x86-64", 4, "2M", 512, "32K", "8", 7, 6 },
        { "x86-64", 4, "1G", 262144, "16M", "4096", 4095, 4094 },
        { "arm64", 4, "64K", 16, "1K", "0.25", 0, 0 },
        { "arm64", 4, "2M", 512, "32K", "8", 7, 6 },
        { "arm64", 4, "32M", 8192, "512K", "128", 127, 126 },
        { "arm64", 4, "1G", 262144, "16M", "4096", 4095, 4094 },
        { "arm64", 16, "2M", 128, "8K", "0.5", 0, 0 },
        { "arm64", 16, "32M", 2048, "128K", "8", 7, 6 },
        { "arm64", 16, "1G", 65536, "4M", "256", 255, 254 },
        { "arm64", 64, "2M", 32, "2K", "1/32", 0, 0 },
        { "arm64", 64, "512M", 8192, "512K", "8", 7, 6 },
        { "arm64", 64, "16G", 262144, "16M", "256", 255, 254 },
    };

    private static double ParseFraction(string v)
    {
        int slash = v.IndexOf('/');
        return slash < 0
            ? double.Parse(v, CultureInfo.InvariantCulture)
            : double.Parse(v[..slash], CultureInfo.InvariantCulture) / double.Parse(v[(slash + 1)..], CultureInfo.InvariantCulture);
    }

    [Theory]
    [MemberData(nameof(Section14))]
    public void Section14RowIsDerivedFromTheConfig(string arch, int granuleKiB, string huge, long basePages,
        string vmemmapBytes, string vPages, long freedOneKept, long freedTwoKept)
    {
        var configs = ConfigsOf(arch, granuleKiB).ToList();
        Assert.NotEmpty(configs);
        long hugeSize = Size(huge);
        foreach (var c in configs)
        {
            string where = $"{c.Name} {huge}";
            Assert.True(c.IsHugetlbSize(hugeSize), $"{where}: not a supported HugeTLB size");
            Assert.True(basePages == c.PagesPerHugePage(hugeSize), $"{where}: pages_per_huge_page");
            Assert.True(Size(vmemmapBytes) == c.HugetlbVmemmapSize(hugeSize), $"{where}: hugetlb_vmemmap_size");
            // V may be a fraction: the folio's struct pages then share a vmemmap page with others.
            double v = (double)c.HugetlbVmemmapSize(hugeSize) / c.PageSize;
            Assert.True(ParseFraction(vPages) == v, $"{where}: V = {v}, table says {vPages}");
            Assert.True(freedOneKept == c.HugetlbVmemmapOptimizableSize(hugeSize, reservePages: 1) >> c.PageShift,
                $"{where}: freed with one page kept");
            Assert.True(freedTwoKept == c.HugetlbVmemmapOptimizableSize(hugeSize, reservePages: 2) >> c.PageShift,
                $"{where}: freed with two pages kept");
        }
    }

    [Fact]
    public void Section14ListsExactlyTheSupportedHugetlbSizesOfEveryConfig()
    {
        foreach (var c in ArchConfig.All)
        {
            string arch = c.Arch == Arch.X86_64 ? "x86-64" : "arm64";
            var tabled = Section14
                .Select(row => ((string)row[0], (int)row[1], Size((string)row[2])))
                .Where(r => r.Item1 == arch && r.Item2 * 1024L == c.PageSize)
                .Select(r => r.Item3)
                .Order()
                .ToList();
            Assert.True(tabled.SequenceEqual(c.HugetlbSizes),
                $"{c.Name}: table has [{string.Join(", ", tabled.Select(ArchConfig.FormatSize))}], config supports [{string.Join(", ", c.HugetlbSizes.Select(ArchConfig.FormatSize))}]");
        }
    }

    /// <summary>The rule of vmemmap_dedup.rst: a PMD-sized page needs sizeof(struct page) /
    /// sizeof(pte_t) = 8 vmemmap pages on every granule, and a PUD-sized page (4K only) needs
    /// (PAGE_SIZE / 8) * 8, numerically PAGE_SIZE, pages.</summary>
    [Fact]
    public void PmdHugePagesNeedEightVmemmapPagesAndPudHugePagesPageSizeMany()
    {
        foreach (var c in ArchConfig.All)
        {
            Assert.Equal(ArchConfig.StructPageSize / ArchConfig.PteSize, c.VmemmapPagesPerFolio(c.PmdSize));
            if (c.IsHugetlbSize(c.PudSize))
                Assert.Equal(c.PageSize, c.VmemmapPagesPerFolio(c.PudSize));
        }
    }

    /// <summary>The savings figures of vmemmap_dedup.rst: 1 TiB of 2 MiB pages frees 14 GiB (12 GiB with two
    /// pages kept); 1 TiB of 1 GiB pages frees 16 GiB - 4 MiB (the old scheme 4 MiB less).</summary>
    [Theory]
    [InlineData("2M", 1, "14G")]
    [InlineData("2M", 2, "12G")]
    [InlineData("1G", 1, "16380M")]
    [InlineData("1G", 2, "16376M")]
    public void SavingsPerTerabyteOnX86(string huge, int reservePages, string expected)
    {
        var c = ArchConfig.X86_64_4K;
        long hugeSize = Size(huge);
        long folios = (1L << 40) / hugeSize;
        Assert.Equal(Size(expected), folios * c.HugetlbVmemmapOptimizableSize(hugeSize, reservePages));
    }

    // ---------------------------------------------------------------------------------------
    // Page-table geometry, sections, vmemmap mapping, HugeTLB sizes
    // ---------------------------------------------------------------------------------------

    /// <summary>One configuration's geometry as the kernel documents it.</summary>
    public sealed record GeometryRow(
        string Name, int VaBits, int EntriesPerTable, int EntriesInRoot, string Pmd, string Pud,
        int ContPtes, string ContPte, int ContPmds, string ContPmd, string Section, long PagesPerSection,
        string SectionVmemmap, bool VmemmapByPmd, string HugetlbSizes, string RootEntryMaps, int MaxOrder)
    {
        public override string ToString() => Name;
    }

    /// <summary>x86-64 and arm64: entries per table, PMD/PUD sizes, CONT_PTE and
    /// CONT_PMD (count and size), section size and pages, vmemmap per section and how it is
    /// mapped, HugeTLB sizes, what one root entry maps, MAX_PAGE_ORDER (arch/arm64/Kconfig
    /// ARCH_FORCE_MAX_ORDER: the PMD size on 16K/64K). "-" marks what the arch does not have.</summary>
    private static readonly GeometryRow[] GeometryRows =
    [
        new("x86_64-4k-l4", 48, 512, 512, "2M", "1G", 0, "-", 0, "-", "128M", 32768, "2M", true, "2M 1G", "512G", 10),
        new("x86_64-4k-l5", 57, 512, 512, "2M", "1G", 0, "-", 0, "-", "128M", 32768, "2M", true, "2M 1G", "256T", 10),
        new("arm64-4k-l3", 39, 512, 512, "2M", "1G", 16, "64K", 16, "32M", "128M", 32768, "2M", true, "64K 2M 32M 1G", "1G", 10),
        new("arm64-4k-l4", 48, 512, 512, "2M", "1G", 16, "64K", 16, "32M", "128M", 32768, "2M", true, "64K 2M 32M 1G", "512G", 10),
        new("arm64-16k-l2", 36, 2048, 2048, "32M", "64G", 128, "2M", 32, "1G", "128M", 8192, "512K", false, "2M 32M 1G", "32M", 11),
        new("arm64-16k-l3", 47, 2048, 2048, "32M", "64G", 128, "2M", 32, "1G", "128M", 8192, "512K", false, "2M 32M 1G", "64G", 11),
        new("arm64-16k-l4", 48, 2048, 2, "32M", "64G", 128, "2M", 32, "1G", "128M", 8192, "512K", false, "2M 32M 1G", "128T", 11),
        new("arm64-64k-l2", 42, 8192, 8192, "512M", "4T", 32, "2M", 32, "16G", "512M", 8192, "512K", false, "2M 512M 16G", "512M", 13),
        new("arm64-64k-l3", 48, 8192, 64, "512M", "4T", 32, "2M", 32, "16G", "512M", 8192, "512K", false, "2M 512M 16G", "4T", 13),
    ];

    public static TheoryData<string> GeometryNames => new(GeometryRows.Select(r => r.Name));

    [Fact]
    public void GeometryTableCoversEverySupportedConfig()
    {
        Assert.Equal(ArchConfig.All.Select(c => c.Name), GeometryRows.Select(r => r.Name));
    }

    [Theory]
    [MemberData(nameof(GeometryNames))]
    public void GeometryRowIsDerivedFromTheConfig(string name)
    {
        var row = GeometryRows.Single(r => r.Name == name);
        var c = ArchConfig.ByName(name);
        var actual = new GeometryRow(
            c.Name, c.VaBits, c.PtrsPerTable, c.PtrsPerLevel(c.TopLevel),
            ArchConfig.FormatSize(c.PmdSize), ArchConfig.FormatSize(c.PudSize),
            c.ContPtes, c.ContPtes == 0 ? "-" : ArchConfig.FormatSize(c.ContPteSize),
            c.ContPmds, c.ContPmds == 0 ? "-" : ArchConfig.FormatSize(c.ContPmdSize),
            ArchConfig.FormatSize(c.SectionSize), c.PagesPerSection, ArchConfig.FormatSize(c.SectionVmemmapBytes),
            c.VmemmapMappedByPmd, string.Join(" ", c.HugetlbSizes.Select(ArchConfig.FormatSize)),
            ArchConfig.FormatSize(c.LevelSize(c.TopLevel)), c.MaxPageOrder);
        Assert.Equal(row, actual);
    }

    [Theory]
    [MemberData(nameof(AllConfigs))]
    public void DerivedConstantsAgreeWithEachOther(string name)
    {
        var c = ArchConfig.ByName(name);
        Assert.Equal(c.PageSize / ArchConfig.PteSize, c.PtrsPerTable);
        Assert.Equal(c.PageSize / ArchConfig.StructPageSize, c.StructPagesPerVmemmapPage);
        Assert.Equal(c.PageSize * c.PtrsPerTable, c.PmdSize);
        Assert.Equal(c.PmdSize * c.PtrsPerTable, c.PudSize);
        // The root covers exactly the VA space: PTRS_PER_PGD = 1 << (VA_BITS - PGDIR_SHIFT).
        Assert.Equal(1L << c.VaBits, c.LevelSize(c.TopLevel) * c.PtrsPerLevel(c.TopLevel));
        // A whole section's memmap is a whole number of vmemmap pages, and of PMD blocks when
        // vmemmap is PMD-mapped (sparsemem.h: "otherwise PMD based huge page entries could not
        // be created for vmemmap mappings").
        Assert.Equal(0, c.SectionVmemmapBytes % c.PageSize);
        if (c.VmemmapMappedByPmd) Assert.Equal(0, c.SectionVmemmapBytes % c.PmdSize);
        // A section holds at least one MAX_PAGE_ORDER block (the 64K sparsemem.h comment).
        Assert.True(c.PagesPerSection >= 1L << c.MaxPageOrder);
        // arm64 ARCH_FORCE_MAX_ORDER on 16K/64K: the largest buddy block is exactly a PMD
        // ("the maximum size is limited to PMD size"); 4K keeps the generic order 10 (4 MiB).
        if (c.PageShift > 12) Assert.Equal(c.PmdSize, c.PageSize << c.MaxPageOrder);
        else Assert.Equal(10, c.MaxPageOrder);
        // Leaves: PTE and PMD everywhere; PUD blocks only on 4K granules with a PUD level.
        Assert.True(c.LeafAllowed(PtLevel.Pte));
        Assert.True(c.LeafAllowed(PtLevel.Pmd));
        Assert.Equal(c.PageShift == 12 && c.Levels >= 3, c.LeafAllowed(PtLevel.Pud));
        Assert.False(c.LeafAllowed(PtLevel.P4d));
        // Every HugeTLB size is a power of two multiple of the base page, at least the CONT_PTE size.
        foreach (long s in c.HugetlbSizes)
        {
            Assert.True(long.IsPow2(s) && s > c.PageSize, $"{c.Name}: {ArchConfig.FormatSize(s)}");
            Assert.Equal(s, c.PageSize << c.HugePageOrder(s));
        }
    }

    public static TheoryData<string> AllConfigs => new(ArchConfig.All.Select(c => c.Name));

    // ---------------------------------------------------------------------------------------
    // Virtual layout
    // ---------------------------------------------------------------------------------------

    /// <summary>Region boundaries as the kernel documents them (inclusive last bytes):
    /// Documentation/arch/x86/x86_64/mm.rst (4- and 5-level tables) and
    /// Documentation/arch/arm64/memory.rst (4K pages, 4 levels, 48-bit; the 2025 update after
    /// the fixmap and PCI I/O moved above vmemmap).</summary>
    [Theory]
    [InlineData("x86_64-4k-l4", 0xffff888000000000UL, "64T", 0xffffc90000000000UL, 0xffffe8ffffffffffUL, 0xffffea0000000000UL, 0xffffeb0000000000UL)]
    [InlineData("x86_64-4k-l5", 0xff11000000000000UL, "32P", 0xffa0000000000000UL, 0xffd1ffffffffffffUL, 0xffd4000000000000UL, 0xffd6000000000000UL)]
    [InlineData("arm64-4k-l4", 0xffff000000000000UL, "128T", 0xffff800080000000UL, 0xfffffdffbf7fffffUL, 0xfffffdffc0000000UL, 0xffffffffc0000000UL)]
    public void LayoutMatchesTheKernelDocumentation(string name, ulong pageOffset, string linear, ulong vmallocStart, ulong vmallocLast, ulong vmemmapStart, ulong vmemmapEnd)
    {
        var c = ArchConfig.ByName(name);
        Assert.Equal(pageOffset, c.PageOffset);
        Assert.Equal(Size(linear), c.LinearMapSize);
        Assert.Equal(vmallocStart, c.VmallocStart);
        Assert.Equal(vmallocLast + 1, c.VmallocEnd);
        Assert.Equal(vmemmapStart, c.VmemmapStart);
        Assert.Equal(vmemmapEnd, c.VmemmapEnd);
    }

    [Theory]
    [MemberData(nameof(AllConfigs))]
    public void RegionsAreDisjointInsideTheKernelHalfAndVmemmapCoversTheLinearMap(string name)
    {
        var c = ArchConfig.ByName(name);
        ulong kernelBase = ~((1UL << c.VaBits) - 1);
        Assert.True(c.PageOffset >= kernelBase, "linear map inside the kernel VA space");
        ulong linearEnd = c.PageOffset + (ulong)c.LinearMapSize;
        var regions = new[] { ("linear", c.PageOffset, linearEnd), ("vmalloc", c.VmallocStart, c.VmallocEnd), ("vmemmap", c.VmemmapStart, c.VmemmapEnd) }
            .OrderBy(r => r.Item2).ToList();
        for (int i = 1; i < regions.Count; i++)
            Assert.True(regions[i - 1].Item3 <= regions[i].Item2, $"{regions[i - 1].Item1} overlaps {regions[i].Item1}");
        Assert.True(c.VmemmapEnd - c.VmemmapStart >= (ulong)(c.LinearMapSize / c.PageSize) * ArchConfig.StructPageSize,
            "vmemmap holds a struct page for every frame the linear map can cover");
        // The struct page of every PFN the largest machine can have lies inside vmemmap.
        long maxPfns = Math.Min(c.LinearMapSize, MachineConfig.MaxMemoryBytes) / c.PageSize;
        Assert.True(c.VmemmapStart + (ulong)maxPfns * ArchConfig.StructPageSize <= c.VmemmapEnd);
        // Linear map and vmemmap regions start on a PMD boundary (boot maps them with blocks).
        Assert.Equal(0UL, c.PageOffset % (ulong)c.PmdSize);
        Assert.Equal(0UL, c.VmemmapStart % (ulong)c.PageSize);
    }

    // ---------------------------------------------------------------------------------------
    // Refusals: impossible combinations name the value and the rule
    // ---------------------------------------------------------------------------------------

    [Theory]
    [InlineData(Arch.X86_64, 16, 4, "16K", "only 4K")]
    [InlineData(Arch.X86_64, 64, 4, "64K", "only 4K")]
    [InlineData(Arch.X86_64, 4, 3, "3 levels", "4 or 5")]
    [InlineData(Arch.X86_64, 4, 2, "2 levels", "4 or 5")]
    [InlineData(Arch.Arm64, 8, 3, "8K", "4K, 16K or 64K")]
    [InlineData(Arch.Arm64, 0, 3, "0K", "4K, 16K or 64K")]
    [InlineData(Arch.Arm64, 4, 2, "4K with 2 levels", "PGTABLE_LEVELS")]
    [InlineData(Arch.Arm64, 4, 5, "4K with 5 levels", "LPA2 is not modelled")]
    [InlineData(Arch.Arm64, 16, 5, "16K with 5 levels", "PGTABLE_LEVELS")]
    [InlineData(Arch.Arm64, 64, 4, "64K with 4 levels", "64K with 2 or 3")]
    [InlineData(Arch.Arm64, 64, 1, "64K with 1 levels", "PGTABLE_LEVELS")]
    public void ImpossibleArchCombinationIsRefusedNamingValueAndRule(Arch arch, int pageKiB, int levels, string value, string rule)
    {
        var e = Assert.Throws<ConfigException>(() => ArchConfig.Create(arch, pageKiB, levels));
        Assert.Contains(value, e.Message);
        Assert.Contains(rule, e.Message);
    }

    [Fact]
    public void UnknownConfigNameIsRefusedListingTheKnownOnes()
    {
        var e = Assert.Throws<ConfigException>(() => ArchConfig.ByName("arm64-8k-l3"));
        Assert.Contains("'arm64-8k-l3'", e.Message);
        foreach (var c in ArchConfig.All) Assert.Contains(c.Name, e.Message);
    }

    [Theory]
    [MemberData(nameof(AllConfigs))]
    public void CreateRoundTripsThroughTheName(string name)
    {
        var c = ArchConfig.ByName(name);
        var again = ArchConfig.Create(c.Arch, (int)(c.PageSize / 1024), c.Levels);
        Assert.Equal(c.Name, again.Name);
        Assert.Equal(c.VaBits, again.VaBits);
    }

    [Theory]
    [InlineData("4K", 4096L)]
    [InlineData("2M", 2L << 20)]
    [InlineData("16G", 16L << 30)]
    [InlineData("64T", 64L << 40)]
    [InlineData("4096", 4096L)]
    public void SizesParseAndFormatBackToTheSameText(string text, long bytes)
    {
        Assert.True(ArchConfig.TryParseSize(text, out long parsed));
        Assert.Equal(bytes, parsed);
        Assert.Equal(text == "4096" ? "4K" : text, ArchConfig.FormatSize(parsed));
    }

    [Theory]
    [InlineData("")]
    [InlineData("K")]
    [InlineData("-4K")]
    [InlineData("4X")]
    [InlineData("1.5G")]
    [InlineData("99999999999999999999P")]
    [InlineData("9000000P")]
    public void MalformedOrOverflowingSizesAreRejected(string text)
    {
        Assert.False(ArchConfig.TryParseSize(text, out _));
    }

    /// <summary>The relations between a configuration's address translations and sizes hold for
    /// any PFN its linear map covers and any size: pfn_to_page and page_to_pfn are inverse, the
    /// linear-map address of a PFN is inside the linear map, and a size prints and parses back.</summary>
    [PsProperty]
    public void TranslationsAreInverseAndSizesRoundTrip(byte config, uint pfnSeed, ushort pages)
    {
        var a = ArchConfig.All[config % ArchConfig.All.Count];
        long pfn = pfnSeed % (a.LinearMapSize >> a.PageShift);
        Assert.Equal(pfn, a.PageToPfn(a.PfnToPage(pfn)));
        ulong va = a.PfnToVirt(pfn);
        Assert.True(va >= a.PageOffset && va - a.PageOffset < (ulong)a.LinearMapSize, $"{a.Name}: pfn {pfn} maps at {va:x}, outside the linear map");
        long bytes = (1L + pages) * a.PageSize;
        Assert.True(ArchConfig.TryParseSize(ArchConfig.FormatSize(bytes), out long back) && back == bytes, $"{a.Name}: {bytes} prints as {ArchConfig.FormatSize(bytes)}");
    }
}
