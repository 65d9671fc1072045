using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Races;

[Trait("Category", "races")]
public class PageCacheExamples
{
    private const string Header = "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nvariant default\n";

    [Fact]
    public void LookupTruncateAndWalkKeepEveryInvariant()
    {
        var s = Repro.Parse(Header + "p1 = filemap_add 65\ncpu1: start spec_lookup p1 64\nstep cpu1 to xa_load\nspec_lookup p1 3\npfn_walk p1 7\ntruncate p1\nstep cpu1 until done\n");
        int freed = 0;
        var r = ScenarioRunner.Run(s, trace: (i, op, k) => freed = (int)k.Log.Reached.GetValueOrDefault("filemap.folio_freed"));
        Assert.True(r.Violation is null, r.ToString());
        Assert.Equal(65, freed);
    }
}
