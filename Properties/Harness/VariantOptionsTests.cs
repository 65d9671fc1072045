// Variants by mechanism: each mechanism's options record refuses combinations that never
// existed, by name, before anything boots; every catalogued variant is valid wherever it may run.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Generators;

namespace PropertySuite.Properties.Harness;

[Trait("Category", "harness")]
public class VariantOptionsTests
{
    public static TheoryData<string, string, string> Impossible => new()
    {
        { "x86_64-4k-l4", "two-page", nameof(HvoScheme.TwoPagesKept) },
        { "x86_64-4k-l4", "arm64 break-before-make strategy", nameof(VmemmapUpdate.StopMachine) },
        { "x86_64-4k-l4", "arm64 behaviours", nameof(HugetlbOptions.Arm64Hvo) },
        { "arm64-4k-l4", "needs HVO", nameof(HugetlbOptions.TailVmemmapWritable) },
        { "arm64-4k-l4", "stop_machine strategy", nameof(Breakage.BbmSkipsInvalidate) },
    };

    private static KernelVariant Make(string what) => what switch
    {
        nameof(HvoScheme.TwoPagesKept) => new() { Name = "t", Hugetlb = new() { Hvo = HvoScheme.TwoPagesKept } },
        nameof(VmemmapUpdate.StopMachine) => new() { Name = "t", Arm64 = new() { VmemmapUpdate = VmemmapUpdate.StopMachine } },
        nameof(HugetlbOptions.Arm64Hvo) => new() { Name = "t", Hugetlb = new() { Arm64Hvo = true } },
        nameof(HugetlbOptions.TailVmemmapWritable) => new() { Name = "t", Hugetlb = new() { Hvo = HvoScheme.Off, TailVmemmapWritable = true } },
        _ => new() { Name = "t", Broken = new() { BbmSkipsInvalidate = true } },
    };

    [Theory]
    [MemberData(nameof(Impossible))]
    public void AnImpossibleCombinationIsRefusedByNameBeforeBoot(string config, string reason, string what)
    {
        var e = Assert.Throws<ConfigException>(() => Kernel.Boot(ArchConfig.ByName(config), new MachineConfig(256L << 20, 1), Make(what)));
        Assert.Contains("variant 't'", e.Message, StringComparison.Ordinal);
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EveryCataloguedVariantIsValidOnEveryConfigurationItAllows()
    {
        foreach (var v in KernelVariants.All)
            foreach (var arch in ScenarioGenerator.ConfigsFor(v))
                v.Variant.Validate(arch);
    }
}
