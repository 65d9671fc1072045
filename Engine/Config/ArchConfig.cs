// Architecture geometry: every constant the kernel derives from page size and levels, in one place.
//
// Kernel sources: arch/x86/include/asm/pgtable_64_types.h, arch/x86/include/asm/sparsemem.h,
// arch/arm64/include/asm/pgtable-hwdef.h, arch/arm64/include/asm/sparsemem.h,
// Documentation/arch/arm64/hugetlbpage.rst, Documentation/mm/vmemmap_dedup.rst.
//
// Virtual layout (non-KASLR defaults, kernel v6.x):
// - x86-64: arch/x86/include/asm/page_64_types.h and pgtable_64_types.h: __PAGE_OFFSET_BASE_L4/L5,
//   __VMALLOC_BASE and VMALLOC_SIZE_TB (32 TiB / 12800 TiB), __VMEMMAP_BASE; the direct map and
//   vmemmap sizes are those of Documentation/arch/x86/x86_64/mm.rst (64 TiB / 1 TiB with 4 levels,
//   32 PiB / 0.5 PiB with 5).
// - arm64: arch/arm64/include/asm/memory.h and pgtable.h: PAGE_OFFSET = -(1 << VA_BITS), the
//   linear map is the lower half of the kernel VA space up to PAGE_END = -(1 << (VA_BITS - 1)),
//   MODULES_VADDR = PAGE_END with MODULES_VSIZE = 2 GiB, VMALLOC_START = MODULES_END,
//   VMEMMAP_END = -1 GiB, VMEMMAP_START = VMEMMAP_END - VMEMMAP_SIZE where VMEMMAP_SIZE covers the
//   linear map with struct pages, VMALLOC_END = VMEMMAP_START - 8 MiB (since b730b0f2b1fc moved
//   the fixmap above vmemmap; Documentation/arch/arm64/memory.rst, 4K/48-bit table).
//
// Departures from the kernel, on purpose:
// - Every range is half-open, [start, end): VmallocEnd is the first byte above the vmalloc
//   area on both architectures. arm64's VMALLOC_END is exclusive already; x86's VMALLOC_END is
//   the area's last byte, so the model's VmallocEnd is x86's VMALLOC_END + 1.
// - KASAN shadow, the kernel image, fixmap and PCI I/O are not modelled; the regions the model
//   maps (linear map, vmemmap, vmalloc) sit where the kernel puts them.
// - 52-bit VA (arm64 LPA2) is not modelled.
// - One node, one zone: NUMA placement is not modelled.
namespace PropertySuite.Engine.Config;

/// <summary>The instruction-set architecture of a modelled machine.</summary>
public enum Arch { X86_64, Arm64 }

/// <summary>
/// Page-table level of an entry, named as the kernel names it. With folded levels (arm64 2/3
/// levels) a level still exists for the model's geometry but has a single entry per parent.
/// </summary>
public enum PtLevel { Pte = 0, Pmd = 1, Pud = 2, P4d = 3, Pgd = 4 }

/// <summary>An impossible or unsupported configuration; the message names the value and rule.</summary>
public sealed class ConfigException(string message) : Exception(message);

/// <summary>
/// The geometry of one architecture, base page size and number of page-table levels, with every
/// derived constant. Immutable. Use <see cref="Create"/> or one of the named instances.
/// </summary>
public sealed class ArchConfig
{
    /// <summary>sizeof(struct page) on x86-64 and arm64 in normal configurations (vmemmap_dedup.rst).</summary>
    public const int StructPageSize = 64;
    /// <summary>sizeof(pte_t): page-table entries are 8 bytes on both 64-bit architectures.</summary>
    public const int PteSize = 8;
    /// <summary>HUGETLB_VMEMMAP_RESERVE_PAGES in the one-page scheme (v5.18 onwards).</summary>
    public const int HugetlbVmemmapReservePages = 1;

