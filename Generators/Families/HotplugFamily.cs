// Generation of memory hot-plug operations (Engine/Scenario/HotplugOps.cs), drawn from the state
// of the generation engine's memory blocks, weighted toward where the hot-plug bugs live:
// - the life cycle of each block of the hot-plug range (add, online, offline, remove, and the
//   re-add of the same range once it is gone), with removes preferred once a block is offline
//   and a remove right after an offline that failed (the block still online: EBUSY);
// - walkers started just before a remove: `cpuN: start ptdump`, a few `step cpuN`, then
//   remove_memory on another CPU, so that the walk holds the tables the teardown frees;
// - the walker-vs-teardown plan (WalkerRemovePlan): after add_memory of a block (offlined first
//   if it is online; mostly a block whose neighbours are gone, so that the remove empties the
//   tables it shares with them), a ranged walk of the block alone (`cpuN: start ptdump linear
//   PHYS SIZE`, about one in seven `vmemmap`), stepped to the point where it holds the block's
//   lowest table (`step cpuN to ptdump_pmd_entry`, or the PTE/PUD entry where the block's
//   leaves sit at that level), then remove_memory on another CPU (which, in the kernel, waits in
//   mem_hotplug_begin for the walk's get_online_mems), then the walk to its end, then the
//   remove. The whole walk reaches the block's tables only after the rest of init_mm, so a few
//   random steps seldom leave it there; the ranged walk is there in two steps. The plan is drawn
//   three times as often, and its walk is on that range, where a block has a range whose lowest
//   table maps no boot memory (FreeingRanges): only such a table can be emptied and freed. While the plan
//   runs the family's weight is high (as HvoSplitRaceFamily's), so that other families do not
//   break it up; it starts at most twice per scenario, with a weight like the other kinds';
// - HugeTLB churn next to the block while it comes and goes (Anshuman Khandual's concern, S000):
//   folios allocated, freed and dissolved while the block is online, so that offlining dissolves
//   free folios in it and HVO's vmemmap changes sit next to the teardown's;
// - ZONE_DEVICE sub-sections (memremap_pages / memunmap_pages of 2M pieces of one section) where
//   the configuration offers them (4K base pages), so that two device ranges share a section;
// - memmap_on_memory for half the blocks added (the block's memmap in its own first pages), and
//   boot memory filled with page cache while a block is online (`filemap_add` of all but a few
//   of the free pages below the hot-plug range), so that the next HugeTLB folio, and page-cache
//   pages, come from the block: HVO then meets a folio whose memmap is self-hosted;
// - PFN walkers (online_pfn_walk) over the hot-plug range, and one started just before an
//   offline of its block: `cpuN: start online_pfn_walk`, its pfn_to_online_page step, the offline
//   on another CPU, then the rest of the walk. No remove is drawn while any task that holds a
//   struct page found by PFN runs (Op.WalksByPfn: online_pfn_walk, and PageCacheFamily's
//   pfn_walk and compact_pfn): the kernel accepts that race (Engine/Hotplug/PfnToOnlinePage.cs),
//   the model shows it, and correct runs must not fail on it;
// - offline_pages with page cache in the block (a fill that overflows into it), which migrates;
// - hugetlbfs mappings (x86-64, where the model has HGM) faulted while a fill holds boot memory,
//   so that their folios lie in the block, split into PAGE_SIZE pieces now and then, and the
//   fill truncated, so that offline_pages has in-use HugeTLB folios to migrate and room to;
// - bad input now and then: a range over boot memory, misaligned, or past the hot-plug range,
//   and offlining or removing boot memory (the kernel's errno, nothing changes).
//
// Bounds (why): the hot-plug range is two memory sections (RangeBytes): two blocks are enough
// for a block next to a block and next to boot memory, and keep every step's checks small.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;

namespace PropertySuite.Generators.Families;

public sealed class HotplugFamily : IOpFamily
{
    public const string FamilyName = "hotplug";

    public string Name => FamilyName;

    public IReadOnlyList<string> Kinds { get; } = ["add_memory", "online_pages", "offline_pages", "remove_memory", "memremap_pages", "ptdump", "hugetlb", "bad_input", "memmap_on_memory", "fill", "pfn_walk", "walker_remove", "hugetlbfs"];

