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

    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(rc, k));

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k)
    {
        var (area, _) = k.Vmalloc.VmallocHuge((ulong)Size);
        if (area is not null) rc.BindHandle(Bind, area);
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

    public override KernelTask? CreateTask(RunContext rc) => new LambdaTask(ToString(), (k, ctx) => Body(rc, k));

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k)
    {
        var (area, _) = k.Vmalloc.ModuleAlloc((ulong)Size);
        if (area is not null) rc.BindHandle(Bind, area);
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
        if (rc.TryGet<VmArea>(Area, out var area) && (area.Flags & VmFlags.VmFlushResetPerms) != 0)
        {
            ulong page = (ulong)k.Arch.PageSize;
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
