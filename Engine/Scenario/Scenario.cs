// A scenario: machine configuration + kernel variant + operations (the CPU schedule is the
// `step` lines among them) + an optional expected outcome. Its ToString() is a complete repro
// file; Repro.Parse reads one back.
using System.Collections.Immutable;
using PropertySuite.Engine.Config;

namespace PropertySuite.Engine.Scenario;

/// <summary>What a replay is expected to show.</summary>
/// <param name="Invariant">The invariant that fails, or null for "no violation".</param>
/// <param name="Step">The 1-based step at which it first fails (0: at boot).</param>
public sealed record Expectation(string? Invariant, int Step)
{
    public static readonly Expectation None = new(null, 0);
    public override string ToString() => Invariant is null ? "expect none" : $"expect {Invariant} at {Step}";
}

public sealed record Scenario(
    ArchConfig Arch,
    MachineConfig Machine,
    string VariantName,
    ImmutableArray<Op> Ops,
    Expectation? Expect = null)
{
    /// <summary>Version of the repro language written in the first line.</summary>
    public const int LanguageVersion = 1;
    public const string Magic = "propertysuite-repro";

    public NamedVariant Variant => KernelVariants.ByName(VariantName);

    /// <summary>Boots a fresh kernel for this scenario.</summary>
    public Kernel Boot() => Kernel.Boot(Arch, Machine, Variant.Variant);

    public override string ToString()
    {
        var sb = new System.Text.StringBuilder();
        sb.Append(Magic).Append(' ').Append(LanguageVersion).Append('\n');
        sb.Append("config ").Append(Arch.Name).Append('\n');
        sb.Append("memory ").Append(ArchConfig.FormatSize(Machine.MemoryBytes)).Append('\n');
        sb.Append("cpus ").Append(Machine.Cpus).Append('\n');
        if (Machine.HotplugBytes != 0) sb.Append("hotplug ").Append(ArchConfig.FormatSize(Machine.HotplugBytes)).Append('\n');
        sb.Append("variant ").Append(VariantName).Append('\n');
        foreach (var op in Ops) sb.Append(op).Append('\n');
        if (Expect is not null) sb.Append(Expect).Append('\n');
        return sb.ToString();
    }

    /// <summary>Value equality that compares the operation lists element-wise.</summary>
    public bool SameAs(Scenario other) => ToString() == other.ToString();
}