    /// <summary>Free pages a fill leaves below the hot-plug range: fewer than one PMD-sized folio
    /// needs, enough for the page tables and vmemmap the next operations allocate.</summary>
    private const long FillSlack = 256;

    /// <summary>The hot-plug range generated machines get when this family applies: two sections.</summary>
    public static long RangeBytes(ArchConfig arch) => 2 * arch.SectionSize;

    /// <summary>Correct variants and the variants that focus on hot-plug (as VmallocFamily).</summary>
    public bool AppliesTo(ArchConfig arch, NamedVariant variant) =>
        variant.Correct || (VariantTargets.For(variant.Name)?.Focus.Contains(typeof(HotplugFamily)) ?? false);

    public int Weight(GenState s) => s.Machine.HotplugBytes == 0 ? 0 : PlanWalker(s) is not null ? 400 : ChainLink(s) ? 200 : 12;

    /// <summary>Whether the last operation is a link of the hugetlbfs offline chain (see
    /// HugetlbfsChain), which this family then usually continues.</summary>
    private bool ChainLink(GenState s) =>
        s.Ops.Count > 0 && s.Ops[^1] is FilemapAddOp or HgmMmapOp or HotplugRangeOp { Call: HotplugCall.OnlinePages } or HgmTouchOp or MadviseSplitOp or TruncateOp
        && HugetlbfsOffered(s) && s.Enabled(this, "hugetlbfs");

    public Op? Next(GenState s, Prng rng)
    {
        if (s.Machine.HotplugBytes == 0) return null;
        if (PlanWalker(s) is { } plan) return WalkerRemovePlan(s, plan);
        // A started walker followed by its steps, then the remove it was started for.
        if (s.Ops.Count > 0 && s.Ops[^1] is PtdumpOp { Start: true } started && !s.Engine.Cpus[started.Cpu].Idle)
            return new StepOp((int)rng.Range(1, 4)) { Cpu = started.Cpu };
        if (s.Ops.Count > 1 && s.Ops[^1] is StepOp step && s.Ops[^2] is PtdumpOp { Start: true } && !s.Engine.Cpus[step.Cpu].Idle
            && Removable(s).Count > 0 && !WalkerInWindow(s) && s.IdleCpu(rng) is var c && c >= 0)
            return Remove(s, rng) with { Cpu = c };
        // A started PFN walker: its check, then the offline of its block on another CPU, then the rest.
        if (s.Ops.Count > 0 && s.Ops[^1] is OnlinePfnWalkOp { Start: true } walker && !s.Engine.Cpus[walker.Cpu].Idle)
            return StepOp.To(walker.Cpu, "pfn_to_online_page");
        if (s.Ops.Count > 1 && s.Ops[^1] is StepOp { Until: StepUntil.Action } checkStep && s.Ops[^2] is OnlinePfnWalkOp { Start: true } w2
            && !s.Engine.Cpus[checkStep.Cpu].Idle && s.IdleCpu(rng) is var c2 && c2 >= 0 && c2 != w2.Cpu)
            return new HotplugRangeOp(HotplugCall.OfflinePages, w2.Pfn / s.Arch.PagesPerSection * s.Arch.SectionSize, s.Arch.SectionSize) { Cpu = c2 };
        if (s.Ops.Count > 2 && s.Ops[^1] is HotplugRangeOp { Call: HotplugCall.OfflinePages } && s.Ops[^3] is OnlinePfnWalkOp { Start: true } w3
            && !s.Engine.Cpus[w3.Cpu].Idle)
            return StepOp.UntilDone(w3.Cpu);
        if (HugetlbfsChain(s, rng) is { } chained) return chained;
        int cpu = s.IdleCpu(rng);
        if (cpu < 0) return null;
        var op = Draw(s, rng);
        return op is null ? null : op with { Cpu = cpu };
    }

    /// <summary>The teardown and the walker are the multi-step paths worth starting.</summary>
    public Op? NextTask(GenState s, Prng rng)
    {
        if (s.Machine.HotplugBytes == 0) return null;
        if (Removable(s).Count > 0 && !WalkerInWindow(s) && rng.Chance(50)) return Remove(s, rng);
        return s.Enabled(this, "ptdump") ? new PtdumpOp() : Next(s, rng);
    }

