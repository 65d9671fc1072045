// Operations of HugeTLB high-granularity mapping (Engine/Hgm/). A handle `aN` is one
// address space with one MAP_SHARED mapping of a hugetlbfs file at HgmOpText.MapBase; offsets and
// lengths are bytes from the mapping's start (so they survive VMA splits), indices count huge
// pages of the file. Every operation is a task; its kernel result (0 or an errno) is noted as
// `hgm.<verb>.<errno>` in the run's states, never thrown.
//
//   a1 = hgm_mmap 2M 4            mm_alloc, a 4-page hugetlbfs file, mmap MAP_SHARED of all of it
//   a1 = hgm_mmap 2M 4 anon       the same length of anonymous PROT_NONE memory (for bad input)
//   hgm_touch a1 4K write         a user store at offset 4K (a page fault if nothing maps it)
//   madvise_split a1 0 2M         MADV_SPLIT (sets VM_HUGETLB_HGM)
//   uffd_register a1 0 2M minor   UFFDIO_REGISTER, minor (or wp) mode
//   uffdio_continue a1 8K 4K      UFFDIO_CONTINUE of [8K, 12K)
//   madvise_collapse a1 0 2M      MADV_COLLAPSE
//   hgm_munmap a1 2M 2M           munmap
//   hgm_mprotect a1 0 2M ro       mprotect(PROT_READ) (rw: PROT_READ|PROT_WRITE)
//   a2 = hgm_fork a1              fork
//   hgm_punch_hole a1 1           fallocate(PUNCH_HOLE) of huge page 1
//   hgm_truncate a1 2             ftruncate to 2 huge pages
//   hgm_memory_failure a1 0 130   memory_failure on subpage 130 of huge page 0
//   hgm_walk a1 12K               an HGM page-table walk of offset 12K (follow_hugetlb_page)
//   hgm_exit a1                   exit_mmap
using System.Globalization;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Hgm;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Scenario;

/// <summary>What an `aN` handle holds: the address space, its file and where the file is mapped.</summary>
public sealed record HgmMapping(HugetlbMm Mm, HugetlbfsInode? File, ulong Base, ulong Length);

public static class HgmOpText
{
    /// <summary>Where every mapping starts: 512G, aligned to every page-table level below the
    /// PGD on every configuration, so that no two hstates' mappings share a table above them.</summary>
    public const ulong MapBase = 1UL << 39;
    /// <summary>Largest file an operation may create: 64 huge pages.</summary>
    public const long MaxFilePages = 64;

    public static bool TryMapping(RunContext rc, string handle, out HgmMapping m) =>
        rc.TryGet(handle, out m) && !m.Mm.Exited;

    public static string Off(long bytes) => ArchConfig.FormatSize(bytes);

    /// <summary>A byte offset or length: 0, a size (4K, 2M) or a number of bytes.</summary>
    public static long Offset(LineReader r) => r.Size("offset", 0, OpCatalog.MaxOpSize);

    /// <summary>An optional trailing keyword.</summary>
    public static bool Flag(LineReader r, string word)
    {
        if (r.Peek() != word) return false;
        r.Word(word);
        return true;
    }

    /// <summary>One of two keywords: true for <paramref name="first"/>.</summary>
    public static bool Mode(LineReader r, string first, string second)
    {
        int col = r.Column;
        string w = r.Word($"{first} or {second}");
        if (w == first) return true;
        if (w == second) return false;
        throw new ReproParseException(r.LineNo, col, $"'{w}': expected {first} or {second}");
    }

    public static IEnumerable<long> ShrinkOffset(long off, long page)
    {
        if (off != 0) yield return 0;
        if (off > page) yield return off / 2 / page * page;
    }

    public static IEnumerable<StepStatus> Noted(Kernel k, string verb, IEnumerable<StepStatus> body, Ret<Errno> ret)
    {
        foreach (var s in body) yield return s;
        k.Log.Note($"hgm.{verb}.{ret.Value}");
    }

    public static KernelTask Task(Op op, Func<Kernel, ExecContext, Ret<Errno>, IEnumerable<StepStatus>> body) =>
        new LambdaTask(op.ToString(), (k, ctx) => { var ret = new Ret<Errno>(); return Noted(k, op.Verb, body(k, ctx, ret), ret); });
}

/// <summary>`a1 = hgm_mmap 2M 4 [anon]`.</summary>
public sealed record HgmMmapOp(long Size, long Pages, bool Anon = false) : Op
{
    public override string Verb => "hgm_mmap";
    public override string Args() => $"{ArchConfig.FormatSize(Size)} {Pages.ToString(CultureInfo.InvariantCulture)}{(Anon ? " anon" : "")}";

