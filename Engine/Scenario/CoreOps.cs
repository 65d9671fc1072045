// Core operations: vmalloc/vfree, kernel reads that fill TLBs, the page-table teardown helper,
// RCU readers and grace periods, and allocation-failure injection.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Scenario;

/// <summary>`v1 = vmalloc 16K`: vmalloc(size) with base pages.</summary>
public sealed record VmallocOp(long Size) : Op
{
    public override string Verb => "vmalloc";
    public override string Args() => ArchConfig.FormatSize(Size);

    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(rc, k, ctx));

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k, ExecContext ctx)
    {
        long size = (Size + k.Arch.PageSize - 1) / k.Arch.PageSize * k.Arch.PageSize;
        var ret = new Ret<(VmArea? Area, Errno Err)>();
        foreach (var st in k.Vmalloc.VmallocNodeRange(ctx, (ulong)size, (ulong)k.Arch.PageSize, VmFlags.None, writable: true, ret)) yield return st;
        if (ret.Value.Area is { } area) rc.BindHandle(Bind, area);
        yield return StepStatus.After("vmalloc");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Size > 4096) yield return this with { Size = 4096 };
        if (Size > 8192) yield return this with { Size = Size / 2 };
    }
}

/// <summary>`vfree v1`.</summary>
public sealed record VfreeOp(string Area) : Op
{
    public override string Verb => "vfree";
    public override string Args() => Area;
    public override IEnumerable<string> Uses => [Area];

    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<VmArea>(Area, out _) ? new LambdaTask(ToString(), (k, ctx) => Body(rc, k)) : null;

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k)
    {
        // The handle is resolved when the free executes, not when the task was started: if
        // another CPU freed the area in between, this would be a double vfree by the caller (a
        // caller bug the kernel only WARNs about), so like any operation whose handle is gone
        // it does nothing.
        // A vmap'd buffer's pages are its caller's: it vunmaps it and frees them (vfree would
        // free nothing, leaking them); an ioremap area is iounmap'd. vfree of either is a no-op
        // like a stale handle.
        if (rc.TryGet<VmArea>(Area, out var area) && (area.Flags & (VmFlags.VmMap | VmFlags.VmIoremap)) == 0)
        {
            rc.Unbind(Area);
            k.Vmalloc.Vfree(area);
        }
        yield return StepStatus.After("vfree");
    }
}

/// <summary>`read v1 8K`: a kernel load from a vmalloc area at an offset (fills the CPU's TLB).</summary>
public sealed record ReadOp(string Area, long Offset) : Op
{
    public override string Verb => "read";
    public override string Args() => $"{Area} {ArchConfig.FormatSize(Offset)}";
    public override IEnumerable<string> Uses => [Area];

    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<VmArea>(Area, out _) ? new LambdaTask(ToString(), (k, ctx) => Body(rc, k, ctx)) : null;

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k, ExecContext ctx)
    {
        // Resolved when the load executes: a started (or interrupt-handler) read of an area that
        // another CPU has vfree'd meanwhile would be the caller's use-after-free, not a kernel
        // bug, so it is a no-op like any operation whose handle is gone.
        // A page its owner took out with vunmap_range is not the owner's to read any more.
        if (rc.TryGet<VmArea>(Area, out var area))
        {
            ulong off = (ulong)Offset % area.Size & ~(ulong)(k.Arch.PageSize - 1);
            if (!area.PageUnmapped((long)(off >> k.Arch.PageShift)))
                k.Mmu.Translate(ctx, area.Addr + off, write: false, out _, out _);
        }
        yield return StepStatus.After("READ_ONCE");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Offset != 0) yield return this with { Offset = 0 };
    }
}

