namespace PropertySuite.Engine.Config;

/// <summary>
/// The size of a modelled machine: how much memory is present at boot, how many CPUs, and how
/// much of the physical address space above boot memory is reserved for hot-plug. Memory is a
/// whole number of memory sections starting at PFN 0 (one node, one zone).
/// </summary>
public sealed record MachineConfig(long MemoryBytes, int Cpus, long HotplugBytes = 0)
{
    /// <summary>Largest machine the model accepts: 64 TiB, the x86-64 4-level vmemmap limit.</summary>
    public const long MaxMemoryBytes = 64L << 40;
    public const int MaxCpus = 64;

    /// <summary>Checks the size against the configuration.</summary>
    /// <exception cref="ConfigException">Names the value and the rule it breaks.</exception>
    public void Validate(ArchConfig arch)
    {
        if (MemoryBytes <= 0 || MemoryBytes % arch.SectionSize != 0)
            throw new ConfigException($"memory {ArchConfig.FormatSize(MemoryBytes)}: must be a positive multiple of the {ArchConfig.FormatSize(arch.SectionSize)} memory section on {arch.Name}");
        if (HotplugBytes < 0 || HotplugBytes % arch.SectionSize != 0)
            throw new ConfigException($"hotplug {ArchConfig.FormatSize(HotplugBytes)}: must be a non-negative multiple of the {ArchConfig.FormatSize(arch.SectionSize)} memory section on {arch.Name}");
        if (MemoryBytes + HotplugBytes > MaxMemoryBytes)
            throw new ConfigException($"memory {ArchConfig.FormatSize(MemoryBytes + HotplugBytes)}: the model holds at most {ArchConfig.FormatSize(MaxMemoryBytes)}");
        if (MemoryBytes + HotplugBytes > arch.LinearMapSize)
            throw new ConfigException($"memory {ArchConfig.FormatSize(MemoryBytes + HotplugBytes)}: the linear map of {arch.Name} covers at most {ArchConfig.FormatSize(arch.LinearMapSize)} ({arch.VaBits}-bit VA)");
        if (Cpus < 1 || Cpus > MaxCpus)
            throw new ConfigException($"cpus {Cpus}: must be between 1 and {MaxCpus}");
        if (MemoryBytes < 2 * arch.SectionSize && MemoryBytes < (256L << 20))
            throw new ConfigException($"memory {ArchConfig.FormatSize(MemoryBytes)}: boot needs at least two sections or 256M on {arch.Name}");
    }
}
