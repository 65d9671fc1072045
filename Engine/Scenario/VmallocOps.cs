// Operations of huge vmalloc (Engine/Mm/Vmalloc.cs, SetMemory.cs): vmalloc_huge, vm_unmap_aliases,
// module_alloc, set_vm_flush_reset_perms, set_memory_ro/rw/x/nx and read_direct_map. The
// plain vmalloc, vfree and read lines are the core operations (CoreOps.cs); their areas are the
// same `vN` handles.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Scenario;

/// <summary>`v1 = vmalloc_huge 2M`: vmalloc_huge(size), PMD mappings where the policy, the size
/// and the memory allow, else small pages.</summary>
public sealed record VmallocHugeOp(long Size) : Op
{
    public override string Verb => "vmalloc_huge";
    public override string Args() => ArchConfig.FormatSize(Size);

    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(rc, k, ctx));

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k, ExecContext ctx)
    {
        var ret = new Ret<(VmArea? Area, Errno Err)>();
        foreach (var st in k.Vmalloc.VmallocHuge(ctx, (ulong)Size, ret)) yield return st;
        if (ret.Value.Area is { } area) rc.BindHandle(Bind, area);
        yield return StepStatus.After("vmalloc_huge");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        long pmd = 2L << 20;
        if (Size > pmd) yield return this with { Size = pmd };
        if (Size > 4096) yield return this with { Size = 4096 };
    }
}

/// <summary>`vm_unmap_aliases`: purge every lazily freed vmap area now (one TLB flush).</summary>
public sealed record VmUnmapAliasesOp : Op
{
    public override string Verb => "vm_unmap_aliases";
    public override string Args() => "";
    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(k));

    private static IEnumerable<StepStatus> Body(Kernel k)
    {
        k.Vmalloc.VmUnmapAliases();
        yield return StepStatus.After("vm_unmap_aliases");
    }
}

/// <summary>`v1 = module_alloc 2M`: module_alloc / execmem_alloc(EXECMEM_MODULE_TEXT): a
/// PAGE_KERNEL area with VM_FLUSH_RESET_PERMS (Vmalloc.ModuleAlloc).</summary>
public sealed record ModuleAllocOp(long Size) : Op
{
    public override string Verb => "module_alloc";
    public override string Args() => ArchConfig.FormatSize(Size);

    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(rc, k, ctx));

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k, ExecContext ctx)
    {
        var ret = new Ret<(VmArea? Area, Errno Err)>();
        foreach (var st in k.Vmalloc.ModuleAlloc(ctx, (ulong)Size, ret)) yield return st;
        if (ret.Value.Area is { } area) rc.BindHandle(Bind, area);
        yield return StepStatus.After("module_alloc");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        long pmd = 2L << 20;
        if (Size > pmd) yield return this with { Size = pmd };
        if (Size > 4096) yield return this with { Size = 4096 };
    }
}

/// <summary>`set_vm_flush_reset_perms v1`: mark the area VM_FLUSH_RESET_PERMS.</summary>
public sealed record SetVmFlushResetPermsOp(string Area) : Op
{
    public override string Verb => "set_vm_flush_reset_perms";
    public override string Args() => Area;
    public override IEnumerable<string> Uses => [Area];

    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<VmArea>(Area, out _) ? new LambdaTask(ToString(), (k, ctx) => Body(rc, k)) : null;

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k)
    {
        if (rc.TryGet<VmArea>(Area, out var area)) k.Vmalloc.SetVmFlushResetPerms(area);
        yield return StepStatus.After("set_vm_flush_reset_perms");
    }
}

/// <summary>Which set_memory_* a <see cref="SetMemoryOp"/> calls.</summary>
public enum SetMemoryKind { Ro, Rw, X, Nx }

/// <summary>`set_memory_ro v1 8K 2`: set_memory_ro(addr + offset, pages) on a vmalloc area (and
/// likewise _rw, _x, _nx). The offset is rounded down to a page and the count clipped to the
/// area. The scenario language lets only a caller that will have its permissions reset on free
/// change them: on an area without VM_FLUSH_RESET_PERMS the line is a no-op, because vfree'ing
/// such an area with changed permissions is the caller's bug (it must set_memory_rw first), and a
/// repro must not shrink to it.</summary>
public sealed record SetMemoryOp(SetMemoryKind Kind, string Area, long Offset, long Pages) : Op
{
    public override string Verb => Kind switch
    {
        SetMemoryKind.Ro => "set_memory_ro",
        SetMemoryKind.Rw => "set_memory_rw",
        SetMemoryKind.X => "set_memory_x",
        _ => "set_memory_nx",
    };
    public override string Args() => $"{Area} {ArchConfig.FormatSize(Offset)} {Pages}";
    public override IEnumerable<string> Uses => [Area];

    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<VmArea>(Area, out _) ? new LambdaTask(ToString(), (k, ctx) => Body(rc, k)) : null;

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k)
    {
        ulong page = (ulong)k.Arch.PageSize;
        if (rc.TryGet<VmArea>(Area, out var area) && (area.Flags & VmFlags.VmFlushResetPerms) != 0
            && !area.AnyUnmapped(area.Addr + ((ulong)Offset % area.Size & ~(page - 1)), (ulong)Math.Min(Pages, (long)((area.Size - ((ulong)Offset % area.Size & ~(page - 1))) / page)) * page))
        {
            ulong off = (ulong)Offset % area.Size & ~(page - 1);
            long pages = Math.Min(Pages, (long)((area.Size - off) / page));
            ulong addr = area.Addr + off;
            var sm = k.Vmalloc.SetMemory;
            _ = Kind switch
            {
                SetMemoryKind.Ro => sm.SetMemoryRo(addr, pages),
                SetMemoryKind.Rw => sm.SetMemoryRw(addr, pages),
                SetMemoryKind.X => sm.SetMemoryX(addr, pages),
                _ => sm.SetMemoryNx(addr, pages),
            };
        }
        yield return StepStatus.After(Verb);
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Offset != 0) yield return this with { Offset = 0 };
        if (Pages > 1) yield return this with { Pages = 1 };
    }
}