    public Arch Arch { get; }
    public int PageShift { get; }
    /// <summary>CONFIG_PGTABLE_LEVELS.</summary>
    public int Levels { get; }
    public int VaBits { get; }

    public long PageSize => 1L << PageShift;
    public int PtrsPerTableShift => PageShift - 3; // PAGE_SIZE / sizeof(pte_t) entries
    public int PtrsPerTable => 1 << PtrsPerTableShift;
    public int PmdShift => PageShift + PtrsPerTableShift;
    public int PudShift => PmdShift + PtrsPerTableShift;
    public int P4dShift => PudShift + PtrsPerTableShift;
    public long PmdSize => 1L << PmdShift;
    public long PudSize => 1L << PudShift;

    /// <summary>Shift of the root (PGD) level: the highest of the levels in use.</summary>
    public int PgdShift => PageShift + (Levels - 1) * PtrsPerTableShift;
    /// <summary>Entries in the root table: fewer than PtrsPerTable when VA bits do not fill it
    /// (arm64 16K with 48-bit VA has a two-entry level 0).</summary>
    public int PtrsPerPgd => 1 << (VaBits - PgdShift);

    /// <summary>The lowest level whose entries are used as the root: Pte + Levels - 1.</summary>
    public PtLevel TopLevel => (PtLevel)(Levels - 1);

    /// <summary>Struct pages described by one vmemmap page: PAGE_SIZE / sizeof(struct page).</summary>
    public int StructPagesPerVmemmapPage => (int)(PageSize / StructPageSize);

    /// <summary>SECTION_SIZE_BITS (arch sparsemem.h): 27 everywhere except arm64 64K (29).</summary>
    public int SectionSizeBits { get; }
    public long SectionSize => 1L << SectionSizeBits;
    public long PagesPerSection => 1L << (SectionSizeBits - PageShift);
    /// <summary>Bytes of vmemmap needed for one section: PAGES_PER_SECTION * sizeof(struct page).</summary>
    public long SectionVmemmapBytes => PagesPerSection * StructPageSize;

    /// <summary>Whether boot vmemmap is mapped with PMD blocks (vmemmap_populate_hugepages) rather
    /// than base pages: x86-64 with PSE and arm64 4K; arm64 16K/64K use base pages.</summary>
    public bool VmemmapMappedByPmd => Arch == Arch.X86_64 || PageShift == 12;

    /// <summary>arm64 CONT_PTES / CONT_PMDS: entries in a contiguous run; 0 on x86-64.</summary>
    public int ContPtes => Arch != Arch.Arm64 ? 0 : PageShift switch { 12 => 16, 14 => 128, _ => 32 };
    public int ContPmds => Arch != Arch.Arm64 ? 0 : PageShift switch { 12 => 16, 14 => 32, _ => 32 };
    public long ContPteSize => (long)ContPtes << PageShift;
    public long ContPmdSize => (long)ContPmds << PmdShift;
    /// <summary>The span of a contiguous run of leaves at <paramref name="level"/> (CONT_PTE_SIZE,
    /// CONT_PMD_SIZE), or 0 where the arch has no contiguous bit.</summary>
    public long ContSize(PtLevel level) => level switch
    {
        PtLevel.Pte => ContPteSize,
        PtLevel.Pmd => ContPmdSize,
        _ => 0,
    };

    /// <summary>MAX_PAGE_ORDER of the buddy allocator (arch default: 10 on 4K; on arm64 16K/64K
    /// the largest order that does not exceed the PMD size, as in arch/arm64/Kconfig).</summary>
    public int MaxPageOrder => PageShift switch { 12 => 10, 14 => 11, _ => 13 };

