// Page-cache and speculative-reference operations (the speculative-get thread, bd225530a4c7).
using System.Globalization;
using PropertySuite.Engine.PageCache;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Scenario;

/// <summary>`p1 = filemap_add N`: a new file with N order-0 page-cache folios at indices 0..N-1.</summary>
public sealed record FilemapAddOp(int Pages) : Op
{
    public override string Verb => "filemap_add";
    public override string Args() => Pages.ToString(CultureInfo.InvariantCulture);
    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(rc, k, ctx));

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k, ExecContext ctx)
    {
        var f = k.Filemap.NewFile();
        rc.BindHandle(Bind, f);
        k.Filemap.FilemapAddFolios(ctx, f, Pages);
        yield return StepStatus.After("filemap_add_folio");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Pages > 1) yield return this with { Pages = 1 };
        if (Pages > 2) yield return this with { Pages = Pages / 2 };
    }
}

/// <summary>`truncate p1`: truncate_inode_pages: remove every folio and drop the cache's references.</summary>
public sealed record TruncateOp(string File) : Op
{
    public override string Verb => "truncate";
    public override string Args() => File;
    public override IEnumerable<string> Uses => [File];

    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<AddressSpace>(File, out var f) ? new LambdaTask(ToString(), (k, ctx) => Body(k, ctx, f)) : null;

    private static IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, AddressSpace f)
    {
        k.Filemap.TruncateInodePages(ctx, f);
        yield return StepStatus.After("truncate_inode_pages");
    }
}

/// <summary>`spec_lookup p1 64`: filemap_get_entry + folio_try_get_rcu for one index, step by
/// step: rcu_read_lock and load the pointer; try to get it (two steps); re-validate with
/// xa_load and put it on mismatch; rcu_read_unlock; finally drop the reference it kept.</summary>
public sealed record SpecLookupOp(string File, long Index) : Op
{
    public override string Verb => "spec_lookup";
    public override string Args() => $"{File} {Index.ToString(CultureInfo.InvariantCulture)}";
    public override IEnumerable<string> Uses => [File];

    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<AddressSpace>(File, out var f) ? new LambdaTask(ToString(), (k, ctx) => Body(k, ctx, f)) : null;

    private IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, AddressSpace f)
    {
        k.Rcu.RcuReadLock(ctx);
        ulong page = Filemap.XaLoad(f, Index);
        if (page == 0)
        {
            yield return StepStatus.After("xa_load");
            k.Rcu.RcuReadUnlock(ctx);
            yield break;
        }
        ctx.PagePointer = TakePointer(k, page, "xa_load");
        try
        {
            yield return StepStatus.After("xa_load");
            foreach (var s in TryGetAndRevalidate(k, ctx, f, page)) yield return s;
        }
        finally { ctx.PagePointer = null; }
    }

    internal static HeldPagePointer TakePointer(Kernel k, ulong page, string source) =>
        new(page, k.Log.StepCount, source, k.PageFlags.CompoundHead(k.PageFlags.PeekView, page));

    private IEnumerable<StepStatus> TryGetAndRevalidate(Kernel k, ExecContext ctx, AddressSpace f, ulong page)
    {
        var got = new RefResult();
        foreach (var s in PageRef.PageRefAddUnless(k, ctx, page, 1, 0, got, "folio_try_get_rcu")) yield return s;
        if (got.Got && Filemap.XaLoad(f, Index) != page)
        {
            k.Log.Note("spec.revalidate_failed");
            k.Filemap.FolioPut(ctx, page, "filemap_get_entry (xas_reload mismatch)");
            got.Got = false;
        }
        k.Rcu.RcuReadUnlock(ctx);
        yield return StepStatus.After("rcu_read_unlock");
        if (got.Got)
        {
            k.Filemap.FolioPut(ctx, page, "filemap_get_entry user done");
            yield return StepStatus.After("folio_put");
        }
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Index != 0) yield return this with { Index = 0 };
    }
}

/// <summary>`pfn_walk p1 64`: a compaction-style PFN walker (Yu Zhao's interleaving): takes the
/// PFN that file p1's page 64 has when the walk starts, then, step by step: see PG_lru on
/// pfn_to_page(pfn); get_page_unless_zero (two steps); re-check PG_lru and drop the reference.
/// No RCU of its own: bd225530a4c7 put it inside page_ref_add_unless.</summary>
public sealed record PfnWalkOp(string File, long Index) : Op
{
    public override string Verb => "pfn_walk";
    public override string Args() => $"{File} {Index.ToString(CultureInfo.InvariantCulture)}";
    public override IEnumerable<string> Uses => [File];
    public override bool WalksByPfn => true;

