using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Generators.Families;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// The scenario generator: deterministic per (seed, size, options), lengths that grow with
/// FsCheck's size up to MaxSteps, small machines, swarm subsets, options honoured, and every
/// operation verb of the repro language reachable by generation.
/// </summary>
[Trait("Category", "harness")]
public class ScenarioGeneratorTests
{
    /// <summary>Correct variants, generated without checking invariants: the same scenarios as
    /// checked generation gives (none is violated), at a fraction of the cost.</summary>
    private static readonly ScenarioOptions AnyCorrect = new() { Invariants = [] };

    private static IEnumerable<(Scenario S, IReadOnlyList<string> Swarm)> Sample(ScenarioOptions o, int count, int size = 100) =>
        Enumerable.Range(0, count).Select(i => ScenarioGenerator.BuildWithSwarm((ulong)i * 0x9e3779b9UL + 17, size, o));

    [Fact]
    public void SameSeedSizeAndOptionsGiveTheSameScenario()
    {
        for (ulong seed = 0; seed < 50; seed++)
            Assert.Equal(ScenarioGenerator.Build(seed, 60, AnyCorrect).ToString(), ScenarioGenerator.Build(seed, 60, AnyCorrect).ToString());
        Assert.NotEqual(ScenarioGenerator.Build(1, 100, AnyCorrect).ToString(), ScenarioGenerator.Build(2, 100, AnyCorrect).ToString());
    }

    [Fact]
    public void LengthGrowsWithSizeUpToMaxSteps()
    {
        var o = AnyCorrect with { MaxSteps = 40 };
        Assert.All(Sample(o, 50, size: 0), x => Assert.Single(x.S.Ops));
        var full = Sample(o, 300).Select(x => x.S.Ops.Length).ToList();
        Assert.All(full, n => Assert.InRange(n, 1, 40));
        Assert.True(full.Max() >= 38, $"longest scenario at full size has {full.Max()} operations");
        Assert.True(Sample(o, 300, size: 10).Max(x => x.S.Ops.Length) <= 4);
        Assert.Equal(1, ScenarioGenerator.MaxLength(0, 40));
        Assert.Equal(20, ScenarioGenerator.MaxLength(50, 40));
        Assert.Equal(40, ScenarioGenerator.MaxLength(1000, 40));
    }

    [Fact]
    public void MachinesAreTheOptionsSizesOrLargeEnoughForTheLargestFolioAndOperationsStayOnTheirCpus()
    {
        int large = 0;
        foreach (var (s, _) in Sample(AnyCorrect, 300, size: 40))
        {
            if (s.Machine.MemoryBytes == ScenarioGenerator.LargeMemory(s.Arch)) large++;
            else Assert.Contains(s.Machine.MemoryBytes, AnyCorrect.MemorySizes);
            Assert.InRange(s.Machine.Cpus, 1, 4);
            // Correct variants get the hot-plug family, and with it a hot-plug range of two sections.
            Assert.Equal(HotplugFamily.RangeBytes(s.Arch), s.Machine.HotplugBytes);
            Assert.All(s.Ops, op => Assert.InRange(op.Cpu, 0, s.Machine.Cpus - 1));
            Assert.True(KernelVariants.ByName(s.VariantName).Correct);
        }
        // ScenarioGenerator.LargeMachineShare is 12 %: about 36 of 300.
        Assert.InRange(large, 15, 60);
    }

    [Fact]
    public void OptionsFixTheVariantAndTheConfiguration()
    {
        var o = AnyCorrect with { Variant = "broken-vfree-leaks-page", Config = "arm64-64k-l3" };
        foreach (var (s, _) in Sample(o, 50))
        {
            Assert.Equal("broken-vfree-leaks-page", s.VariantName);
            Assert.Equal("arm64-64k-l3", s.Arch.Name);
            Assert.True(s.Machine.MemoryBytes % s.Arch.SectionSize == 0);
        }
        Assert.Equal(ArchConfig.All.Count, Sample(AnyCorrect, 400, size: 1).Select(x => x.S.Arch.Name).Distinct().Count()); // the configuration does not depend on the size
    }