/// <summary>`free_empty_tables`: arm64's free_empty_tables over the whole vmalloc range, with
/// floor/ceiling = [VMALLOC_START, VMALLOC_END), in one step. No kernel path does this: the
/// kernel calls free_empty_tables only from arm64 hot-remove, over the linear map and vmemmap
/// (HotplugArm64.cs), and never frees a vmalloc-range table that a vmalloc may be populating.
/// The line stays for hand-written engine scenarios of the function itself and for old repro
/// files; generation never draws it (CoreFamily).</summary>
public sealed record FreeEmptyTablesOp : Op
{
    public override string Verb => "free_empty_tables";
    public override string Args() => "";
    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(k));

    private static IEnumerable<StepStatus> Body(Kernel k)
    {
        k.Pgtable.FreeEmptyTables(k.Arch.VmallocStart, k.Arch.VmallocEnd, k.Arch.VmallocStart, k.Arch.VmallocEnd);
        yield return StepStatus.After("free_empty_tables");
    }
}

/// <summary>`fail_alloc AFTER COUNT`: after AFTER more successful page allocations, the next
/// COUNT allocations fail with ENOMEM (the kernel's fail_page_alloc, deterministic).</summary>
public sealed record FailAllocOp(int After, int Count) : Op
{
    public override string Verb => "fail_alloc";
    public override string Args() => $"{After} {Count}";
    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(k));

    private IEnumerable<StepStatus> Body(Kernel k)
    {
        k.Mem.InjectFailures(After, Count);
        yield return StepStatus.After("fail_page_alloc");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (After > 0) yield return this with { After = 0 };
        if (After > 1) yield return this with { After = After / 2 };
        if (Count > 1) yield return this with { Count = 1 };
    }
}

/// <summary>`rcu_reader N`: rcu_read_lock, N steps inside the read-side section, rcu_read_unlock.</summary>
public sealed record RcuReaderOp(int Steps) : Op
{
    public override string Verb => "rcu_reader";
    public override string Args() => Steps.ToString(System.Globalization.CultureInfo.InvariantCulture);
    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), Body);

    private IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx)
    {
        k.Rcu.RcuReadLock(ctx);
        yield return StepStatus.After("rcu_read_lock");
        for (int i = 0; i < Steps; i++) yield return StepStatus.After("rcu_dereference");
        k.Rcu.RcuReadUnlock(ctx);
        yield return StepStatus.After("rcu_read_unlock");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Steps > 0) yield return this with { Steps = 0 };
        if (Steps > 1) yield return this with { Steps = Steps / 2 };
    }
}

/// <summary>`synchronize_rcu`.</summary>
public sealed record SynchronizeRcuOp : Op
{
    public override string Verb => "synchronize_rcu";
    public override string Args() => "";
    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => k.Rcu.SynchronizeRcu(ctx));
}

/// <summary>`prefetch_page pfn`: a speculative table walk of the struct page of PFN by this
/// CPU's MMU, which caches the current translation even when the TLB already holds one (see
/// Mmu.SpeculativeWalk).</summary>
public sealed record PrefetchPageOp(long Pfn) : Op
{
    public override string Verb => "prefetch_page";
    public override string Args() => $"0x{Pfn:x}";
    public override KernelTask? CreateTask(RunContext rc) =>
        !rc.Kernel.Mem.PfnValid(Pfn) ? null : new LambdaTask(ToString(), Body);

    private IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx)
    {
        k.Mmu.SpeculativeWalk(ctx, k.Arch.PfnToPage(Pfn));
        yield return StepStatus.After("speculative table walk");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Pfn != 0) yield return this with { Pfn = 0 };
        if (Pfn > 1) yield return this with { Pfn = Pfn / 2 };
    }
}

/// <summary>`page_ref pfn`: a kernel read of the struct page of PFN (e.g. a PFN walker peeking
/// at page flags), through the CPU's TLB.</summary>
public sealed record ReadStructPageOp(long Pfn) : Op
{
    public override string Verb => "read_page";
    public override string Args() => $"0x{Pfn:x}";
    public override KernelTask? CreateTask(RunContext rc) =>
        !rc.Kernel.Mem.PfnValid(Pfn) ? null : new LambdaTask(ToString(), Body);

    private IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx)
    {
        k.Mmu.ReadStructPage(ctx, k.Arch.PfnToPage(Pfn), out _);
        yield return StepStatus.After("READ_ONCE(page->flags)");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Pfn != 0) yield return this with { Pfn = 0 };
        if (Pfn > 1) yield return this with { Pfn = Pfn / 2 };
    }
}
