// The operation families the scenario generator draws from, in a fixed order. Each family draws
// from its own stream, forked from the scenario seed by its name (so names must stay stable and
// unique): a new family changes only the scenarios it takes part in, and wherever it is placed
// in the list, the slots of a scenario that does not enable it are filled as before (append
// new families at the end all the same, so that scenarios that enable it keep their order of
// families). A family that does not apply to a scenario's configuration or variant
// (IOpFamily.AppliesTo) is skipped for that scenario.
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
        new HgmFamily(),
        new HotplugFamily(),
        new HvoSplitRaceFamily(),
        new HvoBatchWindowFamily(),
    ];

    /// <summary>Looks a family up by name.</summary>
    public static IOpFamily ByName(string name) =>
        All.FirstOrDefault(f => f.Name == name)
        ?? throw new ArgumentException($"unknown family '{name}': known are {string.Join(", ", All.Select(f => f.Name))}");
}
