// Operations of huge vmalloc (Engine/Mm/Vmalloc.cs): vmalloc_huge and vm_unmap_aliases. The
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
