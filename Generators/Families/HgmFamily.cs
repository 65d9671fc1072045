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

    /// <summary>Heavier when the run targets an HGM variant: its bugs need a post-copy sequence
    /// of six or more HGM operations in order, which the other families would dilute.</summary>
    public int Weight(GenState s) =>
        (VariantTargets.For(s.Variant.Name)?.Focuses(this) ?? false) ? 80 : s.Live('a').Count == 0 ? 8 : 24;

    public Op? Next(GenState s, Prng rng)
    {
        var busy = s.BusyCpus;
        int idle = s.IdleCpu(rng);
        if (Chain(s, rng, idle) is { } chained) return chained;
        if (busy.Count > 0 && (idle < 0 || rng.Chance(50)))
        {
            int cpu = rng.Pick(busy);
            var top = s.Tasks.LastOrDefault(t => !t.Done && t.Op.Cpu == cpu);
            // A started collapse: stop it between freeing the old tables and the flush (where
            // the order matters), or let it finish.
            if (top?.Op is MadviseCollapseOp && rng.Chance(60))
                return rng.Chance(50) ? StepOp.To(cpu, "pte_free") : StepOp.To(cpu, "huge_ptep_clear_flush");
            // A walker holds a table on that CPU: reshape the tables under it from another one.
            if (top?.Op is HgmWalkOp && idle >= 0 && rng.Chance(50))
            {
                var w = (HgmWalkOp)top.Op;
                var reshape = rng.Chance(70) ? (Op)new MadviseCollapseOp(w.Mapping, w.Offset / Huge * Huge, Huge) : new HgmMunmapOp(w.Mapping, w.Offset / Huge * Huge, Huge);
                return reshape with { Cpu = idle };
            }
            return rng.Chance(50) ? StepOp.UntilDone(cpu) : new StepOp((int)rng.Range(1, 3)) { Cpu = cpu };
        }
        if (idle < 0) return null;
        var op = Draw(s, rng);
        return op is null ? null : op with { Cpu = idle };
    }

    /// <summary>The races of the HGM locks, as chains from the last operation: a started walk is
    /// stepped to its first hugetlb_walk_step (it then holds the lower table), a collapse of that
    /// huge page runs on another CPU, and the walk finishes; a continued piece is read by a CPU
    /// (its TLB and walk cache now hold the PTE table), then a collapse is started elsewhere and
    /// stepped to pte_free, between freeing the old tables and the flush.</summary>
    private static Op? Chain(GenState s, Prng rng, int idle)
    {
        if (s.Ops.Count == 0 || !rng.Chance(80)) return null;
        var last = s.Ops[^1];
        var walk = s.Tasks.LastOrDefault(t => !t.Done && t.Op is HgmWalkOp);
        switch (last)
        {
            case HgmWalkOp { Start: true } w when walk is not null:
                return StepOp.To(w.Cpu, "hugetlb_walk_step");
            case StepOp { Until: StepUntil.Action, ToAction: "hugetlb_walk_step" } when walk is not null && idle >= 0:
                var wo = (HgmWalkOp)walk.Op;
                return new MadviseCollapseOp(wo.Mapping, wo.Offset / Huge * Huge, Huge) { Cpu = idle };
            case MadviseCollapseOp when walk is not null:
                return StepOp.UntilDone(walk.Op.Cpu);
            case UffdioContinueOp c when idle >= 0:
                return new HgmTouchOp(c.Mapping, c.Offset) { Cpu = idle };
            case HgmTouchOp t when idle >= 0 && s.Handles.TryGet<HgmMapping>(t.Mapping, out var m) && m.Mm.VmaLookup(m.Base + (ulong)t.Offset) is { HgmEnabled: true }:
                int other = s.IdleCpus.FirstOrDefault(c => c != t.Cpu, idle);
                return new MadviseCollapseOp(t.Mapping, t.Offset / Huge * Huge, Huge) { Cpu = other, Start = true };
            case MadviseCollapseOp { Start: true } mc:
                return StepOp.To(mc.Cpu, rng.Chance(70) ? "pte_free" : "flush_tlb_range");
        }
        return null;
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
            s.Handles.TryGet<HgmMapping>(m, out var map);
            var vma = map?.Mm.VmaLookup(map.Base);
            bool hgm = vma?.HgmEnabled ?? false;
            bool minor = vma is not null && (vma.VmFlags & Engine.Hgm.VmaFlags.VmUffdMinor) != 0;
            int cached = map?.File?.PageCache.Count ?? 0;
            bool aliased = map is not null && live.Any(o => o != m && s.Handles.TryGet<HgmMapping>(o, out var x) && x.File == map.File && x.Mm == map.Mm);
            long len = map is null ? Huge : (long)map.Length;
            long pages = Math.Max(1, len / Huge);
            long AnyHuge() => rng.Range(0, pages - 1) * Huge;
            long Piece() => rng.Chance(85) ? Page : rng.Chance(50) ? rng.Range(2, 4) * Page : Huge;
            Add("hgm_alias", live.Count < 3 ? (minor && !aliased ? 20 : 2) : 0, () =>
            {
                string h = s.FreshHandle('a');
                s.AddLive(h);
                return new HgmAliasOp(m) { Bind = h };
            });
            Add("hgm_touch", minor ? 4 : 16, () => new HgmTouchOp(m, AnyHuge() + rng.Range(0, 511) * Page, rng.Chance(50)));
            Add("madvise_split", hgm ? 2 : 20, () => new MadviseSplitOp(m, 0, len));
            Add("uffd_register", hgm && !minor ? 20 : 3, () => new UffdRegisterOp(m, 0, len, Minor: rng.Chance(80)));
            Add("uffdio_continue", minor && cached > 0 ? 40 : 2, () =>
            {
                // In order (the next page after the last continue), at random, or sparse.
                long off = s.Ops.LastOrDefault(o => o is UffdioContinueOp c && c.Mapping == m) is UffdioContinueOp last && rng.Chance(50)
                    ? last.Offset + last.Length
                    : rng.Chance(50) ? AnyHuge() + rng.Range(0, 511) * Page : AnyHuge() + rng.Range(0, 7) * 64 * Page;
                return new UffdioContinueOp(m, off, Piece());
            });
            Add("madvise_collapse", minor && cached > 0 ? 10 : 3, () =>
                (rng.Chance(70) ? new MadviseCollapseOp(m, AnyHuge(), Huge) : new MadviseCollapseOp(m, 0, len)) with { Start = rng.Chance(40) });
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
            Add("hgm_walk", hgm && cached > 0 ? 8 : 2, () => new HgmWalkOp(m, AnyHuge() + rng.Range(0, 511) * Page) { Start = rng.Chance(60) });
            Add("hgm_exit", 1, () =>
            {
                s.RemoveLive(m);
                return new HgmExitOp(m);
            });
        }
        int i = rng.PickIndex(choices.Select(c => c.W).ToList());
        return i < 0 ? null : choices[i].Make();
    }
}