    /// <summary>The plan's walker: a started ranged ptdump of one block whose plan has not
    /// finished (the walk still runs, or the remove it was started for is still blocked).</summary>
    private static StartedTask? PlanWalker(GenState s)
    {
        for (int i = s.Tasks.Count - 1; i >= 0; i--)
        {
            var t = s.Tasks[i];
            if (t.Op is not PtdumpOp { Start: true, Range: not PtdumpRange.All }) continue;
            if (!t.Done) return t;
            // The walk is done: the plan lasts while the remove drawn after it still runs.
            return s.Tasks.Any(r => r.OpIndex > t.OpIndex && r.Op is HotplugRangeOp { Call: HotplugCall.RemoveMemory } && !r.Done) ? t : null;
        }
        return null;
    }

    /// <summary>The step of a ranged walk after which it holds the lowest table mapping the
    /// start of its range: the level of the table that holds the leaf there.</summary>
    private static string LowestTableEntry(GenState s, PtdumpOp walk)
    {
        var (first, _) = walk.Addresses(s.Engine);
        var w = s.Engine.SwapperPgDir.Walk(first);
        return w.Table.Level switch { PtLevel.Pte => "ptdump_pte_entry", PtLevel.Pud => "ptdump_pud_entry", PtLevel.P4d => "ptdump_p4d_entry", _ => "ptdump_pmd_entry" };
    }

    /// <summary>The next operation of the walker-vs-teardown plan started by
    /// <paramref name="plan"/>: the walk to its lowest table, the remove of its block on another
    /// CPU, the walk to its end, the remove to its end.</summary>
    private static Op? WalkerRemovePlan(GenState s, StartedTask plan)
    {
        var walk = (PtdumpOp)plan.Op;
        var since = s.Ops.Skip(plan.OpIndex + 1).ToList();
        bool walking = !plan.Done;
        if (walking && !since.OfType<StepOp>().Any(o => o.Cpu == walk.Cpu))
            return StepOp.To(walk.Cpu, LowestTableEntry(s, walk));
        var removes = since.OfType<HotplugRangeOp>().Where(o => o.Call == HotplugCall.RemoveMemory).ToList();
        if (walking && removes.Count == 0 && !WalkerInWindow(s))
        {
            var idle = s.IdleCpus.Where(c => c != walk.Cpu).ToList();
            if (idle.Count > 0) return new HotplugRangeOp(HotplugCall.RemoveMemory, walk.Phys, walk.Size) { Cpu = idle[0] };
        }
        if (walking) return StepOp.UntilDone(walk.Cpu);
        var remover = s.Tasks.LastOrDefault(r => r.OpIndex > plan.OpIndex && r.Op is HotplugRangeOp { Call: HotplugCall.RemoveMemory } && !r.Done);
        return remover is null ? null : StepOp.UntilDone(remover.Op.Cpu);
    }

    /// <summary>Starts the plan for a present (offline) block: its linear map, or 15 % of the
    /// time its vmemmap; an online block is offlined first (the plan starts on a later
    /// draw once it is offline).</summary>
    private static Op? StartWalkerRemove(GenState s, Prng rng, List<int> offline, List<int> online)
    {
        if (offline.Count == 0) return Block(s, HotplugCall.OfflinePages, rng.Pick(online));
        // Mostly a block whose neighbours in the hot-plug range are gone: its remove then empties
        // the tables it shares with them, which free_empty_tables frees.
        var alone = offline.Where(b => BlocksIn(s, st => st is not (SectionState.Absent or SectionState.Removed)).All(o => o == b)).ToList();
        int b = rng.Pick(alone.Count > 0 && rng.Chance(75) ? alone : offline);
        var block = Block(s, HotplugCall.RemoveMemory, b);
        var freeing = FreeingRanges(s, b);
        var range = freeing.Count > 0 && rng.Chance(80) ? rng.Pick(freeing) : rng.Chance(15) ? PtdumpRange.Vmemmap : PtdumpRange.Linear;
        return new PtdumpOp(range, block.Address, block.Size) { Start = true };
    }

