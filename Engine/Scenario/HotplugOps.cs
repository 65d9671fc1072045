// Memory hot-plug operations (Engine/Hotplug): physical ranges as the kernel's entry points take
// them, the errno a value the run records (KernelLog states "memory_hotplug.<fn>.<errno>").
//
//   add_memory 0x40000000 128M        add_memory(nid, start, size, MHP_NONE): present, offline
//   add_memory 0x40000000 128M memmap_on_memory   with MHP_MEMMAP_ON_MEMORY (the block's memmap
//                                     in its first pages, where mhp_supports_memmap_on_memory)
//   online_pages 0x40000000 128M      online_pages of the block(s) (echo online > .../state)
//   offline_pages 0x40000000 128M     offline_pages (echo offline > .../state)
//   remove_memory 0x40000000 128M     remove_memory(start, size)
//   memremap_pages 0x40000000 2M      memremap_pages of ZONE_DEVICE memory (sub-sections)
//   memunmap_pages 0x40000000 2M      memunmap_pages
//   ptdump                            ptdump_walk_pgd over init_mm (a walker task)
//   ptdump linear 0x40000000 128M     ptdump_walk_pgd over the linear map of the range only
//   ptdump vmemmap 0x40000000 128M    ptdump_walk_pgd over the vmemmap (struct pages) of the range
//   online_pfn_walk 0x40000           pfn_to_online_page, then a compaction-style peek (a task)
//
// Every one is a task, so `start` interleaves it with others; bad input (a range over boot
// memory, misaligned, outside the hot-plug range) returns the kernel's errno as a value.
using System.Globalization;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Scenario;

/// <summary>Which hot-plug entry point a <see cref="HotplugRangeOp"/> calls.</summary>
public enum HotplugCall { AddMemory, OnlinePages, OfflinePages, RemoveMemory, MemremapPages, MemunmapPages }

/// <summary>`add_memory | online_pages | offline_pages | remove_memory | memremap_pages |
/// memunmap_pages START SIZE`.</summary>
public sealed record HotplugRangeOp(HotplugCall Call, long Address, long Size) : Op
{
    public static string VerbOf(HotplugCall c) => c switch
    {
        HotplugCall.AddMemory => "add_memory",
        HotplugCall.OnlinePages => "online_pages",
        HotplugCall.OfflinePages => "offline_pages",
        HotplugCall.RemoveMemory => "remove_memory",
        HotplugCall.MemremapPages => "memremap_pages",
        _ => "memunmap_pages",
    };

    /// <summary>add_memory with MHP_MEMMAP_ON_MEMORY (and memory_hotplug.memmap_on_memory on):
    /// written as a trailing `memmap_on_memory`.</summary>
    public bool MemmapOnMemory { get; init; }

    public override string Verb => VerbOf(Call);
    public override string Args() => $"0x{Address:x} {ArchConfig.FormatSize(Size)}{(MemmapOnMemory ? " memmap_on_memory" : "")}";

    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), Body);

    private IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx)
    {
        var h = k.Hotplug;
        var ret = new Ret<Errno>(Errno.Ok);
        int shift = k.Arch.PageShift;
        return Call switch
        {
            HotplugCall.AddMemory => h.AddMemory(ctx, Address, Size, ret, MemmapOnMemory),
            HotplugCall.OnlinePages => h.OnlinePages(ctx, Address >> shift, Size >> shift, ret),
            HotplugCall.OfflinePages => h.OfflinePages(ctx, Address >> shift, Size >> shift, ret),
            HotplugCall.RemoveMemory => h.RemoveMemory(ctx, Address, Size, ret),
            HotplugCall.MemremapPages => h.MemremapPages(ctx, Address, Size, ret),
            _ => h.MemunmapPages(ctx, Address, Size, ret),
        };
    }

    /// <summary>Smaller sizes: one memory section of some configuration (128M, 512M) or one
    /// sub-section (2M); a size the configuration cannot use is then an EINVAL no-op.</summary>
    public override IEnumerable<Op> ShrinkArgs()
    {
        long[] sizes = Call is HotplugCall.MemremapPages or HotplugCall.MemunmapPages
            ? [2L << 20]
            : [.. ArchConfig.All.Select(a => a.SectionSize).Distinct().Order()];
        foreach (long s in sizes.Where(s => s < Size)) yield return this with { Size = s };
        if (MemmapOnMemory) yield return this with { MemmapOnMemory = false };
    }
}

/// <summary>What a <see cref="PtdumpOp"/> walks: all of init_mm, or the linear map or the
/// vmemmap of a physical range.</summary>
public enum PtdumpRange { All, Linear, Vmemmap }

