// The incremental HGM invariants agree with their full-scan oracles: after every step of
// generated HGM scenarios (the HGM family alone, so every step is an HGM operation), under the
// correct kernel, v2 mapcounts, and the two breakages the counting invariants exist for,
// MapcountEqualsPageTableReferences, RefcountCoversMappings and UserLeafMapsLiveFolio give the same verdict by
// recounting only the folios the step touched (through the rmap) as by counting every user
// leaf of every folio. Runs stop at the first violation (the oracle keeps reporting it after).
// What the incremental checks cannot see by design — a count changed in a step without any
// entry store, or an entry in an mm its file's i_mmap does not list — no engine path does in
// these variants; the comparison would show it if one did.
using PropertySuite.Engine.Config;
using PropertySuite.Generators;
using PropertySuite.Generators.Families;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Hgm;

[Trait("Category", "hgm")]
public class HgmIncrementalOracleTests
{
    [Theory]
    [InlineData("default", 0)]
    [InlineData("hgm-v2-hvo-off", 0)]
    [InlineData("broken-hgm-continue-skips-mapcount", 1)]
    [InlineData("broken-hgm-collapse-skips-folio-get", 1)]
    [InlineData("broken-hgm-punch-hole-skips-unmap", 1)]
    public void IncrementalVerdictsEqualFullScans(string variant, int mustFind)
    {
        var mapcount = new MapcountEqualsPageTableReferences();
        var refcount = new RefcountCoversMappings();
        var live = new UserLeafMapsLiveFolio();
        var family = new HgmFamily();
        var nv = KernelVariants.ByName(variant);
        int found = 0, steps = 0;
        for (int seed = 0; seed < 25; seed++)
        {
            var s = new GenState(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 2), nv, []);
            var rng = new Prng((ulong)(seed * 7919 + variant.Length));
            for (int i = 0; i < 40; i++)
            {
                if (family.Next(s, rng) is not { } op) continue;
                s.Append(op);
                steps++;
                var k = s.Engine;
                // The verdict and the folio it names (the evidence's sample entry may differ).
                static string? Verdict(Violation? v) => v is null ? null : v.Invariant + ": " + v.Evidence.Split(':')[0];
                string? fullM = Verdict(mapcount.CheckFullScan(k)), incM = Verdict(mapcount.Check(k));
                string? fullR = Verdict(refcount.CheckFullScan(k)), incR = Verdict(refcount.Check(k));
                Assert.True(fullM == incM, $"{variant} seed {seed} after `{op}`: mapcount full scan says {fullM ?? "ok"}, incremental {incM ?? "ok"}\n{string.Join("\n", s.Ops)}");
                Assert.True(fullR == incR, $"{variant} seed {seed} after `{op}`: refcount full scan says {fullR ?? "ok"}, incremental {incR ?? "ok"}\n{string.Join("\n", s.Ops)}");
                string? fullL = live.CheckFullScan(k)?.Invariant, incL = live.Check(k)?.Invariant;
                Assert.True(fullL == incL, $"{variant} seed {seed} after `{op}`: live-folio full scan says {fullL ?? "ok"}, incremental {incL ?? "ok"}\n{string.Join("\n", s.Ops)}");
                if (fullM is not null || fullR is not null || fullL is not null) { found++; break; }
            }
        }
        Assert.True(steps > 500, $"only {steps} steps generated");
        if (mustFind > 0) Assert.True(found >= mustFind, $"{variant}: no scenario broke a counting invariant");
        else Assert.Equal(0, found);
    }
}
