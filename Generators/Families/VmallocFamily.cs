// Generation of huge-vmalloc operations (Engine/Scenario/VmallocOps.cs and the vmalloc, vfree,
// read lines of CoreOps.cs), weighted toward where the vmalloc invariants break:
// - sizes around PMD_SIZE (PMD_SIZE - 1 page .. 2 * PMD_SIZE) as well as a few pages, through
//   vmalloc_huge and plain vmalloc (the opt-in test and the v5.13 policy differ exactly there);
// - reads before frees, so that a CPU's TLB and walk cache hold the area when it goes away, and
//   vm_unmap_aliases after frees, so that the freed range (and its leftover PTE tables) is
//   handed out again: a huge area over a PMD that small areas used replaces the old PTE table
//   through pmd_free_pte_page;
// - allocation failures just before a huge allocation, so that the fallback to small pages runs.
//
// Bounds (why): at most 4 live areas of this family, and huge sizes only where a PMD holds at
// most 2048 pages (x86-64 and arm64 4K/16K: 2M, 32M; on arm64 64K a PMD is 512M, more than the
// machines' spare memory and 8192 pages per area to check after every step).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;

namespace PropertySuite.Generators.Families;

public sealed class VmallocFamily : IOpFamily
{
    public const string FamilyName = "vmalloc";
    private const long MaxPmdPages = 2048;

    public string Name => FamilyName;

    public IReadOnlyList<string> Kinds { get; } = ["vmalloc_huge", "vmalloc", "vfree", "read", "vm_unmap_aliases", "fail_alloc"];

    /// <summary>Correct variants (drawn or fixed) and the variants that focus on vmalloc. A
    /// buggy variant of another mechanism does not get this family: it would only dilute that
    /// variant's search, whose SearchTests were measured without it, and change its stream.</summary>
    public bool AppliesTo(ArchConfig arch, NamedVariant variant) =>
        variant.Correct || (VariantTargets.For(variant.Name)?.Focus.Contains(typeof(VmallocFamily)) ?? false);

    public int Weight(GenState s) => 10;

    public Op? Next(GenState s, Prng rng)
    {
        int cpu = s.IdleCpu(rng);
        if (cpu < 0) return null;
        var op = Draw(s, rng);
        return op is null ? null : op with { Cpu = cpu };
    }

    public Op? NextIrqHandler(GenState s, Prng rng) =>
        s.Live('v').Count > 0 && s.Enabled(this, "read") ? MakeRead(s, rng) : null;

    private Op? Draw(GenState s, Prng rng)
    {
        var live = s.Live('v');
        bool lastWasFree = s.Ops.Count > 0 && s.Ops[^1] is VfreeOp;
        var choices = new List<(int W, Func<Op?> Make)>();
        void Add(string kind, int weight, Func<Op?> make)
        {
            if (weight > 0 && s.Enabled(this, kind)) choices.Add((weight, make));
        }
        Add("vmalloc_huge", live.Count < 4 ? 16 : 2, () => MakeAlloc(s, rng, huge: true));
        Add("vmalloc", live.Count < 4 ? 10 : 2, () => MakeAlloc(s, rng, huge: false));
        Add("vfree", live.Count > 0 ? 12 : 0, () =>
        {
            string h = rng.Pick(live);
            s.RemoveLive(h);
            return new VfreeOp(h);
        });
        Add("read", live.Count > 0 ? 16 : 0, () => MakeRead(s, rng));
        Add("vm_unmap_aliases", lastWasFree ? 20 : 4, () => new VmUnmapAliasesOp());
        Add("fail_alloc", 3, () => new FailAllocOp(rng.Chance(50) ? 0 : (int)rng.Range(1, 8), rng.Chance(70) ? 1 : (int)rng.Range(2, 4)));
        int i = rng.PickIndex(choices.Select(c => c.W).ToList());
        return i < 0 ? null : choices[i].Make();
    }

    private static Op MakeAlloc(GenState s, Prng rng, bool huge)
    {
        long page = s.Arch.PageSize;
        long pmdPages = s.Arch.PmdSize / page;
        bool aroundPmd = pmdPages <= MaxPmdPages && rng.Chance(huge ? 70 : 35);
        long size = aroundPmd
            ? rng.Pick(new[] { pmdPages - 1, pmdPages, pmdPages, pmdPages + 1, 2 * pmdPages }) * page
            : rng.Range(1, 4) * page;
        string h = s.FreshHandle('v');
        s.AddLive(h);
        return huge ? new VmallocHugeOp(size) { Bind = h } : new VmallocOp(size) { Bind = h };
    }

    private static Op MakeRead(GenState s, Prng rng)
    {
        long page = s.Arch.PageSize;
        long offset = rng.Chance(50) ? 0 : rng.Range(1, 2 * s.Arch.PmdSize / page) * page;
        return new ReadOp(rng.Pick(s.Live('v')), offset);
    }
}