/// <summary>`ptdump`: ptdump_walk_pgd over all of init_mm; `ptdump linear PHYS SIZE` /
/// `ptdump vmemmap PHYS SIZE`: over the linear-map or vmemmap addresses of [PHYS, PHYS+SIZE)
/// only (the kernel's st->range).</summary>
public sealed record PtdumpOp(PtdumpRange Range = PtdumpRange.All, long Phys = 0, long Size = 0) : Op
{
    public static string WordOf(PtdumpRange r) => r == PtdumpRange.Linear ? "linear" : "vmemmap";

    public override string Verb => "ptdump";
    public override string Args() => Range == PtdumpRange.All ? "" : $"{WordOf(Range)} 0x{Phys:x} {ArchConfig.FormatSize(Size)}";
    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Walk(k, ctx));

    /// <summary>The walk's addresses, first and last (inclusive): the linear map's
    /// __va(PHYS)..__va(PHYS+SIZE)-1, or pfn_to_page(PHYS)..pfn_to_page(PHYS+SIZE) less one byte
    /// (the struct pages of the range's page frames, a partial page counted whole).</summary>
    public (ulong First, ulong Last) Addresses(Kernel k)
    {
        if (Range == PtdumpRange.All) return (k.SwapperPgDir.Root.BaseVa, ulong.MaxValue);
        long pfn = Phys >> k.Arch.PageShift, end = (Phys + Size + k.Arch.PageSize - 1) >> k.Arch.PageShift;
        return Range == PtdumpRange.Linear
            ? (k.Arch.PfnToVirt(pfn), k.Arch.PfnToVirt(end) - 1)
            : (k.Arch.PfnToPage(pfn), k.Arch.PfnToPage(end) - 1);
    }

    private IEnumerable<StepStatus> Walk(Kernel k, ExecContext ctx)
    {
        var (first, last) = Addresses(k);
        try
        {
            foreach (var s in k.Hotplug.PtdumpWalkPgd(ctx, first, last)) yield return s;
        }
        finally
        {
            k.Hotplug.Walkers.ReleaseAll(ctx.Task);
        }
    }

    /// <summary>Towards the plain walk of all of init_mm, then a smaller range: one memory
    /// section of some configuration (128M, 512M) or one sub-section (2M).</summary>
    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Range == PtdumpRange.All) yield break;
        yield return new PtdumpOp() with { Cpu = Cpu, Start = Start, Bind = Bind };
        long[] sizes = [2L << 20, .. ArchConfig.All.Select(a => a.SectionSize).Distinct().Order()];
        foreach (long s in sizes.Where(s => s < Size)) yield return this with { Size = s };
    }
}

/// <summary>`online_pfn_walk PFN`: a PFN walker that checks pfn_to_online_page, then peeks at
/// the struct page as compaction's scanner does (PageLRU, get_page_unless_zero, put_page).</summary>
public sealed record OnlinePfnWalkOp(long Pfn) : Op
{
    public override string Verb => "online_pfn_walk";
    public override string Args() => $"0x{Pfn:x}";
    public override bool WalksByPfn => true;
    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(k, ctx));

    private IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx)
    {
        ulong page = k.Hotplug.PfnToOnlinePage(Pfn);
        k.Log.Note(page == 0 ? "memory_hotplug.pfn_to_online_page.offline" : "memory_hotplug.pfn_to_online_page.online");
        yield return StepStatus.After("pfn_to_online_page");
        if (page == 0) yield break;
        foreach (var s in PfnWalkOp.Body(k, ctx, page)) yield return s;
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Pfn != 0) yield return this with { Pfn = 0 };
    }
}

internal static class HotplugOpText
{
    public static HotplugRangeOp Parse(HotplugCall call, LineReader r)
    {
        var op = new HotplugRangeOp(call, r.Int("physical address", 0, Repro.MaxMemory), r.Size("size", 1, Repro.MaxMemory));
        return call == HotplugCall.AddMemory && HgmOpText.Flag(r, "memmap_on_memory") ? op with { MemmapOnMemory = true } : op;
    }

    /// <summary>`ptdump [linear|vmemmap PHYS SIZE]`.</summary>
    public static PtdumpOp ParsePtdump(LineReader r)
    {
        if (r.AtEnd) return new PtdumpOp();
        var range = HgmOpText.Mode(r, "linear", "vmemmap") ? PtdumpRange.Linear : PtdumpRange.Vmemmap;
        return new PtdumpOp(range, r.Int("physical address", 0, Repro.MaxMemory), r.Size("size", 1, Repro.MaxMemory));
    }
}