    [Fact]
    public void BadOptionsAreRefusedNamingTheValue()
    {
        Assert.Contains("unknown variant 'nosuch'", Assert.Throws<ConfigException>(() => new ScenarioOptions { Variant = "nosuch" }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("unknown config 'vax'", Assert.Throws<ConfigException>(() => new ScenarioOptions { Config = "vax" }.Validate()).Message, StringComparison.Ordinal);
        Assert.Throws<ConfigException>(() => new ScenarioOptions { MaxSteps = 0 }.Validate());
    }

    [Fact]
    public void VariantArchRestrictsTheConfigurations()
    {
        var anyArch = new NamedVariant("t", true, "test", new KernelVariant());
        var arm64 = anyArch with { Arch = "arm64" };
        var exact = anyArch with { Arch = "arm64-16k-l3" };
        Assert.Equal(ArchConfig.All, ScenarioGenerator.ConfigsFor(anyArch));
        Assert.All(ScenarioGenerator.ConfigsFor(arm64), a => Assert.Equal(Arch.Arm64, a.Arch));
        Assert.Equal(ArchConfig.All.Count(a => a.Arch == Arch.Arm64), ScenarioGenerator.ConfigsFor(arm64).Count);
        Assert.Equal([ArchConfig.Arm64_16K_L3], ScenarioGenerator.ConfigsFor(exact));
        Assert.Throws<ConfigException>(() => ScenarioGenerator.ConfigsFor(anyArch with { Arch = "arm6" }));
    }

    [Fact]
    public void SwarmEnablesDifferentSubsetsOfFamiliesAndKinds()
    {
        var swarms = Sample(AnyCorrect, 400, size: 1).Select(x => x.Swarm).ToList(); // the swarm does not depend on the size
        Assert.All(swarms, w => Assert.Contains(w, f => Families.All.Any(fam => fam.Name == f && fam is not ScheduleFamily)));
        Assert.Contains(swarms, w => w.Contains(ScheduleFamily.FamilyName));
        Assert.Contains(swarms, w => !w.Contains(ScheduleFamily.FamilyName));
        foreach (var f in Families.All)
            foreach (var kind in f.Kinds)
            {
                Assert.Contains(swarms, w => w.Contains($"{f.Name}/{kind}"));
                Assert.Contains(swarms, w => w.Contains(f.Name) && !w.Contains($"{f.Name}/{kind}"));
            }
        Assert.True(swarms.Select(w => string.Join(",", w)).Distinct().Count() > 50);
    }

    /// <summary>A verb the parser knows but no family generates would never be tested by
    /// random generation: every verb of the repro language must come out of some family for
    /// some variant.</summary>
    [Fact]
    public void EveryVerbOfTheReproLanguageIsGenerated()
    {
        // Round-robin over the variants, up to 150 scenarios each, until every verb was seen
        // (generation runs and checks each scenario, so the sample stops as soon as it can).
        var verbs = OpCatalog.KnownVerbs.Where(v => !OpCatalog.NotGenerated.Contains(v)).Append("step").Append("irq").ToList();
        var seen = new SortedSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < 150 && !verbs.All(seen.Contains); i++)
            foreach (var v in KernelVariants.All)
                foreach (var op in ScenarioGenerator.Build((ulong)i * 0x9e3779b9UL + 17, 100, AnyCorrect with { Variant = v.Name }).Ops)
                {
                    seen.Add(op.Verb);
                    if (op is IrqOp irq) seen.Add(irq.Handler.Verb);
                }
        var missing = verbs.Where(v => !seen.Contains(v)).ToList();
        Assert.True(missing.Count == 0, $"no family in Generators/Families generates: {string.Join(", ", missing)}");
        var drawn = OpCatalog.NotGenerated.Where(seen.Contains).ToList();
        Assert.True(drawn.Count == 0, $"generated although OpCatalog.NotGenerated says no kernel path runs it: {string.Join(", ", drawn)}");
    }

    [Fact]
    public void GeneratedScenariosAreValidRepros()
    {
        foreach (var (s, _) in Sample(AnyCorrect, 200))
            Assert.Equal(s.ToString(), Repro.Parse(s.ToString()).ToString());
    }
}
