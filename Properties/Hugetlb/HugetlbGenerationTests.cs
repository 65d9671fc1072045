using System.Collections.Immutable;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Generators.Families;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Hugetlb;

/// <summary>
/// Random generation with the HugeTLB family alone finds every HugeTLB buggy variant and shrinks
/// it to a repro no longer than the variant's MaxReproOps (VariantTargets); the correct variants survive the same
/// generation. (A small self-contained driver: seeded PRNG → scenarios → runner → greedy shrink
/// with SequenceShrinker; the shared FsCheck harness drives the same family.)
/// </summary>
[Trait("Category", "hugetlb")]
public class HugetlbGenerationTests
{
    private const int OpsPerScenario = 40;
    private const int MaxScenarios = 300;

    /// <summary>The buggy variants of the HugeTLB/HVO mechanism (other mechanisms' variants need
    /// their own families and are tested with them).</summary>
    public static TheoryData<string> BuggyVariants => new(
        "hugetlb-folio-misaligned", "hvo-remaps-pmd-without-split", "flush-dcache-page-on-tail", "hvo-before-hugetlb-flag",
        "restore-after-hugetlb-flag-cleared", "dissolve-ignores-surplus", "broken-hvo-skips-last-pte",
        "broken-restore-leaks-partial-alloc", "broken-restore-skips-reset");

    /// <summary>Every correct variant: the HugeTLB family must not break any of them.</summary>
    public static TheoryData<string> CorrectVariants => new(
        KernelVariants.All.Where(v => v.Correct).Select(v => v.Name));

    private static (ArchConfig, MachineConfig) Machine(NamedVariant v) =>
        // A variant's Arch is a configuration or an architecture prefix (ScenarioGenerator.Allows).
        (v.Arch is null ? ArchConfig.X86_64_4K : ArchConfig.All.First(a => ScenarioGenerator.Allows(v, a)), new MachineConfig(2L << 30, 2));

    /// <summary>A scenario of the HugeTLB family alone, and its run (generation applies and
    /// checks each operation as it draws it).</summary>
    private static (Scenario S, RunResult R) Generate(NamedVariant v, ulong seed)
    {
        var (arch, machine) = Machine(v);
        var s = new GenState(arch, machine, v);
        var rng = new Prng(seed);
        var family = new HugetlbFamily();
        for (int i = 0; i < OpsPerScenario; i++)
        {
            var op = family.Next(s, rng);
            if (op is null || !s.Append(op)) break;
        }
        return (new Scenario(arch, machine, v.Name, [.. s.Ops]), s.Outcome);
    }

    private static IEnumerable<Op> ShrinkOp(Op op) => op.ShrinkCommon().Concat(op.ShrinkArgs());

    [Theory]
    [MemberData(nameof(BuggyVariants))]
    public void GenerationFindsTheVariantAndShrinksItShort(string name)
    {
        var v = KernelVariants.ByName(name);
        var expected = VariantTargets.Of(name);
        for (int i = 0; i < MaxScenarios; i++)
        {
            var (s, r) = Generate(v, PbtRunner.StableHash(name) + (ulong)i);
            if (r.Violation is null) continue;
            Assert.True(expected.BreakNames.Contains(r.FailedInvariant!), $"{name}: found {r} which it is not known to break\n{s}");
            string target = r.FailedInvariant!;
            var shrunk = SequenceShrinker.Minimize(s.Ops.ToArray(),
                ops => ScenarioRunner.Run(s with { Ops = [.. ops] }).FailedInvariant == target, ShrinkOp, 3000, out _);
            var repro = s with { Ops = [.. shrunk] };
            var again = ScenarioRunner.Run(repro);
            Assert.Equal(target, again.FailedInvariant);
            Assert.True(shrunk.Length <= expected.MaxReproOps, $"{name}: shrunk repro has {shrunk.Length} ops (bound {expected.MaxReproOps}) after scenario {i}:\n{repro with { Expect = again.AsExpectation() }}");
            // The printed repro parses back to the same scenario.
            Assert.Equal(repro.ToString(), Repro.Parse(repro.ToString()).ToString());
            return;
        }
        Assert.Fail($"{name}: no violation in {MaxScenarios} generated scenarios");
    }

    [Theory]
    [MemberData(nameof(CorrectVariants))]
    public void CorrectVariantsSurviveGeneration(string name)
    {
        var v = KernelVariants.ByName(name);
        for (int i = 0; i < 40; i++)
        {
            var (s, r) = Generate(v, PbtRunner.StableHash(name) + (ulong)i);
            Assert.True(r.Violation is null, $"{name}, scenario {i}: {r}\n{s}");
        }
    }

    [Fact]
    public void GenerationReachesTheFailurePathsOnTheCorrectKernel()
    {
        var v = KernelVariants.ByName("default");
        var reached = new SortedDictionary<string, long>(StringComparer.Ordinal);
        for (int i = 0; i < 120; i++)
        {
            var (_, r) = Generate(v, 7000 + (ulong)i);
            Assert.True(r.Violation is null, r.ToString());
            foreach (var (k, n) in r.Reached) reached[k] = reached.GetValueOrDefault(k) + n;
        }
        string all = string.Join(", ", reached.Select(kv => $"{kv.Key}={kv.Value}"));
        foreach (var state in new[] { "hvo.optimized", "hvo.restored", "hvo.restore_enomem", "hugetlb.restore_failed_surplus",
                     "hvo.head_copy_enomem", "hvo.rollback", "hugetlb.surplus_alloc", "hugetlb.dissolved", "mf.hugetlb" })
            Assert.True(reached.ContainsKey(state), $"{state} never reached: {all}");
    }
}
