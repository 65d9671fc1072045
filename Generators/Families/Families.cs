// The operation families the scenario generator draws from, in a fixed order (the order is part
// of what a seed means, so append new families at the end). A family that does not apply to a
// scenario's configuration or variant (IOpFamily.AppliesTo) is skipped for that scenario.
//
// To add a mechanism's operations: write Generators/Families/<Name>Family.cs implementing
// IOpFamily and add one line below. The schedule family starts and interrupts operations of
// every other enabled family, so a new family's operations are interleaved without more work.
namespace PropertySuite.Generators.Families;

public static class Families
{
    public static IReadOnlyList<IOpFamily> All { get; } =
    [
        new CoreFamily(),
        new ScheduleFamily(),
        new PageCacheFamily(),
        new HugetlbFamily(),
        new VmallocFamily(),
    ];

    /// <summary>Looks a family up by name.</summary>
    public static IOpFamily ByName(string name) =>
        All.FirstOrDefault(f => f.Name == name)
        ?? throw new ArgumentException($"unknown family '{name}': known are {string.Join(", ", All.Select(f => f.Name))}");
}
