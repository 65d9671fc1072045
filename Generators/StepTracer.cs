// What each step of a replay touched, for `replay --trace`: the init_mm entries it changed
// (ptdump-style: address range, level, old -> new), frames whose owner changed, TLB entries
// each CPU gained or lost, kernel faults recorded, grace periods that ended, and what every
// CPU runs afterwards. It observes only: entry changes come from wrapping init_mm's observer
// (and forwarding every change to it), everything else from comparing snapshots.
//
// Readability: consecutive changes of neighbouring entries at one level that differ only by
// their frames advancing in step are coalesced into one range line, as ptdump coalesces
// (`PTE x512 none -> leaf(0x1600-0x17ff,RW)`: one line for a 512-entry split or map, not 512);
// levels are named as the kernel names them for the configuration (the top level is always
// PGD: on x86-64 4-level the P4D is folded into it, on arm64 3-level the PUD); every number is
// printed in one hex style, 0x and lower case. A CPU's line lists, per context, the task, the
// locks it holds, the lock it waits for, whether it is inside an RCU read-side section, and the
// struct-page pointer it holds without a reference (a speculative lookup's, a PFN walker's), with
// the step it was taken at and what it resolves to now.
using System.Globalization;
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Generators;

public sealed class StepTracer : IPteObserver
{
    private readonly record struct Change(string Mm, ulong Va, ulong Size, PtLevel Level, Pte Old, Pte New);

    private readonly List<Change> _entries = new();
    private IPteObserver? _inner;
    private Dictionary<int, HashSet<TlbEntry>> _tlbs = new();
    private List<string> _cpus = new();
    private int _faults;
    private int _gracePeriods;
    private ArchConfig? _arch;

    /// <summary>Call right after boot (ScenarioRunner.Run's booted hook).</summary>
    public void Attach(Kernel k)
    {
        ArgumentNullException.ThrowIfNull(k);
        _arch = k.Arch;
        _inner = k.SwapperPgDir.Observer;
        k.SwapperPgDir.Observer = this;
        Snapshot(k);
        _faults = k.Faults.Count;
        _gracePeriods = k.Rcu.Completed.Count;
    }

    void IPteObserver.OnPteChange(PageTable mm, PtTable table, int index, Pte oldPte, Pte newPte)
    {
        _entries.Add(new Change(mm.Name, mm.EntryVa(table, index), mm.EntrySize(table), table.Level, oldPte, newPte));
        _inner?.OnPteChange(mm, table, index, oldPte, newPte);
    }

    /// <summary>The kernel's name of a level in this configuration: the top level is the PGD.</summary>
    public static string LevelName(ArchConfig arch, PtLevel level)
    {
        ArgumentNullException.ThrowIfNull(arch);
        return level == arch.TopLevel ? "PGD" : level.ToString().ToUpperInvariant();
    }

    /// <summary>Whether <paramref name="next"/> continues a run that starts at <paramref name="first"/>
    /// and has <paramref name="n"/> entries: same mm and level, the next address, the same kinds
    /// and permissions, and leaf frames advancing by one entry's worth of pages.</summary>
    private bool Continues(Change first, int n, Change next)
    {
        if (next.Mm != first.Mm || next.Level != first.Level || next.Size != first.Size) return false;
        if (next.Va != first.Va + (ulong)n * first.Size) return false;
        return Same(first.Old, next.Old, n, first.Size) && Same(first.New, next.New, n, first.Size);
    }

    private bool Same(Pte a, Pte b, int n, ulong size)
    {
        if (a.Kind != b.Kind || a.Writable != b.Writable || a.Cont != b.Cont) return false;
        return a.Kind switch
        {
            PteKind.None => true,
            PteKind.Leaf => b.Pfn == a.Pfn + n * (long)(size >> _arch!.PageShift),
            _ => false, // table pages are not contiguous: one line each
        };
    }

    private static string Hex(long v) => string.Create(CultureInfo.InvariantCulture, $"0x{v:x}");

    private static string Format(Pte p, int n, ulong size, int pageShift) => p.Kind switch
    {
        PteKind.None => "none",
        PteKind.Table => $"table({Hex(p.Pfn)})",
        _ => $"leaf({Hex(p.Pfn)}{(n > 1 ? "-" + Hex(p.Pfn + (n - 1) * (long)(size >> pageShift) + (long)(size >> pageShift) - 1) : "")},{(p.Writable ? "RW" : "RO")}{(p.Cont ? ",CONT" : "")})",
    };

    private IEnumerable<string> EntryLines()
    {
        var ci = CultureInfo.InvariantCulture;
        for (int i = 0; i < _entries.Count;)
        {
            var first = _entries[i];
            int n = 1;
            while (i + n < _entries.Count && Continues(first, n, _entries[i + n])) n++;
            ulong end = first.Va + (ulong)n * first.Size - 1;
            string count = n > 1 ? string.Create(ci, $" x{n}") : "";
            yield return string.Create(ci,
                $"  pte   {first.Mm} 0x{first.Va:x16}-0x{end:x16} {LevelName(_arch!, first.Level)}{count} {Format(first.Old, n, first.Size, _arch!.PageShift)} -> {Format(first.New, n, first.Size, _arch!.PageShift)}");
            i += n;
        }
    }