/// <summary>`v1 = vmap 4`: a vmap user's buffer: alloc_page PAGES times, then vmap(pages,
/// PAGES, VM_MAP, PAGE_KERNEL); if vmap fails the caller frees its pages.</summary>
public sealed record VmapOp(long Pages) : Op
{
    public override string Verb => "vmap";
    public override string Args() => Pages.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(rc, k, ctx));

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k, ExecContext ctx)
    {
        var pages = k.Vmalloc.AllocCallerPages(Pages);
        if (pages is not null)
        {
            var ret = new Ret<(VmArea? Area, Errno Err)>();
            foreach (var st in k.Vmalloc.Vmap(ctx, pages, VmFlags.None, ret)) yield return st;
            if (ret.Value.Area is { } area) rc.BindHandle(Bind, area);
            else k.Vmalloc.FreeCallerPages(pages);
        }
        yield return StepStatus.After("vmap");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Pages > 1) yield return this with { Pages = 1 };
        if (Pages > 2) yield return this with { Pages = Pages / 2 };
    }
}

/// <summary>`vunmap v1`: vunmap(addr) of a vmap'd area (its range goes to the lazy purge),
/// then the caller's __free_page of each page.</summary>
public sealed record VunmapOp(string Area) : Op
{
    public override string Verb => "vunmap";
    public override string Args() => Area;
    public override IEnumerable<string> Uses => [Area];

    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<VmArea>(Area, out _) ? new LambdaTask(ToString(), (k, ctx) => Body(rc, k)) : null;

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k)
    {
        // Only the owner of a vmap'd buffer vunmaps it; a vmalloc area is vfree'd (vunmap of one
        // would leak its pages, the caller's bug), so the line is a no-op on those.
        if (rc.TryGet<VmArea>(Area, out var area) && (area.Flags & VmFlags.VmMap) != 0)
        {
            rc.Unbind(Area);
            k.Vmalloc.FreeCallerPages(k.Vmalloc.Vunmap(area));
        }
        yield return StepStatus.After("vunmap");
    }
}

/// <summary>`vunmap_range v1 8K 2` (or `vunmap_range_noflush`): the owner of an area unmaps
/// PAGES pages of it from OFFSET (rounded down to a page, clipped to the area) and keeps the
/// rest; the flushing form flushes the range, the other leaves the flush to its caller, which
/// issues it in a step of its own.</summary>
public sealed record VunmapRangeOp(string Area, long Offset, long Pages, bool Flush) : Op
{
    public override string Verb => Flush ? "vunmap_range" : "vunmap_range_noflush";
    public override string Args() => $"{Area} {ArchConfig.FormatSize(Offset)} {Pages}";
    public override IEnumerable<string> Uses => [Area];

    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<VmArea>(Area, out _) ? new LambdaTask(ToString(), (k, ctx) => Body(rc, k)) : null;

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k)
    {
        if (rc.TryGet<VmArea>(Area, out var area))
        {
            ulong page = (ulong)k.Arch.PageSize;
            ulong off = (ulong)Offset % area.Size & ~(page - 1);
            long pages = Math.Min(Pages, (long)((area.Size - off) / page));
            ulong addr = area.Addr + off, end = addr + (ulong)pages * page;
            if (Flush) k.Vmalloc.VunmapRange(addr, end);
            else
            {
                // The noflush form's caller flushes afterwards, before it frees or reuses the
                // pages (pcpu_unmap_pages, then pcpu_post_unmap_tlb_flush): a second step, so
                // other CPUs run between the clear and the flush.
                k.Vmalloc.VunmapRangeNoflush(addr, end);
                yield return StepStatus.After(Verb);
                k.Tlb.FlushTlbKernelRange(addr, end);
                yield return StepStatus.After("flush_tlb_kernel_range");
                yield break;
            }
        }
        yield return StepStatus.After(Verb);
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        // The page count is not shrunk: a generated range is whole backing allocations of its
        // area, and a smaller one could cut a huge leaf, a caller bug (the kernel's WARN) that
        // would then stand in for the bug being shrunk. Offset 0 is aligned for every leaf.
        if (Offset != 0) yield return this with { Offset = 0 };
        if (!Flush) yield return this with { Flush = true };
    }
}

