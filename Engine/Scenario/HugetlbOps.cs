// HugeTLB operations: pool size (nr_hugepages), allocating a folio for a fault and freeing it,
// dissolving, memory failure on a subpage, flush_dcache_page on a subpage, the
// vm.hugetlb_optimize_vmemmap knob. Every one is a task, so `start` interleaves it with others.
//
//   hugetlb_pool 2M 4              echo 4 > .../hugepages-2048kB/nr_hugepages
//   f1 = hugetlb_alloc 2M          a fault takes a folio (a surplus one if the pool is empty)
//   hugetlb_free f1                its last reference goes (free_huge_folio)
//   dissolve f1                    dissolve_free_hugetlb_folio (EBUSY while in use)
//   memory_failure f1 130          memory_failure(pfn of subpage 130)
//   flush_dcache_page f1 64        flush_dcache_page(subpage 64)
//   hvo_knob off                   echo 0 > /proc/sys/vm/hugetlb_optimize_vmemmap
//
// A size the configuration has no hstate for, or a handle whose folio has gone back to the buddy,
// makes the operation a no-op.
using System.Globalization;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Scenario;

/// <summary>Shared helpers of the HugeTLB operations.</summary>
internal static class HugetlbOpText
{
    /// <summary>Largest nr_hugepages an operation may ask for: every folio is a few dozen steps
    /// (thousands for a gigantic one), and one operation runs at most a million steps.</summary>
    public const long MaxPoolCount = 128;
    /// <summary>Sizes a shrink tries, smallest first: the PMD size of every base page size
    /// (2M with 4K pages, 32M with 16K, 512M with 64K). Each is a HugeTLB size of its granule
    /// whose vmemmap HVO can optimize; 2M alone would not be on 16K and 64K, where it is a
    /// contiguous-PTE size too small to free a vmemmap page. A size the scenario's configuration
    /// lacks makes the operation a no-op, and the shrinker drops that candidate.</summary>
    public static readonly long[] ShrinkSizes = [.. ArchConfig.All.Select(a => a.PmdSize).Distinct().Order()];

    public static IEnumerable<long> ShrinkSize(long size) => ShrinkSizes.Where(s => s < size);

    public static IEnumerable<long> ShrinkIndex(long index)
    {
        if (index != 0) yield return 0;
        if (index > 1) yield return index / 2;
    }

    /// <summary>`on` or `off`.</summary>
    public static bool OnOff(LineReader r)
    {
        int col = r.Column;
        string w = r.Word("on or off");
        return w switch
        {
            "on" => true,
            "off" => false,
            _ => throw new ReproParseException(r.LineNo, col, $"'{w}': expected on or off"),
        };
    }

    public static bool TryFolio(RunContext rc, string handle, out HugetlbFolio folio) =>
        rc.TryGet(handle, out folio) && folio.State != FolioState.Freed;
}

/// <summary>`hugetlb_pool 2M 4`: set_max_huge_pages.</summary>
public sealed record HugetlbPoolOp(long Size, long Count) : Op
{
    public override string Verb => "hugetlb_pool";
    public override string Args() => $"{ArchConfig.FormatSize(Size)} {Count.ToString(CultureInfo.InvariantCulture)}";

    public override KernelTask? CreateTask(RunContext rc)
    {
        var h = rc.Kernel.Hugetlb.SizeToHstate(Size);
        return h is null ? null : new LambdaTask(ToString(), (k, ctx) => k.Hugetlb.SetMaxHugePages(ctx, h, Count));
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Count > 1) yield return this with { Count = 1 };
        if (Count > 2) yield return this with { Count = Count / 2 };
        if (Count > 0) yield return this with { Count = 0 };
        foreach (long size in HugetlbOpText.ShrinkSize(Size)) yield return this with { Size = size };
    }
}

/// <summary>`f1 = hugetlb_alloc 2M`: alloc_hugetlb_folio for a fault; binds the folio as soon as it exists.</summary>
public sealed record HugetlbAllocOp(long Size) : Op
{
    public override string Verb => "hugetlb_alloc";
    public override string Args() => ArchConfig.FormatSize(Size);