    public override KernelTask? CreateTask(RunContext rc) => HgmOpText.Task(this, (k, ctx, ret) => Body(rc, k, ret));

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k, Ret<Errno> ret)
    {
        var hgm = k.Hgm;
        HugetlbfsInode? file = null;
        if (!Anon)
        {
            file = hgm.HugetlbFileSetup(Size, Pages, out var err);
            if (file is null) { ret.Value = err; yield return StepStatus.After("hugetlb_file_setup"); yield break; }
        }
        var hm = hgm.MmAlloc();
        if (hm is null) { ret.Value = Errno.ENOMEM; yield return StepStatus.After("mm_alloc"); yield break; }
        ulong len = (ulong)(Size * Pages);
        ret.Value = hgm.DoMmap(hm, file, HgmOpText.MapBase, len, 0, writable: true);
        if (ret.Value == Errno.Ok) rc.BindHandle(Bind, new HgmMapping(hm, file, HgmOpText.MapBase, len));
        yield return StepStatus.After("do_mmap");
    }

    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Pages > 1) yield return this with { Pages = 1 };
        if (Pages > 2) yield return this with { Pages = Pages / 2 };
        foreach (long size in HugetlbOpText.ShrinkSize(Size)) yield return this with { Size = size };
    }
}

/// <summary>Base of the operations on one mapping at a byte range.</summary>
public abstract record HgmRangeOp(string Mapping, long Offset, long Length) : Op
{
    public override IEnumerable<string> Uses => [Mapping];
    public override string Args() => $"{Mapping} {HgmOpText.Off(Offset)} {HgmOpText.Off(Length)}{Extra()}";
    protected virtual string Extra() => "";

    public override KernelTask? CreateTask(RunContext rc) =>
        HgmOpText.TryMapping(rc, Mapping, out var m) ? HgmOpText.Task(this, (k, ctx, ret) => Body(k, ctx, m, m.Base + (ulong)Offset, (ulong)Length, ret)) : null;

    protected abstract IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, HgmMapping m, ulong start, ulong len, Ret<Errno> ret);

    public override IEnumerable<Op> ShrinkArgs()
    {
        foreach (long o in HgmOpText.ShrinkOffset(Offset, 4096)) yield return this with { Offset = o };
        if (Length > 4096) yield return this with { Length = 4096 };
        if (Length > 8192) yield return this with { Length = Length / 2 / 4096 * 4096 };
    }

}

/// <summary>`madvise_split a1 OFF LEN`.</summary>
public sealed record MadviseSplitOp(string Mapping, long Offset, long Length) : HgmRangeOp(Mapping, Offset, Length)
{
    public override string Verb => "madvise_split";
    protected override IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, HgmMapping m, ulong start, ulong len, Ret<Errno> ret) =>
        k.Hgm.UnderMmapWriteLock(ctx, m.Mm, () => k.Hgm.VmaOps.HugetlbEnableHgmVma(m.Mm, start, start + len), ret, "hugetlb_enable_hgm_vma");
}

/// <summary>`uffd_register a1 OFF LEN minor|wp`.</summary>
public sealed record UffdRegisterOp(string Mapping, long Offset, long Length, bool Minor) : HgmRangeOp(Mapping, Offset, Length)
{
    public override string Verb => "uffd_register";
    protected override string Extra() => Minor ? " minor" : " wp";
    protected override IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, HgmMapping m, ulong start, ulong len, Ret<Errno> ret) =>
        k.Hgm.UnderMmapWriteLock(ctx, m.Mm, () => k.Hgm.VmaOps.UserfaultfdRegister(m.Mm, start, start + len, Minor), ret, "userfaultfd_register");
}

/// <summary>`uffdio_continue a1 OFF LEN`.</summary>
public sealed record UffdioContinueOp(string Mapping, long Offset, long Length) : HgmRangeOp(Mapping, Offset, Length)
{
    public override string Verb => "uffdio_continue";
    protected override IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, HgmMapping m, ulong start, ulong len, Ret<Errno> ret) =>
        k.Hgm.Faults.MfillAtomicHugetlb(ctx, m.Mm, start, len, ret);
}

