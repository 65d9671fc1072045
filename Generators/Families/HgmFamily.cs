// Generation of HugeTLB high-granularity mapping operations (Engine/Scenario/HgmOps.cs), shaped
// after the series' use (post-copy live migration, seed 002): map a hugetlbfs file, populate its
// page cache through the mapping or an alias, MADV_SPLIT and register the range for minor
// faults, UFFDIO_CONTINUE it piece by piece (in order, at random, sparse; mostly PAGE_SIZE,
// sometimes several pages), then MADV_COLLAPSE; around that, partial munmap / mprotect at
// aligned and unaligned offsets (the split rule), fork (with a uffd-wp registration so that the
// child's entries are copied at the same granularity), hole punch and truncate, memory failure
// on one base page, exit; and HGM walks started as tasks with a collapse or an unmap run on
// another CPU while they hold a table, then stepped to the end.
//
// Bounds (why): 2M hstates only (generation machines hold at most 1G, less than a 1G folio and
// the boot reserve); files of 1-3 huge pages and at most 3 live mappings keep the checked state
// and the repros small; pieces of UFFDIO_CONTINUE are at most 4 pages or a whole huge page.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;

namespace PropertySuite.Generators.Families;

public sealed class HgmFamily : IOpFamily
{
    public const string FamilyName = "hgm";
    private const long Huge = 2L << 20;
    private const long Page = 4096;

    public string Name => FamilyName;

    public IReadOnlyList<string> Kinds { get; } =
        ["hgm_mmap", "hgm_alias", "hgm_touch", "madvise_split", "uffd_register", "uffdio_continue", "madvise_collapse",
         "hgm_munmap", "hgm_mprotect", "hgm_fork", "hgm_punch_hole", "hgm_truncate", "hgm_memory_failure", "hgm_walk", "hgm_exit"];

    /// <summary>x86-64 only (the series' scope), for correct variants and those that focus on HGM.</summary>
    public bool AppliesTo(ArchConfig arch, NamedVariant variant) =>
        arch.Arch == Arch.X86_64 && arch.HugetlbSizes.Contains(Huge)
        && (variant.Correct || (VariantTargets.For(variant.Name)?.Focus.Contains(typeof(HgmFamily)) ?? false));

    public int Weight(GenState s) => s.Live('a').Count == 0 ? 8 : 24;

    public Op? Next(GenState s, Prng rng)
    {
        var busy = s.BusyCpus;
        int idle = s.IdleCpu(rng);
        if (busy.Count > 0 && (idle < 0 || rng.Chance(50)))
        {
            int cpu = rng.Pick(busy);
            // A walker holds a table on that CPU: reshape the tables under it from another one.
            if (idle >= 0 && s.Live('a').Count > 0 && rng.Chance(50))
            {
                string m = rng.Pick(s.Live('a'));
                var reshape = rng.Chance(70) ? (Op)new MadviseCollapseOp(m, 0, Huge) : new HgmMunmapOp(m, 0, Huge);
                return reshape with { Cpu = idle };
            }
            return rng.Chance(60) ? StepOp.UntilDone(cpu) : new StepOp((int)rng.Range(1, 3)) { Cpu = cpu };
        }
        if (idle < 0) return null;
        var op = Draw(s, rng);
        return op is null ? null : op with { Cpu = idle };
    }

    public Op? NextTask(GenState s, Prng rng)
    {
        var live = s.Live('a');
        if (live.Count == 0 || !s.Enabled(this, "hgm_walk")) return Next(s, rng);
        return new HgmWalkOp(rng.Pick(live), rng.Range(0, 3) * Page);
    }

    private Op? Draw(GenState s, Prng rng)
    {
        var live = s.Live('a');
        var choices = new List<(int W, Func<Op?> Make)>();
        void Add(string kind, int weight, Func<Op?> make)
        {
            if (weight > 0 && s.Enabled(this, kind)) choices.Add((weight, make));
        }
        Add("hgm_mmap", live.Count == 0 ? 40 : live.Count < 3 ? 3 : 0, () =>
        {
            string h = s.FreshHandle('a');
            s.AddLive(h);
            return new HgmMmapOp(Huge, rng.Range(1, 3), Anon: rng.Chance(5)) { Bind = h };
        });
        if (live.Count > 0)
        {
            string m = rng.Pick(live);
            long len = Length(s, m);
            long pages = Math.Max(1, len / Huge);
            long AnyHuge() => rng.Range(0, pages - 1) * Huge;
            long Piece() => rng.Chance(85) ? Page : rng.Chance(50) ? rng.Range(2, 4) * Page : Huge;
            Add("hgm_alias", live.Count < 3 ? 3 : 0, () =>
            {
                string h = s.FreshHandle('a');
                s.AddLive(h);
                return new HgmAliasOp(m) { Bind = h };
            });
            Add("hgm_touch", 14, () => new HgmTouchOp(m, AnyHuge() + rng.Range(0, 511) * Page, rng.Chance(50)));
            Add("madvise_split", 8, () => new MadviseSplitOp(m, 0, len));
            Add("uffd_register", 8, () => new UffdRegisterOp(m, 0, len, Minor: rng.Chance(80)));
            Add("uffdio_continue", 30, () =>
            {
                // In order (the next page after the last continue), at random, or sparse.
                long off = s.Ops.LastOrDefault(o => o is UffdioContinueOp c && c.Mapping == m) is UffdioContinueOp last && rng.Chance(50)
                    ? last.Offset + last.Length
                    : rng.Chance(50) ? AnyHuge() + rng.Range(0, 511) * Page : AnyHuge() + rng.Range(0, 7) * 64 * Page;
                return new UffdioContinueOp(m, off, Piece());
            });
            Add("madvise_collapse", 8, () => rng.Chance(70) ? new MadviseCollapseOp(m, AnyHuge(), Huge) : new MadviseCollapseOp(m, 0, len));
            Add("hgm_munmap", 3, () => new HgmMunmapOp(m, rng.Chance(60) ? AnyHuge() : rng.Range(1, 511) * Page, rng.Chance(70) ? Huge : rng.Range(1, 511) * Page));
            Add("hgm_mprotect", 3, () => new HgmMprotectOp(m, rng.Chance(60) ? AnyHuge() : rng.Range(1, 511) * Page, rng.Chance(70) ? Huge : rng.Range(1, 511) * Page, rng.Chance(40)));
            Add("hgm_fork", live.Count < 3 ? 3 : 0, () =>
            {
                string h = s.FreshHandle('a');
                s.AddLive(h);
                return new HgmForkOp(m) { Bind = h };
            });
            Add("hgm_punch_hole", 3, () => new HgmPunchHoleOp(m, rng.Range(0, pages - 1)));
            Add("hgm_truncate", 1, () => new HgmTruncateOp(m, rng.Range(0, pages - 1)));
            Add("hgm_memory_failure", 2, () => new HgmMemoryFailureOp(m, rng.Range(0, pages - 1), rng.Range(0, 511)));
            Add("hgm_walk", 6, () => new HgmWalkOp(m, AnyHuge() + rng.Range(0, 511) * Page) { Start = rng.Chance(60) });
            Add("hgm_exit", 1, () =>
            {
                s.RemoveLive(m);
                return new HgmExitOp(m);
            });
        }
        int i = rng.PickIndex(choices.Select(c => c.W).ToList());
        return i < 0 ? null : choices[i].Make();
    }

    /// <summary>The length of the mapping behind a handle, from the engine (2M when it failed).</summary>
    private static long Length(GenState s, string handle) =>
        s.Handles.TryGet<HgmMapping>(handle, out var m) ? (long)m.Length : Huge;
}