    /// <summary>First virtual address of the linear (direct) map.</summary>
    public ulong PageOffset { get; }
    /// <summary>Bytes of physical memory the linear map can cover: [PAGE_OFFSET, PAGE_END) on
    /// arm64, the direct-map region of mm.rst on x86-64. No machine may be larger.</summary>
    public long LinearMapSize { get; }
    /// <summary>VMEMMAP_START: the struct page of PFN p lives at VMEMMAP_START + p * 64.</summary>
    /// <summary>__va(PFN_PHYS(pfn)): the linear-map address of a frame.</summary>
    public ulong PfnToVirt(long pfn) => PageOffset + ((ulong)pfn << PageShift);
    /// <summary>pfn_to_page: the vmemmap address of the struct page of <paramref name="pfn"/>.</summary>
    public ulong PfnToPage(long pfn) => VmemmapStart + (ulong)pfn * StructPageSize;
    /// <summary>page_to_pfn.</summary>
    public long PageToPfn(ulong page) => (long)((page - VmemmapStart) / StructPageSize);

    public ulong VmemmapStart { get; }
    public ulong VmemmapEnd { get; }
    /// <summary>VMALLOC_START.</summary>
    public ulong VmallocStart { get; }
    /// <summary>The end of the vmalloc area, exclusive (see the file header).</summary>
    public ulong VmallocEnd { get; }

    /// <summary>HugeTLB page sizes the arch supports, ascending (hugetlbpage.rst, vmemmap_dedup.rst).</summary>
    public IReadOnlyList<long> HugetlbSizes { get; }

    /// <summary>The canonical name: e.g. x86_64-4k-l4, arm64-16k-l3.</summary>
    public string Name => $"{(Arch == Arch.X86_64 ? "x86_64" : "arm64")}-{PageSize / 1024}k-l{Levels}";

    private ArchConfig(Arch arch, int pageShift, int levels, int vaBits)
    {
        Arch = arch;
        PageShift = pageShift;
        Levels = levels;
        VaBits = vaBits;
        SectionSizeBits = arch == Arch.Arm64 && pageShift == 16 ? 29 : 27;
        if (arch == Arch.X86_64)
        {
            // __PAGE_OFFSET_BASE_L4/L5, __VMALLOC_BASE, __VMEMMAP_BASE (pgtable_64_types.h).
            PageOffset = levels == 5 ? 0xff11000000000000UL : 0xffff888000000000UL;
            LinearMapSize = levels == 5 ? 1L << 55 : 1L << 46;       // 32 PiB / 64 TiB (mm.rst)
            VmemmapStart = levels == 5 ? 0xffd4000000000000UL : 0xffffea0000000000UL;
            VmemmapEnd = VmemmapStart + (levels == 5 ? 1UL << 49 : 1UL << 40); // 0.5 PiB / 1 TiB (mm.rst)
            VmallocStart = levels == 5 ? 0xffa0000000000000UL : 0xffffc90000000000UL;
            ulong vmallocSizeTb = levels == 5 ? 12800UL : 32UL;       // VMALLOC_SIZE_TB
            VmallocEnd = VmallocStart + (vmallocSizeTb << 40);        // VMALLOC_END + 1
            HugetlbSizes = [PmdSize, PudSize];
        }
        else
        {
            // memory.h: PAGE_OFFSET = _PAGE_OFFSET(VA_BITS); PAGE_END = _PAGE_END(VA_BITS);
            // VMEMMAP_SIZE = (VMEMMAP_RANGE >> PAGE_SHIFT) * sizeof(struct page).
            PageOffset = unchecked(0UL - (1UL << vaBits));
            ulong pageEnd = unchecked(0UL - (1UL << (vaBits - 1)));
            LinearMapSize = (long)(pageEnd - PageOffset);
            ulong vmemmapSize = ((ulong)LinearMapSize >> pageShift) * StructPageSize;
            VmemmapEnd = unchecked(0UL - (1UL << 30));                // -SZ_1G
            VmemmapStart = VmemmapEnd - vmemmapSize;
            const ulong modulesVsize = 2UL << 30;                     // MODULES_VSIZE = SZ_2G
            VmallocStart = pageEnd + modulesVsize;                    // MODULES_END
            VmallocEnd = VmemmapStart - (8UL << 20);                  // VMALLOC_END
            var sizes = new List<long>();
            if (ContPtes > 0) sizes.Add(ContPteSize);
            sizes.Add(PmdSize);
            sizes.Add(ContPmdSize);
            if (pageShift == 12) sizes.Add(PudSize); // pud_sect_supported(): 4K granule only
            sizes.Sort();
            HugetlbSizes = sizes;
        }
    }