/// <summary>`madvise_collapse a1 OFF LEN`.</summary>
public sealed record MadviseCollapseOp(string Mapping, long Offset, long Length) : HgmRangeOp(Mapping, Offset, Length)
{
    public override string Verb => "madvise_collapse";
    protected override IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, HgmMapping m, ulong start, ulong len, Ret<Errno> ret) =>
        k.Hgm.Collapse.HugetlbCollapse(ctx, m.Mm, start, start + len, ret);
}

/// <summary>`hgm_munmap a1 OFF LEN`.</summary>
public sealed record HgmMunmapOp(string Mapping, long Offset, long Length) : HgmRangeOp(Mapping, Offset, Length)
{
    public override string Verb => "hgm_munmap";
    protected override IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, HgmMapping m, ulong start, ulong len, Ret<Errno> ret) =>
        k.Hgm.Unmap.DoVmiMunmap(ctx, m.Mm, start, len, ret);
}

/// <summary>`hgm_mprotect a1 OFF LEN ro|rw`.</summary>
public sealed record HgmMprotectOp(string Mapping, long Offset, long Length, bool Writable) : HgmRangeOp(Mapping, Offset, Length)
{
    public override string Verb => "hgm_mprotect";
    protected override string Extra() => Writable ? " rw" : " ro";
    protected override IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, HgmMapping m, ulong start, ulong len, Ret<Errno> ret) =>
        k.Hgm.Unmap.HugetlbChangeProtection(ctx, m.Mm, start, len, Writable, ret);
}

/// <summary>Base of the operations on one mapping at one offset.</summary>
public abstract record HgmAtOp(string Mapping, long Offset) : Op
{
    public override IEnumerable<string> Uses => [Mapping];
    public override KernelTask? CreateTask(RunContext rc) =>
        HgmOpText.TryMapping(rc, Mapping, out var m) ? HgmOpText.Task(this, (k, ctx, ret) => Body(k, ctx, m, m.Base + (ulong)Offset, ret)) : null;
    protected abstract IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, HgmMapping m, ulong va, Ret<Errno> ret);
}

/// <summary>`hgm_touch a1 OFF [write]`: a user load or store.</summary>
public sealed record HgmTouchOp(string Mapping, long Offset, bool Write = false) : HgmAtOp(Mapping, Offset)
{
    public override string Verb => "hgm_touch";
    public override string Args() => $"{Mapping} {HgmOpText.Off(Offset)}{(Write ? " write" : "")}";
    protected override IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, HgmMapping m, ulong va, Ret<Errno> ret) =>
        k.Hgm.Faults.UserAccess(ctx, m.Mm, va, Write, ret);
    public override IEnumerable<Op> ShrinkArgs()
    {
        if (Write) yield return this with { Write = false };
        foreach (long o in HgmOpText.ShrinkOffset(Offset, 4096)) yield return this with { Offset = o };
    }
}

/// <summary>`hgm_walk a1 OFF`: an HGM walk (follow_hugetlb_page) as a task, one step per level.</summary>
public sealed record HgmWalkOp(string Mapping, long Offset) : HgmAtOp(Mapping, Offset)
{
    public override string Verb => "hgm_walk";
    public override string Args() => $"{Mapping} {HgmOpText.Off(Offset)}";
    protected override IEnumerable<StepStatus> Body(Kernel k, ExecContext ctx, HgmMapping m, ulong va, Ret<Errno> ret) =>
        k.Hgm.Walk.HgmWalkTask(ctx, m.Mm, va, ret);
    public override IEnumerable<Op> ShrinkArgs()
    {
        foreach (long o in HgmOpText.ShrinkOffset(Offset, 4096)) yield return this with { Offset = o };
    }
}

/// <summary>`a2 = hgm_fork a1`.</summary>
public sealed record HgmForkOp(string Mapping) : Op
{
    public override string Verb => "hgm_fork";
    public override string Args() => Mapping;
    public override IEnumerable<string> Uses => [Mapping];
    public override KernelTask? CreateTask(RunContext rc) =>
        HgmOpText.TryMapping(rc, Mapping, out var m) ? HgmOpText.Task(this, (k, ctx, ret) => Body(rc, k, ctx, m, ret)) : null;

    private IEnumerable<StepStatus> Body(RunContext rc, Kernel k, ExecContext ctx, HgmMapping m, Ret<Errno> ret)
    {
        var child = new Ret<HugetlbMm?>();
        foreach (var s in k.Hgm.Fork.DupMmap(ctx, m.Mm, child, ret)) yield return s;
        if (child.Value is { } c) rc.BindHandle(Bind, m with { Mm = c });
    }
}

