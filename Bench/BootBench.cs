// Boot cost as modelled memory grows: a machine of N bytes must cost what its used frames
// (page tables, vmemmap records) cost, not what its total memory would. Each size is booted in
// a fresh child process of this executable so that peak RSS (VmHWM) belongs to that size alone.
using System.Diagnostics;
using System.Globalization;
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Bench;

public static class BootBench
{
    public const string ChildCommand = "boot-one";
    private static readonly string[] Sizes = ["4G", "1T", "64T"];
    private const string Config = "x86_64-4k-l4";

    public static int Run(string[] args)
    {
        string config = args.Length > 0 ? args[0] : Config;
        var table = new TextTable("config", "memory", "boot ms", "RSS before boot MiB", "peak RSS MiB", "pt pages", "vmemmap frames", "sections", "managed MiB");
        foreach (string size in Sizes)
        {
            var fields = ChildProcess.Run(ChildCommand, config, size);
            table.Add(config, size, double.Parse(fields["ms"], CultureInfo.InvariantCulture),
                long.Parse(fields["rss0"], CultureInfo.InvariantCulture) / 1024.0, long.Parse(fields["hwm"], CultureInfo.InvariantCulture) / 1024.0,
                long.Parse(fields["pt"], CultureInfo.InvariantCulture), long.Parse(fields["vmemmap"], CultureInfo.InvariantCulture),
                long.Parse(fields["sections"], CultureInfo.InvariantCulture), long.Parse(fields["managed"], CultureInfo.InvariantCulture) / 1024.0 / 1024.0);
        }
        Console.WriteLine($"Boot of {config} machines, one fresh process each (VmHWM from /proc/self/status):");
        table.Write(Console.Out);
        return 0;
    }

    /// <summary>Child side: boots one machine and prints key=value pairs on one line.</summary>
    public static int RunChild(string[] args)
    {
        var arch = ArchConfig.ByName(args[0]);
        if (!ArchConfig.TryParseSize(args[1], out long bytes)) throw new ArgumentException($"bad size {args[1]}");
        // Boot a small machine first so that JIT compilation is not charged to the measured boot.
        GC.KeepAlive(Kernel.Boot(arch, new MachineConfig(Math.Max(256L << 20, 2 * arch.SectionSize), 1)));
        GC.Collect();
        long rss0 = ReadStatusKiB("VmRSS");
        var clock = Stopwatch.StartNew();
        var k = Kernel.Boot(arch, new MachineConfig(bytes, 2));
        clock.Stop();
        long hwm = ReadStatusKiB("VmHWM");
        long managed = k.Mem.Count(FrameOwner.Free) << arch.PageShift;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"ms={clock.Elapsed.TotalMilliseconds:F1} rss0={rss0} hwm={hwm} pt={k.SwapperPgDir.Tables.Count} vmemmap={k.Mem.Count(FrameOwner.Vmemmap)} sections={k.Mem.NrSections} managed={managed}"));
        GC.KeepAlive(k);
        return 0;
    }

    /// <summary>A "Key:   N kB" line of /proc/self/status, in KiB (-1 where unavailable).</summary>
    public static long ReadStatusKiB(string key)
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(key + ":", StringComparison.Ordinal))
                    return long.Parse(line[(key.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        catch (IOException) { }
        return -1;
    }
}