    public override KernelTask? CreateTask(RunContext rc)
    {
        var h = rc.Kernel.Hugetlb.SizeToHstate(Size);
        if (h is null) return null;
        return new LambdaTask(ToString(), (k, ctx) =>
            k.Hugetlb.AllocHugetlbFolio(ctx, h, new Ret<HugetlbFolio?>(), f => rc.BindHandle(Bind, f)));
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        foreach (long size in HugetlbOpText.ShrinkSize(Size)) yield return this with { Size = size };
    }
}

/// <summary>`hugetlb_free f1`: the user drops the reference the fault gave it, the last one
/// (folio_put → free_huge_folio). A no-op before the fault has returned or after the drop.</summary>
public sealed record HugetlbFreeOp(string Folio) : Op
{
    public override string Verb => "hugetlb_free";
    public override string Args() => Folio;
    public override IEnumerable<string> Uses => [Folio];

    public override KernelTask? CreateTask(RunContext rc)
    {
        if (!HugetlbOpText.TryFolio(rc, Folio, out var f) || f.State != FolioState.Active || !f.UserReference) return null;
        f.UserReference = false; // one put per reference, even while the put is still running
        return new LambdaTask(ToString(), (k, ctx) => k.Hugetlb.FreeHugeFolio(ctx, f));
    }
}

/// <summary>`dissolve f1`: dissolve_free_hugetlb_folio.</summary>
public sealed record DissolveOp(string Folio) : Op
{
    public override string Verb => "dissolve";
    public override string Args() => Folio;
    public override IEnumerable<string> Uses => [Folio];

    public override KernelTask? CreateTask(RunContext rc)
    {
        if (!HugetlbOpText.TryFolio(rc, Folio, out var f)) return null;
        return new LambdaTask(ToString(), (k, ctx) => k.Hugetlb.DissolveFreeHugetlbFolio(ctx, f, new Ret<Errno>()));
    }
}

/// <summary>`memory_failure f1 130`: memory_failure on subpage 130 of the folio (modulo its size).</summary>
public sealed record MemoryFailureOp(string Folio, long Index) : Op
{
    public override string Verb => "memory_failure";
    public override string Args() => $"{Folio} {Index.ToString(CultureInfo.InvariantCulture)}";
    public override IEnumerable<string> Uses => [Folio];

    public override KernelTask? CreateTask(RunContext rc)
    {
        if (!HugetlbOpText.TryFolio(rc, Folio, out var f)) return null;
        long pfn = f.HeadPfn + Index % f.NrPages;
        return new LambdaTask(ToString(), (k, ctx) => k.Hwpoison.MemoryFailure(ctx, pfn, new Ret<Errno>()));
    }

    public override IEnumerable<Op> ShrinkArgs() => HugetlbOpText.ShrinkIndex(Index).Select(i => this with { Index = i });
}

/// <summary>`flush_dcache_page f1 64`: flush_dcache_page on subpage 64 of the folio (modulo its size).</summary>
public sealed record FlushDcachePageOp(string Folio, long Index) : Op
{
    public override string Verb => "flush_dcache_page";
    public override string Args() => $"{Folio} {Index.ToString(CultureInfo.InvariantCulture)}";
    public override IEnumerable<string> Uses => [Folio];

    public override KernelTask? CreateTask(RunContext rc)
    {
        if (!HugetlbOpText.TryFolio(rc, Folio, out var f)) return null;
        long pfn = f.HeadPfn + Index % f.NrPages;
        return new LambdaTask(ToString(), (k, ctx) => k.Arm64Flush.FlushDcachePage(ctx, pfn));
    }

    public override IEnumerable<Op> ShrinkArgs() => HugetlbOpText.ShrinkIndex(Index).Select(i => this with { Index = i });
}

/// <summary>`hvo_knob on|off`: vm.hugetlb_optimize_vmemmap (affects later optimizations only;
/// not registered, so a no-op, when HVO is not built in).</summary>
public sealed record HvoKnobOp(bool Enabled) : Op
{
    public override string Verb => "hvo_knob";
    public override string Args() => Enabled ? "on" : "off";

    public override KernelTask? CreateTask(RunContext rc) =>
        !rc.Kernel.Hugetlb.HvoConfigured ? null : new LambdaTask(ToString(), (k, ctx) => Body(k));

    private IEnumerable<StepStatus> Body(Kernel k)
    {
        k.Hugetlb.VmemmapOptimizeEnabled = Enabled;
        yield return StepStatus.After("hugetlb_optimize_vmemmap_handler");
    }
}