    private static string FormatTlb(TlbEntry e) =>
        string.Create(CultureInfo.InvariantCulture, $"[0x{e.Va:x}+0x{e.Size:x}) -> pfn 0x{e.Pfn:x} {(e.Writable ? "RW" : "RO")}{(e.Asid == TlbEntry.Global ? "" : $" asid {e.Asid}")}");

    /// <summary>The lines describing step <paramref name="step"/> (call from the trace hook).</summary>
    public IReadOnlyList<string> Describe(int step, Op op, Kernel k)
    {
        ArgumentNullException.ThrowIfNull(op);
        ArgumentNullException.ThrowIfNull(k);
        var ci = CultureInfo.InvariantCulture;
        var lines = new List<string> { string.Create(ci, $"step {step}: {op}") };
        lines.AddRange(EntryLines());
        _entries.Clear();
        foreach (var r in k.Mem.Changed.OrderBy(c => c.Start))
            lines.Add(string.Create(ci, $"  frame 0x{r.Start:x}{(r.Count > 1 ? string.Create(ci, $"-0x{r.End - 1:x}") : "")} now {k.Mem.OwnerOf(r.Start)}"));
        foreach (var cpu in k.Cpus)
        {
            var now = cpu.Tlb.Entries.ToHashSet();
            var before = _tlbs.GetValueOrDefault(cpu.Id) ?? new HashSet<TlbEntry>();
            foreach (var e in now.Where(e => !before.Contains(e)).OrderBy(e => e.Va)) lines.Add($"  tlb   cpu{cpu.Id} + {FormatTlb(e)}");
            foreach (var e in before.Where(e => !now.Contains(e)).OrderBy(e => e.Va)) lines.Add($"  tlb   cpu{cpu.Id} - {FormatTlb(e)}");
        }
        for (int i = _faults; i < k.Faults.Count; i++) lines.Add($"  fault {k.Faults[i]}");
        for (int i = _gracePeriods; i < k.Rcu.Completed.Count; i++)
        {
            var (seq, who, still) = k.Rcu.Completed[i];
            lines.Add(string.Create(ci, $"  rcu   grace period {seq} ({who}) ended{(still.Count > 0 ? "; still inside: " + string.Join(", ", still) : "")}"));
        }
        var cpus = CpuStates(k);
        for (int c = 0; c < cpus.Count; c++)
            if (c >= _cpus.Count || cpus[c] != _cpus[c]) lines.Add($"  cpu{c}  {cpus[c]}");
        _faults = k.Faults.Count;
        _gracePeriods = k.Rcu.Completed.Count;
        Snapshot(k);
        return lines;
    }

    private void Snapshot(Kernel k)
    {
        _tlbs = k.Cpus.ToDictionary(c => c.Id, c => c.Tlb.Entries.ToHashSet());
        _cpus = CpuStates(k);
    }

    private static List<string> CpuStates(Kernel k) =>
        k.Cpus.Select(c => c.Idle ? "idle" : string.Join(" <- ", c.Contexts.Select(x =>
            $"{(x.InIrq ? "irq " : "")}[{x.Task.Name}]{(x.Held.Count > 0 ? " holds " + string.Join(", ", x.Held.Select(h => h.Name)) : "")}{(x.WaitingFor is { } l ? " waits for " + l.Name : "")}{(x.RcuDepth > 0 ? " in rcu" : "")}{PagePointer(k, x)}"))).ToList();

    /// <summary>The struct-page pointer a context holds without a reference, with what it
    /// resolves to now: a head that changed since the pointer was taken, or a struct page whose
    /// vmemmap mapping became read-only, is the stale pointer of an HVO race.</summary>
    private static string PagePointer(Kernel k, ExecContext x)
    {
        if (x.PagePointer is not { } p) return "";
        var ci = CultureInfo.InvariantCulture;
        ulong headNow = k.PageFlags.CompoundHead(k.PageFlags.PeekView, p.Page);
        var w = k.SwapperPgDir.Walk(p.Page);
        string now = (headNow != p.HeadThen ? $", head then {Hex((long)p.HeadThen)} now {Hex((long)headNow)}" : "")
            + (!w.IsLeaf ? ", vmemmap now unmapped" : !w.Entry.Writable ? $", vmemmap now read-only (leaf {Hex(w.Entry.Pfn)})" : "");
        return string.Create(ci, $" page pointer {Hex((long)p.Page)} (pfn {Hex(k.Arch.PageToPfn(p.Page))}, {p.Source} at step {p.Step}{now})");
    }
}
