// Generation of HugeTLB operations (Engine/Scenario/HugetlbOps.cs), weighted toward the places
// HVO's bugs live:
// - allocation failure injected right before a path that restores vmemmap (free of a surplus
//   folio, dissolve, pool shrink) reaches the restore-failure → surplus path, and right
//   before a pool grow reaches the head-copy fallback and, with a burst of failures before a
//   gigantic folio whose vmemmap spans several PMDs (half of the injections, on a machine that
//   holds one), the split failure that rolls a half-done walk back;
// - `start` of an allocation or free on one CPU, with `step`s and memory_failure /
//   flush_dcache_page on the same folio from another CPU, reaches the windows between the
//   hugetlb flag and the remap;
// - subpage indices at multiples of PAGE_SIZE / sizeof(struct page) hit the fake heads;
// - the runtime knob leaves folios unoptimized, which is where restore must not be called.
//
// Bounds (why): pools of at most 3 folios and 2-page allocation-failure bursts keep repros short;
// `step` bursts of up to 32 cover a 2M allocation's ~25 steps; gigantic sizes are drawn rarely
// (a 1G optimize is ~4,100 steps) and only when the machine holds at least two of them.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;

namespace PropertySuite.Generators.Families;

/// <summary>The HugeTLB / HVO operation family.</summary>
public sealed class HugetlbFamily : IOpFamily
{
    public string Name => "hugetlb";

    public bool AppliesTo(ArchConfig arch, NamedVariant variant) => arch.HugetlbSizes.Count > 0;

    public int Weight(GenState s) => 10;

    public Op? Next(GenState s, Prng rng)
    {
        var folios = s.Live('f');
        // Right after injected failures, take a path that allocates.
        if (s.Ops.Count > 0 && s.Ops[^1] is FailAllocOp && rng.Chance(80))
            return AfterFailure(s, rng, folios);
        // A folio just freed may be back in the pool (possibly as a surplus page, after a failed
        // restore): dissolve it, directly or through memory failure.
        if (s.Ops.Count > 0 && s.Ops[^1] is HugetlbFreeOp { Start: false } freed && rng.Chance(35))
            return rng.Chance(50) ? new DissolveOp(freed.Folio) : new MemoryFailureOp(freed.Folio, Index(s, rng));
        // A task the engine has not finished: let it run some steps, or act on its folio from
        // another CPU.
        var busyCpus = s.BusyCpus;
        if (busyCpus.Count > 0 && rng.Chance(60))
        {
            int busy = rng.Pick(busyCpus);
            int other = s.IdleCpu(rng);
            if (other >= 0 && folios.Count > 0 && rng.Chance(40))
            {
                string f = folios[^1];
                return rng.Chance(70)
                    ? new MemoryFailureOp(f, Index(s, rng)) { Cpu = other }
                    : new FlushDcachePageOp(f, Index(s, rng)) { Cpu = other };
            }
            return new StepOp(1 + rng.Next(32)) { Cpu = busy };
        }
        int roll = rng.Next(100);
        if (roll < 12) return new HugetlbPoolOp(Size(s, rng), rng.Next(4));
        if (roll < 32) return Alloc(s, rng, cpu: 0, start: false);
        if (roll < 44 && folios.Count > 0) return new HugetlbFreeOp(rng.Pick(folios));
        if (roll < 50 && folios.Count > 0) return new DissolveOp(rng.Pick(folios));
        if (roll < 58 && folios.Count > 0) return new MemoryFailureOp(rng.Pick(folios), Index(s, rng));
        if (roll < 64 && folios.Count > 0) return new FlushDcachePageOp(rng.Pick(folios), Index(s, rng));
        if (roll < 68) return new HvoKnobOp(rng.Chance(40));
        if (roll < 78) return rng.Chance(Gigantic(s).Count > 0 ? 50 : 15) ? new FailAllocOp(3, 16) : new FailAllocOp(rng.Next(4), 1 + rng.Next(2));
        int cpu = s.IdleCpu(rng);
        if (cpu < 0) return new StepOp(1 + rng.Next(32)) { Cpu = busyCpus[0] };
        if (roll < 92 || folios.Count == 0) return Alloc(s, rng, cpu, start: true);
        return rng.Chance(50)
            ? new HugetlbFreeOp(rng.Pick(folios)) { Cpu = cpu, Start = true }
            : new HugetlbPoolOp(Size(s, rng), 0) { Cpu = cpu, Start = true };
    }

