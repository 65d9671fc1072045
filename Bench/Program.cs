// The benchmark front end: `dotnet run --project Bench -c Release -- <command> [args]`.
//
// Commands are plain words dispatched through the table below (no reflection, no packages).
// Each prints aligned plain-text tables. Nothing here is a test: numbers vary by machine.
using PropertySuite.Bench;

var commands = new SortedDictionary<string, (string Help, Func<string[], int> Run)>(StringComparer.Ordinal)
{
    ["all"] = ("every figure of the performance table next to its goal, ratios measured in one process: all [SEEDS=3] [--tsv FILE]",
        AllBench.Run),
    ["compare"] = ("two files written by all --tsv side by side, B over A: compare A.tsv B.tsv",
        AllBench.Compare),
    [HvoBench.ChildCommand] = ("(internal) the 1 TiB HVO pool alone in this process, for all",
        HvoBench.RunChild),
    ["repro-cost"] = ("where one run of a repro's time goes: median ms per run with no, all and each invariant: repro-cost FILE [RUNS=20]",
        ReproCostBench.Run),
    ["boot"] = ("construction time, peak RSS, page-table pages and vmemmap frames of 4G, 1T and 64T x86_64-4k-l4 machines, each in a fresh child process",
        BootBench.Run),
    [BootBench.ChildCommand] = ("(internal) boot one machine in this process and report: boot-one CONFIG SIZE",
        BootBench.RunChild),
    ["throughput"] = ("struct-page reads/s, map/unmap of 4K and 2M ranges/s, scenario steps/s with all invariants vs none; throughput each: steps/s with each invariant alone",
        ThroughputBench.Run),
    ["invariants"] = ("cost of each registered invariant per check after ~50 vmalloc/vfree steps, on machines of growing size",
        InvariantCostBench.Run),
    ["shrink"] = ("SequenceShrinker on long planted-bug sequences",
        _ => { PropertySuite.Generators.Harness.ShrinkBenchmark.Run(Console.Out); return 0; }),
    ["find"] = ("time to the first failure and to the shrunk repro for every buggy variant, over N base seeds: find [N=5] [VARIANT...]",
        FindBench.Run),
    ["hgm"] = ("HGM scenario steps/s with all invariants vs none, 1,000 HGM-mapped 2M folios (x86_64-4k-l4 4G): hgm [FOLIOS=1000] [STEPS=2000]",
        HgmBench.Run),
    ["hvo"] = ("a 1 TiB pool of 2M folios with HVO on x86_64-4k-l4 (the savings row for 1 TiB), and per-folio optimize/restore cost",
        _ => { HvoBench.Run(Console.Out); return 0; }),
};

if (args.Length == 0 || !commands.TryGetValue(args[0], out var command))
{
    Console.Error.WriteLine(args.Length == 0 ? "usage: propertysuite-bench <command> [args]" : $"unknown command '{args[0]}'");
    Console.Error.WriteLine("commands:");
    foreach (var (name, (help, _)) in commands)
        if (name != BootBench.ChildCommand && name != HvoBench.ChildCommand) Console.Error.WriteLine($"  {name,-12} {help}");
    return 2;
}
return command.Run(args[1..]);