    /// <summary>
    /// Builds a configuration, refusing combinations the kernel does not support.
    /// </summary>
    /// <exception cref="ConfigException">With the offending value and the rule it breaks.</exception>
    public static ArchConfig Create(Arch arch, int pageSizeKiB, int levels)
    {
        int pageShift = pageSizeKiB switch
        {
            4 => 12,
            16 => 14,
            64 => 16,
            _ => throw new ConfigException($"page size {pageSizeKiB}K: base page size must be 4K, 16K or 64K"),
        };
        int vaBits;
        if (arch == Arch.X86_64)
        {
            if (pageShift != 12)
                throw new ConfigException($"x86_64 with {pageSizeKiB}K pages: x86-64 supports only 4K base pages");
            vaBits = levels switch
            {
                4 => 48,
                5 => 57,
                _ => throw new ConfigException($"x86_64 with {levels} levels: x86-64 long mode uses 4 or 5 page-table levels (48/57-bit VA)"),
            };
        }
        else
        {
            // arch/arm64/Kconfig: ARM64_VA_BITS choices per granule.
            vaBits = (pageShift, levels) switch
            {
                (12, 3) => 39,
                (12, 4) => 48,
                (14, 2) => 36,
                (14, 3) => 47,
                (14, 4) => 48,
                (16, 2) => 42,
                (16, 3) => 48,
                _ => throw new ConfigException(
                    $"arm64 {pageSizeKiB}K with {levels} levels: arch/arm64/Kconfig PGTABLE_LEVELS pairs 4K with 3 or 4 levels (39/48-bit VA), 16K with 2, 3 or 4 (36/47/48-bit), 64K with 2 or 3 (42/48-bit); 52-bit LPA2 is not modelled"),
            };
        }
        return new ArchConfig(arch, pageShift, levels, vaBits);
    }

    public static readonly ArchConfig X86_64_4K = Create(Arch.X86_64, 4, 4);
    public static readonly ArchConfig X86_64_4K_L5 = Create(Arch.X86_64, 4, 5);
    public static readonly ArchConfig Arm64_4K_L3 = Create(Arch.Arm64, 4, 3);
    public static readonly ArchConfig Arm64_4K = Create(Arch.Arm64, 4, 4);
    public static readonly ArchConfig Arm64_16K_L2 = Create(Arch.Arm64, 16, 2);
    public static readonly ArchConfig Arm64_16K_L3 = Create(Arch.Arm64, 16, 3);
    public static readonly ArchConfig Arm64_16K = Create(Arch.Arm64, 16, 4);
    public static readonly ArchConfig Arm64_64K_L2 = Create(Arch.Arm64, 64, 2);
    public static readonly ArchConfig Arm64_64K = Create(Arch.Arm64, 64, 3);

    /// <summary>Every supported combination, in a fixed order.</summary>
    public static IReadOnlyList<ArchConfig> All { get; } =
        [X86_64_4K, X86_64_4K_L5, Arm64_4K_L3, Arm64_4K, Arm64_16K_L2, Arm64_16K_L3, Arm64_16K, Arm64_64K_L2, Arm64_64K];

    /// <summary>Looks a configuration up by <see cref="Name"/>.</summary>
    /// <exception cref="ConfigException">Unknown name; the message lists the known ones.</exception>
    public static ArchConfig ByName(string name) =>
        All.FirstOrDefault(c => c.Name == name)
        ?? throw new ConfigException($"unknown config '{name}': known are {string.Join(", ", All.Select(c => c.Name))}");

    /// <summary>Shift of the entries at <paramref name="level"/>.</summary>
    public int LevelShift(PtLevel level) => PageShift + (int)level * PtrsPerTableShift;
    public long LevelSize(PtLevel level) => 1L << LevelShift(level);