/// <summary>`v1 = ioremap 2M 4M`: ioremap_prot of SIZE bytes of device memory at PHYSOFF into the
/// model's MMIO window (Vmalloc.MmioBasePfn, the first PUD-aligned address above RAM), so that
/// the offset decides the physical alignment of the range.</summary>
public sealed record IoremapOp(long PhysOffset, long Size) : Op
{
    public override string Verb => "ioremap";
    public override string Args() => $"{ArchConfig.FormatSize(PhysOffset)} {ArchConfig.FormatSize(Size)}";

    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(rc, k, ctx));

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k, ExecContext ctx)
    {
        ulong phys = ((ulong)k.Vmalloc.MmioBasePfn << k.Arch.PageShift) + (ulong)PhysOffset;
        var ret = new Ret<(VmArea? Area, Errno Err)>();
        foreach (var st in k.Vmalloc.IoremapProt(ctx, phys, (ulong)Size, ret)) yield return st;
        if (ret.Value.Area is { } area) rc.BindHandle(Bind, area);
        yield return StepStatus.After("ioremap_prot");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (PhysOffset != 0) yield return this with { PhysOffset = 0 };
        if (Size > 4096) yield return this with { Size = 4096 };
    }
}

/// <summary>`iounmap v1`: iounmap of an ioremap area (a no-op on any other area).</summary>
public sealed record IounmapOp(string Area) : Op
{
    public override string Verb => "iounmap";
    public override string Args() => Area;
    public override IEnumerable<string> Uses => [Area];

    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<VmArea>(Area, out _) ? new LambdaTask(ToString(), (k, ctx) => Body(rc, k)) : null;

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k)
    {
        if (rc.TryGet<VmArea>(Area, out var area) && (area.Flags & VmFlags.VmIoremap) != 0)
        {
            rc.Unbind(Area);
            k.Vmalloc.Iounmap(area);
        }
        yield return StepStatus.After("iounmap");
    }
}

/// <summary>`vmalloc_to_page v1 8K`: the lockless walk of vmalloc_to_page over init_mm for an
/// address of a live area (Vmalloc.VmallocToPage), one table per step, holding the tables on
/// its path (Hotplug/TableWalkers, which NoWalkerHoldsFreedTable judges).</summary>
public sealed record VmallocToPageOp(string Area, long Offset) : Op
{
    public override string Verb => "vmalloc_to_page";
    public override string Args() => $"{Area} {ArchConfig.FormatSize(Offset)}";
    public override IEnumerable<string> Uses => [Area];

    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<VmArea>(Area, out _) ? new LambdaTask(ToString(), (k, ctx) => Body(rc, k, ctx)) : null;

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k, ExecContext ctx)
    {
        // Only the owner of a live area asks for its pages (an ioremap area has none, a page
        // the owner vunmap_range'd is not its own any more).
        if (!rc.TryGet<VmArea>(Area, out var area) || (area.Flags & VmFlags.VmIoremap) != 0) yield break;
        ulong off = (ulong)Offset % area.Size & ~(ulong)(k.Arch.PageSize - 1);
        if (area.PageUnmapped((long)(off >> k.Arch.PageShift))) yield break;
        try
        {
            foreach (var st in k.Vmalloc.VmallocToPage(ctx, area.Addr + off, k.Hotplug.Walkers)) yield return st;
        }
        finally
        {
            k.Hotplug.Walkers.ReleaseAll(ctx.Task);
        }
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Offset != 0) yield return this with { Offset = 0 };
    }
}

/// <summary>`read_direct_map v1 8K`: a kernel load through the direct-map alias of the page
/// backing the area at an offset (page_address(vmalloc_to_page(addr))), which fills the CPU's TLB
/// with the direct-map translation.</summary>
public sealed record ReadDirectMapOp(string Area, long Offset) : Op
{
    public override string Verb => "read_direct_map";
    public override string Args() => $"{Area} {ArchConfig.FormatSize(Offset)}";
    public override IEnumerable<string> Uses => [Area];

    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<VmArea>(Area, out _) ? new LambdaTask(ToString(), (k, ctx) => Body(rc, k, ctx)) : null;

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k, ExecContext ctx)
    {
        if (rc.TryGet<VmArea>(Area, out var area) && area.Pages.Count > 0)
        {
            int i = (int)((ulong)Offset % area.Size >> k.Arch.PageShift) % area.Pages.Count;
            k.Mmu.Translate(ctx, k.Arch.PfnToVirt(area.Pages[i]), write: false, out _, out _);
        }
        yield return StepStatus.After("READ_ONCE");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Offset != 0) yield return this with { Offset = 0 };
    }
}