    /// <summary>The ranges of <paramref name="block"/> (linear map, vmemmap) whose lowest table
    /// (the one the plan's walk stops in) maps no boot memory, so that removing the block and
    /// its neighbours empties it and the teardown frees it. Where the table also maps boot memory (an x86-64 PMD table of the linear map
    /// spans 1G, of the vmemmap 64G of memory) no remove can free it, and a walk held there
    /// shows nothing.</summary>
    private static List<PtdumpRange> FreeingRanges(GenState s, int block)
    {
        var ranges = new List<PtdumpRange>(2);
        foreach (var range in (PtdumpRange[])[PtdumpRange.Linear, PtdumpRange.Vmemmap])
        {
            var (first, _) = new PtdumpOp(range, HotStart(s) + block * s.Arch.SectionSize, s.Arch.SectionSize).Addresses(s.Engine);
            var level = s.Engine.SwapperPgDir.Walk(first).Table.Level;
            if (level == s.Arch.TopLevel) continue;
            ulong span = (ulong)s.Arch.LevelSize(level + 1);
            ulong start = first & ~(span - 1);
            var (bootFirst, bootLast) = new PtdumpOp(range, 0, s.Machine.MemoryBytes).Addresses(s.Engine);
            if (start > bootLast || start + span - 1 < bootFirst) ranges.Add(range);
        }
        return ranges;
    }

    private static int PlansStarted(GenState s) => s.Ops.Count(o => o is PtdumpOp { Start: true, Range: not PtdumpRange.All });

    private static long HotStart(GenState s) => s.Machine.MemoryBytes;

    private static SectionState State(GenState s, long block) => s.Engine.Mem.SectionStateOf(s.Engine.Hotplug.FirstHotplugSection + block);

    private static int Blocks(GenState s) => (int)(s.Machine.HotplugBytes / s.Arch.SectionSize);

    private static List<int> BlocksIn(GenState s, Func<SectionState, bool> which) =>
        [.. Enumerable.Range(0, Blocks(s)).Where(b => !s.Engine.Hotplug.Section(s.Engine.Hotplug.FirstHotplugSection + b).Device && which(State(s, b)))];

    private static List<int> Removable(GenState s) => BlocksIn(s, st => st is SectionState.Present or SectionState.Offline);

    private static HotplugRangeOp Block(GenState s, HotplugCall call, int block) =>
        new(call, HotStart(s) + block * s.Arch.SectionSize, s.Arch.SectionSize);

    private static HotplugRangeOp Remove(GenState s, Prng rng) => Block(s, HotplugCall.RemoveMemory, rng.Pick(Removable(s)));

