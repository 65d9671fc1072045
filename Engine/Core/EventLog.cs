// The kernel-visible actions of the current step, in the order they happened: page-table entry
// stores (old → new), TLB flushes (kind and range) and frees of frames to the buddy allocator,
// each free with what could still reach the frames at that instant (FreeWitness). Invariants
// judge rules of order from them — a make that follows a break whose invalidation has not
// happened yet, or a free that precedes the flush, is wrong even when both happen inside one
// step, where the state between steps cannot show it.
//
// The log holds one step: the runner clears it when a step begins (Kernel.BeginStep).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine;

public enum KernelEventKind : byte { EntryStore, Flush }

/// <summary>Which flush: what it invalidates decides which cached entries it covers.</summary>
public enum FlushKind : byte
{
    /// <summary>flush_tlb_kernel_range: leaf entries (and, on x86, the walk caches) of init_mm.</summary>
    KernelRange,
    /// <summary>__flush_tlb_kernel_pgtable: every level for one kernel address.</summary>
    KernelPgtable,
    /// <summary>flush_tlb_range: every level for a range of one mm.</summary>
    Range,
    /// <summary>flush_tlb_mm: all of one mm.</summary>
    Mm,
    /// <summary>flush_tlb_all.</summary>
    All,
}

/// <summary>One kernel-visible action. For an entry store: the mm, the table level, the VA range
/// the entry translates, old and new. For a flush: the mm (null for flush_tlb_all), the range
/// (an end of 0 is the top of the address space), whether it reached intermediate levels.</summary>
public readonly record struct KernelEvent(
    KernelEventKind Kind, string? Mm, PtLevel Level, ulong Start, ulong End, Pte Old, Pte New, FlushKind Flush, bool WalkCaches, int? Cpu)
{
    public static KernelEvent Store(string mm, PtLevel level, ulong start, ulong end, Pte old, Pte @new, int? cpu) =>
        new(KernelEventKind.EntryStore, mm, level, start, end, old, @new, default, false, cpu);

    public static KernelEvent Flushed(FlushKind kind, string? mm, ulong start, ulong end, bool walkCaches, int? cpu) =>
        new(KernelEventKind.Flush, mm, default, start, end, default, default, kind, walkCaches, cpu);

    /// <summary>Whether this flush invalidates what an entry store at [start, end) of
    /// <paramref name="mm"/> left cached (a table entry needs a flush that reaches the walk caches).</summary>
    public bool Covers(string mm, ulong start, ulong end, bool tableEntry) =>
        Kind == KernelEventKind.Flush && (Mm is null || Mm == mm) && (!tableEntry || WalkCaches)
        && (Flush is FlushKind.Mm or FlushKind.All || VaRange.Overlaps(Start, End, start, end));

    /// <summary>"cpuN" for the CPU a task ran on, or what acted when no task did (a scenario
    /// operation applied directly, or boot).</summary>
    public static string CpuName(int? cpu) => cpu is int c ? $"cpu{c}" : "no task";

    public override string ToString() => Kind == KernelEventKind.EntryStore
        ? $"{CpuName(Cpu)} {Mm} {Level} [{Start:x}, {End:x}): {Old} -> {New}"
        : $"{CpuName(Cpu)} flush {Flush} {Mm ?? "all"} [{Start:x}, {End:x}){(WalkCaches ? " all levels" : " last level")}";
}

/// <summary>What could still reach a frame when it was freed.</summary>
public enum FreeRefKind : byte
{
    /// <summary>A leaf entry of a page table maps it (the linear map excepted: it maps all memory).</summary>
    Leaf,
    /// <summary>A table entry points at it as a lower page table.</summary>
    TableEntry,
    /// <summary>A CPU's TLB holds a leaf translation to it (linear-map translations excepted).</summary>
    Tlb,
    /// <summary>A CPU's walk cache holds a table entry pointing at it.</summary>
    WalkCache,
}

/// <summary>One thing that reached a frame at the instant it was freed: in <see cref="Mm"/> (for
/// a CPU cache, the mm its tag belongs to), at [Va, Va+Size), level <see cref="Level"/>; for a CPU
/// cache, which CPU.</summary>
public readonly record struct FreeReference(FreeRefKind Kind, string Mm, int? Cpu, PtLevel Level, ulong Va, ulong Size, long Pfn, bool Global)
{
    public override string ToString() => Kind switch
    {
        FreeRefKind.Leaf => $"{Mm} {Level} leaf at {Va:x} still maps pfn {Pfn:x}",
        FreeRefKind.TableEntry => $"{Mm} {Level} entry for [{Va:x}+{Size:x}) still points at it as a table",
        FreeRefKind.Tlb => $"{KernelEvent.CpuName(Cpu)} TLB still holds [{Va:x}+{Size:x}) -> pfn {Pfn:x} ({Mm})",
        _ => $"{KernelEvent.CpuName(Cpu)} walk cache still holds the {Mm} {Level} entry for [{Va:x}+{Size:x}) -> table {Pfn:x}",
    };
}

/// <summary>A free of [Pfn, Pfn+Count) (owned <see cref="Owner"/> until then) by
/// <see cref="Who"/>, after the first <see cref="EventIndex"/> events of the step, with everything
/// that still reached those frames at that instant. <see cref="Cpu"/>: the CPU whose task freed
/// them, null when no task ran.</summary>
public sealed record FrameFree(long Pfn, long Count, FrameOwner Owner, string Who, int? Cpu, int EventIndex, IReadOnlyList<FreeReference> Refs)
{
    public override string ToString() => $"{KernelEvent.CpuName(Cpu)} {Who} frees {Owner} frames {Pfn:x}+{Count}";
}

public sealed class EventLog
{
    private readonly List<KernelEvent> _events = new();
    private readonly List<FrameFree> _frees = new();

    public IReadOnlyList<KernelEvent> StepEvents => _events;

    /// <summary>The frees of the step, in order, each placed among <see cref="StepEvents"/>.</summary>
    public IReadOnlyList<FrameFree> StepFrees => _frees;

    public void Add(in KernelEvent e) => _events.Add(e);

    public void AddFree(FrameFree f) => _frees.Add(f);

    public void Clear()
    {
        _events.Clear();
        _frees.Clear();
    }
}
