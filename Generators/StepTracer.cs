// What each step of a replay touched, for `replay --trace`: the init_mm entries it changed
// (ptdump-style: address range, level, old -> new), frames whose owner changed, TLB entries
// each CPU gained or lost, kernel faults recorded, grace periods that ended, and what every
// CPU runs afterwards. It observes only: entry changes come from wrapping init_mm's observer
// (and forwarding every change to it), everything else from comparing snapshots.
using System.Globalization;
using PropertySuite.Engine;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Generators;

public sealed class StepTracer : IPteObserver
{
    private readonly List<string> _entries = new();
    private IPteObserver? _inner;
    private Dictionary<int, HashSet<TlbEntry>> _tlbs = new();
    private List<string> _cpus = new();
    private int _faults;
    private int _gracePeriods;

    /// <summary>Call right after boot (ScenarioRunner.Run's booted hook).</summary>
    public void Attach(Kernel k)
    {
        ArgumentNullException.ThrowIfNull(k);
        _inner = k.SwapperPgDir.Observer;
        k.SwapperPgDir.Observer = this;
        Snapshot(k);
        _faults = k.Faults.Count;
        _gracePeriods = k.Rcu.Completed.Count;
    }

    void IPteObserver.OnPteChange(PageTable mm, PtTable table, int index, Pte oldPte, Pte newPte)
    {
        ulong va = mm.EntryVa(table, index);
        ulong end = va + mm.EntrySize(table) - 1;
        _entries.Add(string.Create(CultureInfo.InvariantCulture, $"{mm.Name} 0x{va:x16}-0x{end:x16} {table.Level,-4} {oldPte} -> {newPte}"));
        _inner?.OnPteChange(mm, table, index, oldPte, newPte);
    }

    /// <summary>The lines describing step <paramref name="step"/> (call from the trace hook).</summary>
    public IReadOnlyList<string> Describe(int step, Op op, Kernel k)
    {
        ArgumentNullException.ThrowIfNull(op);
        ArgumentNullException.ThrowIfNull(k);
        var ci = CultureInfo.InvariantCulture;
        var lines = new List<string> { string.Create(ci, $"step {step}: {op}") };
        lines.AddRange(_entries.Select(e => "  pte   " + e));
        _entries.Clear();
        foreach (var (pfn, count) in k.Mem.Changed.OrderBy(c => c.Pfn))
            lines.Add(string.Create(ci, $"  frame 0x{pfn:x}{(count > 1 ? string.Create(ci, $"-0x{pfn + count - 1:x}") : "")} now {k.Mem.OwnerOf(pfn)}"));
        foreach (var cpu in k.Cpus)
        {
            var now = cpu.Tlb.Entries.ToHashSet();
            var before = _tlbs.GetValueOrDefault(cpu.Id) ?? new HashSet<TlbEntry>();
            foreach (var e in now.Where(e => !before.Contains(e)).OrderBy(e => e.Va)) lines.Add($"  tlb   cpu{cpu.Id} + {e}");
            foreach (var e in before.Where(e => !now.Contains(e)).OrderBy(e => e.Va)) lines.Add($"  tlb   cpu{cpu.Id} - {e}");
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
            $"{(x.InIrq ? "irq " : "")}[{x.Task.Name}]{(x.WaitingFor is { } l ? " waits for " + l.Name : "")}{(x.RcuDepth > 0 ? " in rcu" : "")}"))).ToList();
}