    private Op? Draw(GenState s, Prng rng)
    {
        var absent = BlocksIn(s, st => st is SectionState.Absent or SectionState.Removed);
        var offline = Removable(s);
        var online = BlocksIn(s, st => st == SectionState.Online);
        bool failedOffline = s.Ops.Count > 0 && s.Ops[^1] is HotplugRangeOp { Call: HotplugCall.OfflinePages } last
            && online.Any(b => Block(s, HotplugCall.OfflinePages, b).Address == last.Address);
        var choices = new List<(int W, Func<Op?> Make)>();
        void Add(string kind, int weight, Func<Op?> make)
        {
            if (weight > 0 && s.Enabled(this, kind)) choices.Add((weight, make));
        }
        Add("add_memory", absent.Count > 0 ? 14 : 0, () =>
            Block(s, HotplugCall.AddMemory, rng.Pick(absent)) with { MemmapOnMemory = s.Enabled(this, "memmap_on_memory") && rng.Chance(50) });
        Add("fill", online.Count > 0 && FreeBelowHotplug(s) > 4 * FillSlack ? 6 : 0, () => Fill(s));
        Add("online_pages", offline.Count > 0 ? 10 : 0, () => Block(s, HotplugCall.OnlinePages, rng.Pick(offline)));
        Add("offline_pages", online.Count > 0 ? 12 : 0, () => Block(s, HotplugCall.OfflinePages, rng.Pick(online)));
        Add("remove_memory", WalkerInWindow(s) ? 0 : offline.Count > 0 ? 10 : failedOffline ? 20 : 0, () =>
            failedOffline ? Block(s, HotplugCall.RemoveMemory, online[0]) : Remove(s, rng));
        Add("ptdump", offline.Count > 0 && s.IdleCpus.Count > 1 ? 8 : 1, () => new PtdumpOp { Start = offline.Count > 0 });
        Add("walker_remove", offline.Count + online.Count > 0 && s.IdleCpus.Count > 1 && !WalkerInWindow(s) && PlansStarted(s) < 2
                ? (offline.Concat(online).Any(b => FreeingRanges(s, b).Count > 0) ? 30 : 10) : 0,
            () => StartWalkerRemove(s, rng, offline, online));
        Add("memremap_pages", SubsectionsOffered(s) ? 6 : 0, () => Device(s, rng));
        Add("hugetlb", online.Count > 0 ? 10 : 0, () => Hugetlb(s, rng));
        // hugetlbfs folios are faulted mostly once a fill holds boot memory (they then come from
        // the block), and a block holding one is offlined soon after.
        bool inBlock = HugetlbfsFolioInBlock(s);
        Add("hugetlbfs", online.Count > 0 && HugetlbfsOffered(s) ? (FreeBelowHotplug(s) <= 4 * FillSlack ? 30 : 3) : 0, () => Hugetlbfs(s, rng, inBlock));
        if (inBlock) Add("offline_pages", 20, () => Block(s, HotplugCall.OfflinePages, rng.Pick(online)));
        Add("bad_input", 2, () => BadInput(s, rng));
        Add("pfn_walk", online.Count > 0 ? 6 : 0, () =>
        {
            long pfn = (HotStart(s) >> s.Arch.PageShift) + rng.Range(0, Blocks(s) * s.Arch.PagesPerSection - 1);
            bool start = s.IdleCpus.Count > 1 && s.IdleCpus.Count == s.Engine.Cpus.Count() && rng.Chance(50);
            return new OnlinePfnWalkOp(pfn) { Start = start };
        });
        int i = rng.PickIndex(choices.Select(c => c.W).ToList());
        return i < 0 ? null : choices[i].Make();
    }

    /// <summary>Sub-section hot-plug exists in the model where a sub-section's memmap is whole
    /// vmemmap pages (MemoryHotplug.MemremapPages).</summary>
    private static bool SubsectionsOffered(GenState s) => s.Engine.Hotplug.SubsectionPages * ArchConfig.StructPageSize % s.Arch.PageSize == 0;

    /// <summary>memremap_pages of 1-4 sub-sections in a section that holds no System RAM, or
    /// memunmap_pages of a range an earlier memremap_pages of this scenario mapped.</summary>
    private static Op? Device(GenState s, Prng rng)
    {
        var hp = s.Engine.Hotplug;
        long sub = hp.SubsectionPages << s.Arch.PageShift;
        var mapped = s.Ops.OfType<HotplugRangeOp>().Where(o => o.Call == HotplugCall.MemremapPages
            && hp.LifetimeOf(o.Address >> s.Arch.PageShift) is { } life && life.StartsWith("dev", StringComparison.Ordinal)).ToList();
        if (mapped.Count > 0 && rng.Chance(40))
        {
            var m = rng.Pick(mapped);
            return new HotplugRangeOp(HotplugCall.MemunmapPages, m.Address, m.Size);
        }
        var sections = Enumerable.Range(0, Blocks(s)).Where(b => State(s, b) is SectionState.Absent or SectionState.Removed || hp.Section(hp.FirstHotplugSection + b).Device).ToList();
        if (sections.Count == 0) return null;
        int block = rng.Pick(sections);
        int count = (int)rng.Range(1, 4);
        int at = (int)rng.Range(0, hp.SubsectionsPerSection - count);
        return new HotplugRangeOp(HotplugCall.MemremapPages, HotStart(s) + block * s.Arch.SectionSize + at * sub, count * sub);
    }

    /// <summary>hugetlbfs mappings exist in the model where HGM does (x86-64 with 2M pages).</summary>
    private static bool HugetlbfsOffered(GenState s) => s.Arch.Arch == Arch.X86_64 && s.Arch.HugetlbSizes.Contains(HugetlbfsPage);

    private const long HugetlbfsPage = 2L << 20;

