using PropertySuite.Engine;
using PropertySuite.Engine.Config;

namespace PropertySuite.Properties.EngineCore;

/// <summary>Small machines for unit tests of the engine core.</summary>
internal static class Machines
{
    public static Kernel Boot(string config = "x86_64-4k-l4", string memory = "256M", int cpus = 2)
    {
        if (!ArchConfig.TryParseSize(memory, out long bytes)) throw new ArgumentException(memory);
        return Kernel.Boot(ArchConfig.ByName(config), new MachineConfig(bytes, cpus));
    }

    /// <summary>split_pud or split_pmd, as the entry's level asks (either throws on an entry
    /// that is not a block of its level).</summary>
    public static Engine.Mm.PtTable? SplitBlock(this Kernel k, Engine.Mm.PtTable t, int index) =>
        t.Level == PtLevel.Pud ? k.Pgtable.SplitPud(t, index) : k.Pgtable.SplitPmd(t, index);

    /// <summary>Every supported configuration's name, for theories.</summary>
    public static TheoryData<string> Configs => new(ArchConfig.All.Select(c => c.Name));
}
