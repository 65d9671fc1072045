// The HVO benchmark (issue 4): the savings row for 1 TiB of 2M folios on x86-64 4K is produced
// by allocating the whole 1 TiB pool in the engine (524,288 folios, each allocated, prepared
// through vmemmap, optimized — split, head copy, 8 remaps, flush, free — and enqueued), with the
// wall time and peak RSS it took; then the cost of one optimize and one restore measured alone
// on a smaller pool (HvoBench.PerFolio). Targets: ≤ 10 s and ≤ 2 GiB peak RSS for the 1 TiB run
// in a Release build. No invariants run here (the per-step cost of checking is a separate figure).
using System.Diagnostics;
using System.Globalization;
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Bench;

public static class HvoBench
{
    public const string ChildCommand = "hvo-one";

    /// <summary>Child side of `all`: only the 1 TiB pool (no per-folio sample), in a fresh
    /// process so that VmHWM is this work's; prints seconds and peak RSS as key=value pairs.</summary>
    public static int RunChild(string[] args)
    {
        var sw = Stopwatch.StartNew();
        var rows = Savings.Compute(new SavingsOptions(SavingsOptions.TiB, [HvoScheme.OnePageKept], [ArchConfig.X86_64_4K], [2L << 20]));
        sw.Stop();
        long hwm = BootBench.ReadStatusKiB("VmHWM");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"s={sw.Elapsed.TotalSeconds:F3} hwm={hwm} folios={rows[0].Folios}"));
        return 0;
    }

    /// <summary>Runs the 1 TiB savings measurement and the per-folio costs, writing a report to
    /// <paramref name="log"/>. Returns the 1 TiB row.</summary>
    public static SavingsRow Run(TextWriter log, long memoryBytes = SavingsOptions.TiB, int perFolioSample = 16384)
    {
        var proc = Process.GetCurrentProcess();
        var sw = Stopwatch.StartNew();
        var rows = Savings.Compute(new SavingsOptions(memoryBytes, [HvoScheme.OnePageKept], [ArchConfig.X86_64_4K], [2L << 20]));
        sw.Stop();
        proc.Refresh();
        var row = rows[0];
        log.Write(Savings.Format(rows, tsv: false));
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"hvo-bench: {row.Folios} folios of 2M ({ArchConfig.FormatSize(row.AllocatedBytes)}) allocated and optimized in {sw.Elapsed.TotalSeconds:0.00} s ({sw.Elapsed.TotalMilliseconds * 1000 / row.Folios:0.00} us/folio), peak RSS {proc.PeakWorkingSet64 / (1024.0 * 1024 * 1024):0.00} GiB"));
        var (optimize, restore) = PerFolio(perFolioSample);
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"hvo-bench: per 2M folio alone: optimize {optimize:0.00} us, restore {restore:0.00} us ({perFolioSample} folios)"));
        return row;
    }

    /// <summary>Microseconds per hugetlb_vmemmap_optimize_folio and per
    /// hugetlb_vmemmap_restore_folio of a 2M folio on x86-64 4K, each timed alone: a pool is
    /// allocated with the knob off, then every folio is optimized, then every one restored.</summary>
    public static (double OptimizeUs, double RestoreUs) PerFolio(int folios)
    {
        long need = (folios + 1L) * (2L << 20);
        long machine = (need + need / 32 + (1L << 30) + (128L << 20) - 1) / (128L << 20) * (128L << 20);
        var k = Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(machine, 1));
        var h = k.Hugetlb.SizeToHstate(2L << 20)!;
        Knob(k, false);
        Drive(k, (kk, ctx) => kk.Hugetlb.SetMaxHugePages(ctx, h, folios));
        k.Mem.ClearChanged();
        Knob(k, true);
        var pool = h.FoliosByPfn();
        var sw = Stopwatch.StartNew();
        foreach (var f in pool) Drive(k, (kk, ctx) => kk.HugetlbVmemmap.HugetlbVmemmapOptimizeFolio(ctx, h, f));
        double optimize = sw.Elapsed.TotalMilliseconds * 1000 / pool.Count;
        k.Mem.ClearChanged();
        sw.Restart();
        foreach (var f in pool) Drive(k, (kk, ctx) => kk.HugetlbVmemmap.HugetlbVmemmapRestoreFolio(ctx, h, f, new Ret<Errno>()));
        double restore = sw.Elapsed.TotalMilliseconds * 1000 / pool.Count;
        if (k.PageFlags.HugetlbOptimizeVmemmapKey != 0) throw new ModelBugException($"hvo-bench: {k.PageFlags.HugetlbOptimizeVmemmapKey} folios still optimized after restore");
        return (optimize, restore);
    }

    /// <summary>vm.hugetlb_optimize_vmemmap, through its operation.</summary>
    private static void Knob(Kernel k, bool on)
    {
        var t = new Engine.Scenario.HvoKnobOp(on).CreateTask(new Engine.Scenario.RunContext(k))!;
        if (!k.Sched.StartTask(0, t) || !k.Sched.RunToCompletionOrBlock(0, t)) throw new ModelBugException("hvo-bench: knob");
    }

    private static void Drive(Kernel k, Func<Kernel, ExecContext, IEnumerable<StepStatus>> body)
    {
        var t = new LambdaTask("hvo-bench", body);
        if (!k.Sched.StartTask(0, t) || !k.Sched.RunToCompletionOrBlock(0, t, int.MaxValue))
            throw new ModelBugException("hvo-bench: a task did not run to completion");
    }
}