    /// <summary>The hugetlbfs offline chain, continued from the last operation, so that
    /// offline_pages has in-use hugetlbfs folios to migrate: an online is followed by a fill
    /// (half the time; the folios then come from the block), a fill by a shared mapping of a
    /// hugetlbfs file, the mapping by faults on each of its pages (now and then split by
    /// MADV_SPLIT and faulted by a PAGE_SIZE piece), then the fill's truncation (somewhere to
    /// migrate to), then the offline of the block that holds a faulted folio. Each link is drawn with a coin
    /// (the family's weight is raised while the last operation is a link), and any other
    /// operation breaks the chain.</summary>
    private Op? HugetlbfsChain(GenState s, Prng rng)
    {
        if (s.Ops.Count == 0 || !HugetlbfsOffered(s) || !s.Enabled(this, "hugetlbfs") || !s.Engine.Cpus[0].Idle) return null;
        var last = s.Ops[^1];
        var online = BlocksIn(s, st => st == SectionState.Online);
        if (online.Count == 0 || !rng.Chance(75)) return null;
        switch (last)
        {
            case HotplugRangeOp { Call: HotplugCall.OnlinePages } when s.Live('a').Count == 0 && FreeBelowHotplug(s) > 4 * FillSlack && rng.Chance(50):
                return Fill(s);
            case FilemapAddOp when s.Live('a').Count == 0:
            {
                string h = s.FreshHandle('a');
                s.AddLive(h);
                return new HgmMmapOp(HugetlbfsPage, rng.Range(1, 3)) { Bind = h };
            }
            case HgmMmapOp { Bind: { } m }:
                return new HgmTouchOp(m, 0, Write: rng.Chance(50));
            case HgmTouchOp t when s.Handles.TryGet<HgmMapping>(t.Mapping, out var map) && map?.File is { } file:
            {
                long pages = (long)map.Length / HugetlbfsPage;
                for (long i = 0; i < pages; i++)
                    if (!file.PageCache.ContainsKey(i)) return new HgmTouchOp(t.Mapping, i * HugetlbfsPage, Write: rng.Chance(50));
                if (rng.Chance(30) && !s.Ops.OfType<MadviseSplitOp>().Any(o => o.Mapping == t.Mapping))
                    return new MadviseSplitOp(t.Mapping, 0, pages * HugetlbfsPage);
                var fills = s.Live('p');
                if (fills.Count > 0) return Truncate(s, fills[^1]);
                return HugetlbfsFolioBlock(s) is { } b ? Block(s, HotplugCall.OfflinePages, b) : null;
            }
            case MadviseSplitOp split:
                return new HgmTouchOp(split.Mapping, rng.Range(0, HugetlbfsPage / s.Arch.PageSize - 1) * s.Arch.PageSize, Write: rng.Chance(50));
            case TruncateOp:
                return HugetlbfsFolioBlock(s) is { } blk ? Block(s, HotplugCall.OfflinePages, blk) : null;
            default:
                return null;
        }
    }

    /// <summary>The online block (index in the hot-plug range) holding a hugetlbfs page-cache folio, if any.</summary>
    private static int? HugetlbfsFolioBlock(GenState s)
    {
        long hot = HotStart(s) >> s.Arch.PageShift;
        foreach (var file in s.Engine.Hgm.Files)
            foreach (var f in file.PageCache.Values)
                if (f.HeadPfn >= hot && s.Engine.Mem.SectionStateOf(s.Engine.Mem.PfnToSection(f.HeadPfn)) == SectionState.Online)
                    return (int)((f.HeadPfn - hot) / s.Arch.PagesPerSection);
        return null;
    }

    /// <summary>Whether a hugetlbfs page-cache folio lies in an online block.</summary>
    private static bool HugetlbfsFolioInBlock(GenState s) => HugetlbfsFolioBlock(s) is not null;