    private static Op AfterFailure(GenState s, Prng rng, IReadOnlyList<string> folios)
    {
        // Allocations of a gigantic pool folio: 1 the folio, then the PTE tables of its PMDs in
        // the batch's split pass; a burst of failures from the 4th on stops that pass early, and
        // the remap walk then fails to split in the middle of the folio and rolls back.
        var gigantic = Gigantic(s);
        if (s.Ops[^1] is FailAllocOp { After: 3 } && gigantic.Count > 0 && rng.Chance(60))
            return new HugetlbPoolOp(rng.Pick(gigantic), 1);
        int pick = rng.Next(folios.Count > 0 ? 5 : 2);
        return pick switch
        {
            0 => new HugetlbPoolOp(Size(s, rng, gigantic: 30), 1 + rng.Next(2)),
            1 => Alloc(s, rng, cpu: 0, start: false),
            2 => new HugetlbFreeOp(rng.Pick(folios)),
            3 => new DissolveOp(rng.Pick(folios)),
            _ => new HugetlbPoolOp(Size(s, rng), 0),
        };
    }

    /// <summary>The gigantic sizes that fit twice in the machine and whose vmemmap spans several
    /// PMDs (so a split can fail in the middle of the walk).</summary>
    private static List<long> Gigantic(GenState s) =>
        s.Arch.HugetlbSizes.Where(z => s.Arch.HugePageOrder(z) > s.Arch.MaxPageOrder && 2 * z <= s.Machine.MemoryBytes
            && s.Arch.VmemmapPagesPerFolio(z) * s.Arch.PageSize > s.Arch.PmdSize).ToList();

    private static Op Alloc(GenState s, Prng rng, int cpu, bool start)
    {
        string h = s.FreshHandle('f');
        s.AddLive(h);
        return new HugetlbAllocOp(Size(s, rng)) { Cpu = cpu, Start = start, Bind = h };
    }

    /// <summary>A HugeTLB size: mostly the smallest optimizable one, sometimes any other that fits
    /// twice in memory (gigantic ones with <paramref name="gigantic"/> percent).</summary>
    private static long Size(GenState s, Prng rng, int gigantic = 5)
    {
        var arch = s.Arch;
        var fits = arch.HugetlbSizes.Where(z => 2 * z <= s.Machine.MemoryBytes).ToList();
        if (fits.Count == 0) return arch.HugetlbSizes[0];
        long preferred = fits.FirstOrDefault(z => arch.VmemmapPagesPerFolio(z) > 1, fits[0]);
        var others = fits.Where(z => z != preferred).ToList();
        if (others.Count == 0) return preferred;
        var big = others.Where(z => arch.HugePageOrder(z) > arch.MaxPageOrder).ToList();
        var small = others.Except(big).ToList();
        if (big.Count > 0 && rng.Chance(gigantic)) return rng.Pick(big);
        if (small.Count > 0 && rng.Chance(25)) return rng.Pick(small);
        return preferred;
    }

    /// <summary>A subpage index: a fake-head position (k · PAGE_SIZE / 64) half the time, else one
    /// next to it, 0, or anything in the smallest folio.</summary>
    private static long Index(GenState s, Prng rng)
    {
        long perPage = s.Arch.StructPagesPerVmemmapPage;
        long pages = s.Arch.PagesPerHugePage(s.Arch.HugetlbSizes[0]);
        return rng.Next(6) switch
        {
            0 or 1 or 2 => perPage * (1 + rng.Next(7)),
            3 => perPage * (1 + rng.Next(7)) + 1,
            4 => 0,
            _ => rng.Range(0, Math.Max(pages, perPage * 8) - 1),
        };
    }
}
