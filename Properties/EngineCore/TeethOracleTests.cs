// The incremental forms of the issue-9 restatements and of the vmalloc invariants agree with their full scans after every step
// of generated scenarios that draw from every family (the correct kernel and the breakages they
// exist for). Runs of a breakage stop at the first violation; the verdicts must agree up to and
// including it.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Generators;
using PropertySuite.Generators.Families;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.EngineCore;

[Trait("Category", "engine")]
public class TeethOracleTests
{
    private static readonly BuddyWellFormed Buddy = new();
    private static readonly RefcountAudit Audit = new();
    private static readonly VmallocMappingsExact VmallocExact = new();
    private static readonly HugeVmapLeafOnlyWhereAllowed HugeVmap = new();

    // The verdict compared: the whole evidence, except the audit's, where only the frame it names
    // first must agree (either form may list other holders).
    private static string? Whole(Violation? v) => v?.Evidence;
    private static string? FrameNamed(Violation? v) => v?.Evidence.Split(" has ")[0];

    private static IEnumerable<(string Name, Func<IKernelView, Violation?> Incremental, Func<IKernelView, Violation?> Full, Func<Violation?, string?> Verdict)> Pairs()
    {
        yield return (Buddy.Name, Buddy.Check, Buddy.CheckFullScan, Whole);
        yield return (Audit.Name, Audit.Check, Audit.CheckFullScan, FrameNamed);
        yield return (VmallocExact.Name, VmallocExact.Check, VmallocExact.CheckFullScan, Whole);
        yield return (HugeVmap.Name, HugeVmap.Check, HugeVmap.CheckFullScan, Whole);
    }

    /// <summary>Scenarios per row. Each operation comes from a family drawn uniformly from
    /// Families.All, so adding a family reshuffles every row's scenarios: 20 left
    /// broken-vunmap-range-overshoots without a violation once HvoBatchWindowFamily was added.</summary>
    private const int Seeds = 40;

    [Theory]
    [InlineData("default", "x86_64-4k-l4", 0)]
    [InlineData("default", "arm64-16k-l3", 0)]
    [InlineData("broken-truncate-frees-twice", "x86_64-4k-l4", 1)]
    [InlineData("broken-pfn-walk-skips-put", "x86_64-4k-l4", 1)]
    [InlineData("default", "arm64-4k-l4", 0)]
    [InlineData("broken-vmalloc-no-guard-page", "x86_64-4k-l4", 1)]
    [InlineData("broken-vunmap-range-overshoots", "x86_64-4k-l4", 1)]
    [InlineData("broken-huge-vmalloc-ignores-opt-in", "arm64-16k-l3", 1)]
    [InlineData("broken-cont-pte-vmap-ignores-phys-alignment", "arm64-4k-l4", 1)]
    public void IncrementalVerdictsEqualFullScans(string variant, string config, int mustFind)
    {
        var nv = KernelVariants.ByName(variant);
        var arch = ArchConfig.ByName(config);
        int found = 0, steps = 0;
        for (int seed = 0; seed < Seeds; seed++)
        {
            var s = new GenState(arch, new MachineConfig(256L << 20, 2), nv, []);
            var rng = new Prng((ulong)(seed * 7919 + variant.Length));
            bool broke = false;
            for (int i = 0; i < 40 && !broke; i++)
            {
                var family = Families.All[rng.Next(Families.All.Count)];
                if (family.Next(s, rng) is not { } op) continue;
                s.Append(op);
                steps++;
                foreach (var (name, inc, full, verdict) in Pairs())
                {
                    string? f = verdict(full(s.Engine)), n = verdict(inc(s.Engine));
                    Assert.True(f == n, $"{variant} seed {seed} after `{op}`: {name} full scan says {f ?? "ok"}, incremental {n ?? "ok"}\n{string.Join("\n", s.Ops)}");
                    broke |= f is not null;
                }
            }
            if (broke) found++;
        }
        Assert.True(steps > 300, $"only {steps} steps generated");
        if (mustFind > 0) Assert.True(found >= mustFind, $"{variant}: no scenario broke an invariant");
        else Assert.Equal(0, found);
    }
}