    private static Op? Hugetlbfs(GenState s, Prng rng, bool inBlock)
    {
        var live = s.Live('a');
        if (live.Count == 0 || (live.Count < 2 && rng.Chance(10)))
        {
            string h = s.FreshHandle('a');
            s.AddLive(h);
            return new HgmMmapOp(HugetlbfsPage, rng.Range(1, 3)) { Bind = h };
        }
        string m = rng.Pick(live);
        long pages = s.Handles.TryGet<HgmMapping>(m, out var map) && map is not null ? Math.Max(1, (long)map.Length / HugetlbfsPage) : 1;
        long page = rng.Range(0, pages - 1) * HugetlbfsPage;
        var fills = s.Live('p');
        return rng.PickIndex([10, 4, 5, fills.Count > 0 ? (inBlock ? 20 : 2) : 0]) switch
        {
            1 => new MadviseSplitOp(m, 0, pages * HugetlbfsPage),
            2 => new HgmTouchOp(m, page + rng.Range(0, HugetlbfsPage / s.Arch.PageSize - 1) * s.Arch.PageSize, Write: rng.Chance(50)),
            3 => Truncate(s, rng.Pick(fills)),
            _ => new HgmTouchOp(m, page, Write: rng.Chance(50)),
        };
    }

    private static Op Truncate(GenState s, string file)
    {
        s.RemoveLive(file);
        return new TruncateOp(file);
    }

    /// <summary>HugeTLB churn while a block is online: allocate (pool folios come from the
    /// lowest free memory, so a full pool reaches the top of boot memory and the block),
    /// free, dissolve.</summary>
    private static Op Hugetlb(GenState s, Prng rng)
    {
        long size = s.Arch.PmdSize;
        var live = s.Live('f');
        int pick = rng.PickIndex([live.Count < 6 ? 10 : 1, live.Count > 0 ? 6 : 0, live.Count > 0 ? 4 : 0, 3]);
        switch (pick)
        {
            case 1:
            {
                string h = rng.Pick(live);
                return new HugetlbFreeOp(h);
            }
            case 2:
            {
                string h = rng.Pick(live);
                s.RemoveLive(h);
                return new DissolveOp(h);
            }
            case 3:
                return new HugetlbPoolOp(size, rng.Range(1, 16));
            default:
            {
                string h = s.FreshHandle('f');
                s.AddLive(h);
                return new HugetlbAllocOp(size) { Bind = h };
            }
        }
    }

    /// <summary>Whether a task that holds a struct page found by PFN (Op.WalksByPfn: a
    /// pfn_to_online_page answer, or a PFN taken from the page cache, not yet used up) has not
    /// finished, whichever family started it.</summary>
    private static bool WalkerInWindow(GenState s) => s.Tasks.Any(t => t.Op.WalksByPfn && !t.Done);

    /// <summary>Free pages below the hot-plug range (boot memory).</summary>
    private static long FreeBelowHotplug(GenState s) =>
        s.Engine.Mem.Buddy.FreeBlocksIn(0, HotStart(s) >> s.Arch.PageShift).Sum(b => b.Pages);

    /// <summary>A file whose page cache takes all but <see cref="FillSlack"/> of boot memory's free pages.</summary>
    private static Op Fill(GenState s)
    {
        string h = s.FreshHandle('p');
        s.AddLive(h);
        // Half the fills overflow into the online block, so that offlining it has pages to migrate.
        long overflow = s.Ops.Count % 2 == 0 ? FillSlack + 64 * (1 + s.Ops.Count % 8) : 0;
        return new FilemapAddOp((int)Math.Min(FreeBelowHotplug(s) - FillSlack + overflow, 1 << 20)) { Bind = h };
    }

    private static Op BadInput(GenState s, Prng rng)
    {
        long sec = s.Arch.SectionSize, hot = HotStart(s);
        return rng.Next(6) switch
        {
            0 => new HotplugRangeOp(HotplugCall.AddMemory, 0, sec),                                 // over boot memory: EEXIST
            1 => new HotplugRangeOp(HotplugCall.AddMemory, hot, sec / 2),                           // misaligned size: EINVAL
            2 => new HotplugRangeOp(HotplugCall.AddMemory, hot + s.Machine.HotplugBytes, sec),      // past the range: ERANGE
            3 => new HotplugRangeOp(HotplugCall.OfflinePages, hot - sec, sec),                      // boot memory: EPERM / EBUSY
            4 => new HotplugRangeOp(HotplugCall.RemoveMemory, hot - sec, sec),                      // boot memory: EBUSY
            _ => new HotplugRangeOp(HotplugCall.AddMemory, hot + sec / 2, sec),                     // misaligned start: EINVAL
        };
    }
}
