// The incremental forms of the issue-9 restatements agree with their full scans after every step
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

    private static IEnumerable<(string Name, Func<IKernelView, Violation?> Incremental, Func<IKernelView, Violation?> Full)> Pairs()
    {
        yield return (Buddy.Name, Buddy.Check, Buddy.CheckFullScan);
        yield return (Audit.Name, Audit.Check, Audit.CheckFullScan);
    }

    [Theory]
    [InlineData("default", "x86_64-4k-l4", 0)]
    [InlineData("default", "arm64-16k-l3", 0)]
    [InlineData("broken-truncate-frees-twice", "x86_64-4k-l4", 1)]
    [InlineData("broken-pfn-walk-skips-put", "x86_64-4k-l4", 1)]
    [InlineData("default", "arm64-4k-l4", 0)]
    public void IncrementalVerdictsEqualFullScans(string variant, string config, int mustFind)
    {
        var nv = KernelVariants.ByName(variant);
        var arch = ArchConfig.ByName(config);
        int found = 0, steps = 0;
        for (int seed = 0; seed < 20; seed++)
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
                foreach (var (name, inc, full) in Pairs())
                {
                    // The verdict, and the frame it names first (either form may list other holders).
                    static string? Verdict(Violation? v) => v?.Evidence.Split(" has ")[0];
                    string? f = Verdict(full(s.Engine)), n = Verdict(inc(s.Engine));
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
