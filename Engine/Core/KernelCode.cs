// The base of every mechanism (the model of one kernel source file): the services that file's
// code calls, under the names the kernel calls them, so that a mechanism's body reads like the
// C it stands for (SpinLock(ctx, HugetlbLock), CompoundHead(v, page), FlushTlbKernelRange(...)).
// Services only: a mechanism that calls another mechanism names it explicitly.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

public abstract class KernelCode
{
    private protected readonly Kernel K;

    private protected KernelCode(Kernel k) => K = k;

    protected ArchConfig Arch => K.Arch;
    /// <summary>The HugeTLB/HVO options of the variant (mm/hugetlb.c, mm/hugetlb_vmemmap.c).</summary>
    protected HugetlbOptions Hvo => K.Variant.Hugetlb;
    /// <summary>The deliberate breakages of the variant (meta-tests only).</summary>
    protected Breakage Broken => K.Variant.Broken;
    protected PhysMem Mem => K.Mem;
    /// <summary>swapper_pg_dir (init_mm.pgd).</summary>
    protected PageTable InitMm => K.SwapperPgDir;
    /// <summary>init_mm.page_table_lock.</summary>
    protected KernelLock PageTableLock => K.InitMm.PageTableLock;

    protected void Note(string state) => K.Log.Note(state);
    protected void RecordFault(FaultKind kind, ExecContext? ctx, ulong va, string detail) => K.Log.RecordFault(kind, ctx, va, detail);

    protected IEnumerable<StepStatus> SpinLock(ExecContext ctx, KernelLock l) => K.Locks.SpinLock(ctx, l);
    protected IEnumerable<StepStatus> SpinLock(ExecContext ctx, KernelLock l, bool stepWhenTaken) => K.Locks.SpinLock(ctx, l, stepWhenTaken);
    protected void SpinUnlock(ExecContext ctx, KernelLock l) => K.Locks.SpinUnlock(ctx, l);
    protected void RcuReadLock(ExecContext ctx) => K.Rcu.RcuReadLock(ctx);
    protected void RcuReadUnlock(ExecContext ctx) => K.Rcu.RcuReadUnlock(ctx);
    protected IEnumerable<StepStatus> SynchronizeRcu(ExecContext ctx) => K.Rcu.SynchronizeRcu(ctx);
    protected void FlushTlbKernelRange(ulong start, ulong end) => K.Tlb.FlushTlbKernelRange(start, end);
    protected void FlushTlbAll() => K.Tlb.FlushTlbAll();

    protected ulong PfnToPage(long pfn) => Arch.PfnToPage(pfn);
    protected long PageToPfn(ulong page) => Arch.PageToPfn(page);

    protected VmemmapFrameContent FrameContent(long frame) => K.StructPages.FrameContent(frame);
    protected VmemmapFrameContent PeekFrameContent(long frame) => K.StructPages.PeekFrameContent(frame);
    protected long? FrameOf(ulong va, out bool writable) => K.Mmu.FrameOf(va, out writable);
    protected bool Translate(ExecContext? ctx, ulong va, bool write, out long frame, out bool writable) => K.Mmu.Translate(ctx, va, write, out frame, out writable);
    protected bool ReadStructPage(ExecContext? ctx, ulong page, out StructPage value) => K.Mmu.ReadStructPage(ctx, page, out value);
    protected bool WriteStructPage(ExecContext? ctx, ulong page, in StructPage value, string what) => K.Mmu.WriteStructPage(ctx, page, value, what);
    protected bool ModifyPageFlags(ExecContext? ctx, ulong page, PageFlags set, PageFlags clear, string what) => K.PageFlags.ModifyPageFlags(ctx, page, set, clear, what);

    // include/linux/page-flags.h, through a view
    protected VmemmapView View(ExecContext? ctx) => K.PageFlags.View(ctx);
    protected VmemmapView PeekView => K.PageFlags.PeekView;
    protected ulong CompoundHead(in VmemmapView v, ulong page) => K.PageFlags.CompoundHead(v, page);
    protected bool PageHead(in VmemmapView v, ulong page) => K.PageFlags.PageHead(v, page);
    protected bool PageTail(in VmemmapView v, ulong page) => K.PageFlags.PageTail(v, page);
    protected bool PageCompound(in VmemmapView v, ulong page) => K.PageFlags.PageCompound(v, page);
    protected bool PageHuge(in VmemmapView v, ulong page) => K.PageFlags.PageHuge(v, page);
    protected bool PageIsFakeHead(in VmemmapView v, ulong page) => K.PageFlags.PageIsFakeHead(v, page);
    protected bool FolioTestHugetlb(in VmemmapView v, ulong folio) => K.PageFlags.FolioTestHugetlb(v, folio);
    protected bool FolioTestHugetlbVmemmapOptimized(in VmemmapView v, ulong folio) => K.PageFlags.FolioTestHugetlbVmemmapOptimized(v, folio);
    protected int FolioRefCount(in VmemmapView v, ulong folio) => K.PageFlags.FolioRefCount(v, folio);
}