    public override KernelTask? CreateTask(RunContext rc)
    {
        if (!rc.TryGet<AddressSpace>(File, out var f)) return null;
        ulong page = Filemap.XaLoad(f, Index);
        return page == 0 ? null : new LambdaTask(ToString(), (k, ctx) => Body(k, ctx, page));
    }

    internal static IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, ulong page)
    {
        ctx.PagePointer = SpecLookupOp.TakePointer(k, page, "pfn_to_page");
        try
        {
            foreach (var s in Walk(k, ctx, page)) yield return s;
        }
        finally { ctx.PagePointer = null; }
    }

    private static IEnumerable<StepStatus> Walk(Kernel k, ExecContext ctx, ulong page)
    {
        bool lru = k.Mmu.ReadStructPage(ctx, page, out var sp) && (sp.Flags & Mm.PageFlags.Lru) != 0;
        yield return StepStatus.After("PageLRU");
        if (!lru) yield break;
        var got = new RefResult();
        foreach (var s in PageRef.PageRefAddUnless(k, ctx, page, 1, 0, got, "get_page_unless_zero")) yield return s;
        if (!got.Got) yield break;
        // isolate_migratepages_block would now re-check the folio; the walk here only wanted a peek.
        if (k.Variant.Broken.PfnWalkSkipsPut) yield break; // the lost put_page of the breakage
        k.Filemap.FolioPut(ctx, page, "pfn walker put_page");
        yield return StepStatus.After("put_page");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Index != 0) yield return this with { Index = 0 };
    }
}

/// <summary>`read_folio_page f1 64`: a kernel read of the struct page of subpage N of a HugeTLB
/// folio (page_count / PageHuge from any context, e.g. an interrupt handler), through the CPU's
/// TLB (an access in a break-before-make window waits in the fault handler, if there is one).</summary>
public sealed record ReadFolioPageOp(string Folio, long Subpage) : Op
{
    public override string Verb => "read_folio_page";
    public override string Args() => $"{Folio} {Subpage.ToString(CultureInfo.InvariantCulture)}";
    public override IEnumerable<string> Uses => [Folio];

    public override KernelTask? CreateTask(RunContext rc)
    {
        if (!rc.TryGet<HugetlbFolio>(Folio, out var f)) return null;
        return new LambdaTask(ToString(), (k, ctx) => Body(k, ctx, f));
    }

    private IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, HugetlbFolio f)
    {
        long pages = k.Arch.PagesPerHugePage(f.Hstate.Size);
        ulong page = k.Arch.PfnToPage(f.HeadPfn + Subpage % pages);
        k.Mmu.ReadStructPage(ctx, page, out _);
        yield return StepStatus.After("page_count");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Subpage != 0) yield return this with { Subpage = 0 };
    }
}

/// <summary>`compact_pfn 0x2240`: the same compaction-style walker at an absolute PFN, as
/// isolate_migratepages_block visits the PFNs of a pageblock: pfn_to_page(pfn), PG_lru,
/// get_page_unless_zero, put. Compaction reaches a pageblock only through
/// pageblock_pfn_to_page, which answers NULL for memory that is not online
/// (__pageblock_pfn_to_page calls pfn_to_online_page; an offline block is in no zone's span),
/// so the walk first makes that check and does nothing for a PFN that is not online.
/// Departure: the check and the first struct-page read share one step. The window between
/// them is the race the kernel accepts (Engine/Hotplug/PfnToOnlinePage.cs); `online_pfn_walk`
/// keeps it open as two steps for the scenarios that want it.</summary>
public sealed record CompactPfnOp(long Pfn) : Op
{
    public override string Verb => "compact_pfn";
    public override string Args() => $"0x{Pfn:x}";
    public override bool WalksByPfn => true;

    public override KernelTask? CreateTask(RunContext rc) =>
        !rc.Kernel.Mem.PfnValid(Pfn) ? null : new LambdaTask(ToString(), (k, ctx) => Body(k, ctx));

    private IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx)
    {
        ulong page = k.Hotplug.PfnToOnlinePage(Pfn);
        if (page == 0)
        {
            k.Log.Note("memory_hotplug.pfn_to_online_page.offline");
            yield break;
        }
        foreach (var s in PfnWalkOp.Body(k, ctx, page)) yield return s;
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Pfn != 0) yield return this with { Pfn = 0 };
    }
}