    /// <summary>Entries in a table at <paramref name="level"/> (the root may be smaller).</summary>
    public int PtrsPerLevel(PtLevel level) => level == TopLevel ? PtrsPerPgd : PtrsPerTable;

    /// <summary>Whether a leaf (block) entry is architecturally allowed at <paramref name="level"/>.
    /// PTE leaves always; PMD blocks always; PUD blocks only on 4K granules (x86 PDPE1GB, arm64
    /// pud_sect_supported); never above.</summary>
    public bool LeafAllowed(PtLevel level) =>
        level == PtLevel.Pte || (level == PtLevel.Pmd && Levels >= 2)
        || (level == PtLevel.Pud && PageShift == 12 && Levels >= 3);

    /// <summary>Whether a HugeTLB size is supported on this configuration.</summary>
    public bool IsHugetlbSize(long size) => HugetlbSizes.Contains(size);

    public override string ToString() => Name;

    // ---- HugeTLB vmemmap geometry (mm/hugetlb_vmemmap.h) ----

    /// <summary>pages_per_huge_page(h).</summary>
    public long PagesPerHugePage(long hugeSize) => hugeSize >> PageShift;

    /// <summary>hugetlb_vmemmap_size(h) = pages_per_huge_page(h) * sizeof(struct page), in bytes.</summary>
    public long HugetlbVmemmapSize(long hugeSize) => PagesPerHugePage(hugeSize) * StructPageSize;

    /// <summary>hugetlb_vmemmap_optimizable_size(h): the vmemmap bytes HVO frees, i.e. the size
    /// minus the reserved page(s), clamped at 0 (0 when vmemmap is one page or less, e.g. the
    /// arm64 contiguous-PTE sizes). sizeof(struct page) is a power of two here.</summary>
    public long HugetlbVmemmapOptimizableSize(long hugeSize, int reservePages = HugetlbVmemmapReservePages)
    {
        long size = HugetlbVmemmapSize(hugeSize) - ((long)reservePages << PageShift);
        return size > 0 ? size : 0;
    }

    /// <summary>V: vmemmap pages per folio, or 0 when the folio's struct pages share a page with others.</summary>
    public long VmemmapPagesPerFolio(long hugeSize) => HugetlbVmemmapSize(hugeSize) >> PageShift;

    /// <summary>The order of a HugeTLB size (huge_page_order).</summary>
    public int HugePageOrder(long hugeSize) => System.Numerics.BitOperations.Log2((ulong)PagesPerHugePage(hugeSize));

    /// <summary>A size in the largest binary unit that divides it exactly: 4K, 2M, 768M, 1G;
    /// negative sizes (bad input being reported) keep their sign.</summary>
    public static string FormatSize(long bytes)
    {
        if (bytes < 0) return bytes == long.MinValue ? "-8E" : "-" + FormatSize(-bytes);
        string[] units = ["", "K", "M", "G", "T", "P", "E"];
        int u = 0;
        while (u < units.Length - 1 && bytes >= 1024 && bytes % 1024 == 0) { bytes /= 1024; u++; }
        return bytes.ToString(System.Globalization.CultureInfo.InvariantCulture) + units[u];
    }

    /// <summary>Parses sizes like 4K, 2M, 1G, 64T (powers of 1024). Returns false on bad input.</summary>
    public static bool TryParseSize(string text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrEmpty(text) || text.Length > 24) return false;
        int shift = char.ToUpperInvariant(text[^1]) switch { 'K' => 10, 'M' => 20, 'G' => 30, 'T' => 40, 'P' => 50, _ => 0 };
        string digits = shift == 0 ? text : text[..^1];
        if (digits.Length == 0 || !digits.All(char.IsAsciiDigit)) return false;
        if (!long.TryParse(digits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n)) return false;
        if (n > (long.MaxValue >> shift)) return false;
        bytes = n << shift;
        return true;
    }
}
