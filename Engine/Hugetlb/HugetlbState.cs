// The HugeTLB subsystem's global state (mm/hugetlb.c hstates[], mm/hugetlb_vmemmap.c
// vmemmap_optimize_enabled and the Kconfig that decides whether HVO exists at all), created at
// boot by Kernel.OnBooted (hugetlb_init: one hstate per size the architecture supports).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine.Hugetlb;

/// <summary>A value an iterator hands back to its caller (kernel functions return values;
/// C# iterators cannot).</summary>
public sealed class Ret<T>
{
    public T Value = default!;
    public Ret() { }
    public Ret(T initial) => Value = initial;
}

/// <summary>hstates[] and the HVO switches of one kernel.</summary>
public sealed class HugetlbState
{
    private readonly Hstate[] _hstates;

    internal HugetlbState(Kernel k)
    {
        var v = k.Variant;
        Scheme = v.Hvo;
        // ARCH_WANT_OPTIMIZE_HUGETLB_VMEMMAP: x86-64 since v5.14; arm64 only v6.1-v6.2 (Arm64Hvo).
        ArchWantsHvo = k.Arch.Arch == Arch.X86_64 || v.Arm64Hvo;
        // HUGETLB_VMEMMAP_RESERVE_PAGES: 2 in v5.14-v5.17, 1 since v5.18.
        ReservePages = Scheme == HvoScheme.TwoPagesKept ? 2 : ArchConfig.HugetlbVmemmapReservePages;
        HvoConfigured = ArchWantsHvo && Scheme != HvoScheme.Off;
        VmemmapOptimizeEnabled = HvoConfigured; // hugetlb_free_vmemmap= default on
        _hstates = k.Arch.HugetlbSizes.Select(s => new Hstate(k.Arch, s, ReservePages)).ToArray();
    }

    /// <summary>Every hstate, smallest size first (hugetlb_add_hstate order is not modelled).</summary>
    public IReadOnlyList<Hstate> Hstates => _hstates;

    /// <summary>The HVO scheme of the variant.</summary>
    public HvoScheme Scheme { get; }
    /// <summary>The architecture selects ARCH_WANT_OPTIMIZE_HUGETLB_VMEMMAP.</summary>
    public bool ArchWantsHvo { get; }
    /// <summary>CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP is built and hugetlb_free_vmemmap is not off.</summary>
    public bool HvoConfigured { get; }
    /// <summary>Vmemmap pages kept per optimized folio (HUGETLB_VMEMMAP_RESERVE_PAGES).</summary>
    public int ReservePages { get; }

    /// <summary>vmemmap_optimize_enabled: the vm.hugetlb_optimize_vmemmap sysctl. It affects only
    /// folios optimized later; already optimized folios stay so.</summary>
    public bool VmemmapOptimizeEnabled { get; internal set; }

    /// <summary>size_to_hstate(), or null when the architecture has no such HugeTLB size.</summary>
    public Hstate? SizeToHstate(long size)
    {
        foreach (var h in _hstates) if (h.Size == size) return h;
        return null;
    }

    /// <summary>Frames held by HugeTLB folios according to the hstates' folio records.</summary>
    public long PagesInFolios
    {
        get
        {
            long n = 0;
            foreach (var h in _hstates) n += h.FolioCount * h.PagesPerHugePage;
            return n;
        }
    }

    /// <summary>Every folio of every hstate, sorted by head PFN.</summary>
    public List<HugetlbFolio> AllFoliosByPfn()
    {
        var l = new List<HugetlbFolio>();
        foreach (var h in _hstates) l.AddRange(h.Folios);
        l.Sort((a, b) => a.HeadPfn.CompareTo(b.HeadPfn));
        return l;
    }
}