/// <summary>`hgm_exit a1`.</summary>
public sealed record HgmExitOp(string Mapping) : Op
{
    public override string Verb => "hgm_exit";
    public override string Args() => Mapping;
    public override IEnumerable<string> Uses => [Mapping];
    public override KernelTask? CreateTask(RunContext rc) =>
        HgmOpText.TryMapping(rc, Mapping, out var m) ? HgmOpText.Task(this, (k, ctx, ret) => k.Hgm.Fork.ExitMmap(ctx, m.Mm)) : null;
}

/// <summary>`hgm_punch_hole a1 INDEX`.</summary>
public sealed record HgmPunchHoleOp(string Mapping, long Index) : Op
{
    public override string Verb => "hgm_punch_hole";
    public override string Args() => $"{Mapping} {Index.ToString(CultureInfo.InvariantCulture)}";
    public override IEnumerable<string> Uses => [Mapping];
    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<HgmMapping>(Mapping, out var m) && m.File is { } f ? HgmOpText.Task(this, (k, ctx, ret) => k.Hgm.Unmap.HugetlbfsPunchHole(ctx, f, Index)) : null;
    public override IEnumerable<Op> ShrinkArgs() => HugetlbOpText.ShrinkIndex(Index).Select(i => this with { Index = i });
}

/// <summary>`hgm_truncate a1 PAGES`.</summary>
public sealed record HgmTruncateOp(string Mapping, long Pages) : Op
{
    public override string Verb => "hgm_truncate";
    public override string Args() => $"{Mapping} {Pages.ToString(CultureInfo.InvariantCulture)}";
    public override IEnumerable<string> Uses => [Mapping];
    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<HgmMapping>(Mapping, out var m) && m.File is { } f ? HgmOpText.Task(this, (k, ctx, ret) => k.Hgm.Unmap.HugetlbVmtruncate(ctx, f, Pages)) : null;
    public override IEnumerable<Op> ShrinkArgs() => HugetlbOpText.ShrinkIndex(Pages).Select(i => this with { Pages = i });
}

/// <summary>`hgm_memory_failure a1 INDEX SUBPAGE`.</summary>
public sealed record HgmMemoryFailureOp(string Mapping, long Index, long Subpage) : Op
{
    public override string Verb => "hgm_memory_failure";
    public override string Args() => $"{Mapping} {Index.ToString(CultureInfo.InvariantCulture)} {Subpage.ToString(CultureInfo.InvariantCulture)}";
    public override IEnumerable<string> Uses => [Mapping];
    public override KernelTask? CreateTask(RunContext rc) =>
        rc.TryGet<HgmMapping>(Mapping, out var m) && m.File is { } f ? HgmOpText.Task(this, (k, ctx, ret) => k.Hgm.Unmap.MemoryFailure(ctx, f, Index, Subpage, ret)) : null;
    public override IEnumerable<Op> ShrinkArgs()
    {
        foreach (long i in HugetlbOpText.ShrinkIndex(Index)) yield return this with { Index = i };
        foreach (long i in HugetlbOpText.ShrinkIndex(Subpage)) yield return this with { Subpage = i };
    }
}

/// <summary>`a2 = hgm_alias a1`: a second MAP_SHARED mapping of a1's file in a1's mm, at the
/// next free 512G-aligned address (how the uffd selftests populate a minor-registered area).</summary>
public sealed record HgmAliasOp(string Mapping) : Op
{
    public override string Verb => "hgm_alias";
    public override string Args() => Mapping;
    public override IEnumerable<string> Uses => [Mapping];
    public override KernelTask? CreateTask(RunContext rc) =>
        HgmOpText.TryMapping(rc, Mapping, out var m) && m.File is { } f
            ? HgmOpText.Task(this, (k, ctx, ret) => k.Hgm.UnderMmapWriteLock(ctx, m.Mm, () => Map(rc, k, m, f), ret, "do_mmap"))
            : null;

    private Errno Map(RunContext rc, Kernel k, HgmMapping m, HugetlbfsInode f)
    {
        ulong top = m.Mm.Vmas.Count == 0 ? HgmOpText.MapBase : m.Mm.Vmas[^1].VmEnd;
        ulong at = (top + HgmOpText.MapBase - 1) / HgmOpText.MapBase * HgmOpText.MapBase;
        var err = k.Hgm.DoMmap(m.Mm, f, at, m.Length, 0, writable: true);
        if (err == Errno.Ok) rc.BindHandle(Bind, m with { Base = at });
        return err;
    }
}
