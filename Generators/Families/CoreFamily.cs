// Generation of the core operations (Engine/Scenario/CoreOps.cs): vmalloc and vfree, kernel
// reads through a vmalloc area, the purge of lazily freed areas, allocation-failure injection,
// RCU readers and grace periods, and struct-page reads through vmemmap. The free_empty_tables
// line (arm64's free_empty_tables over the vmalloc range) is not drawn: no kernel path frees
// vmalloc-range tables that way (free_empty_tables runs only in arm64 hot-remove, over the
// linear map and vmemmap, which HotplugFamily generates), and with vmalloc's population as a
// task it would free a table a populating vmalloc has just installed, a race the kernel cannot
// have. Its slot draws what the kernel does with a vmalloc range once its areas are freed:
// vm_unmap_aliases purges them (flush, then the range is reusable; the tables stay), with the
// weight free_empty_tables had, so that the family's random stream is the one it was.
//
// The weights follow the places the core invariants can break, drawn from the generation state
// (live vmalloc handles, and the engine's CPUs and RCU readers), never by filtering:
// - vfree and read need a live area, and reads come before frees often enough that a CPU's TLB
//   holds a translation when the area goes away (TLB coherence, the vunmap flush);
// - rcu_reader is multi-step, so that a `start`ed reader can sit inside its read-side section
//   while synchronize_rcu runs on another CPU (grace periods);
// - sizes are mostly a few pages (cheap, and the last-PTE/last-page paths are as likely as in
//   big areas), sometimes not page-aligned (the op rounds up), sometimes past a PMD (a second
//   PTE table).
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;

namespace PropertySuite.Generators.Families;

public sealed class CoreFamily : IOpFamily
{
    public const string FamilyName = "core";

    public string Name => FamilyName;

    public IReadOnlyList<string> Kinds { get; } =
        ["vmalloc", "vfree", "read", "vm_unmap_aliases", "fail_alloc", "rcu_reader", "synchronize_rcu", "read_page", "prefetch_page"];

    /// <summary>The core operations exist on every configuration and variant.</summary>
    public bool AppliesTo(ArchConfig arch, NamedVariant variant) => true;

    public int Weight(GenState s) => 10;

    public Op? Next(GenState s, Prng rng)
    {
        int cpu = s.IdleCpu(rng);
        if (cpu < 0) return null;
        var op = Draw(s, rng);
        return op is null ? null : op with { Cpu = cpu };
    }

    /// <summary>As a task: the multi-step paths (an RCU reader that stays inside its read-side
    /// section while other CPUs run, a grace period that waits) most of the time, else any
    /// operation (a one-step task still moves where in the schedule it happens).</summary>
    public Op? NextTask(GenState s, Prng rng)
    {
        var weights = new[]
        {
            s.Enabled(this, "rcu_reader") ? 5 : 0,
            s.Enabled(this, "synchronize_rcu") ? 2 : 0,
            4,
        };
        return rng.PickIndex(weights) switch
        {
            0 => new RcuReaderOp((int)rng.Range(1, 6)),
            1 => new SynchronizeRcuOp(),
            _ => Draw(s, rng),
        };
    }

    public Op? NextIrqHandler(GenState s, Prng rng)
    {
        // Legal in IRQ context: loads, and short RCU read-side sections (never synchronize_rcu,
        // vmalloc or vfree, which may sleep).
        var live = s.Live('v');
        var choices = new List<(int W, Func<Op?> Make)>();
        if (live.Count > 0 && s.Enabled(this, "read")) choices.Add((4, () => MakeRead(s, rng)));
        if (s.Enabled(this, "read_page")) choices.Add((3, () => MakeReadPage(s, rng)));
        if (s.Enabled(this, "rcu_reader")) choices.Add((1, () => new RcuReaderOp(rng.Next(3))));
        // The MMU of an interrupted CPU may walk speculatively too: that CPU may hold entries
        // the code it interrupted left unflushed.
        if (s.Enabled(this, "prefetch_page")) choices.Add((VmemmapChanging(s) ? 12 : 2, () => MakePrefetch(s, rng)));
        return Pick(choices, rng);
    }

    private Op? Draw(GenState s, Prng rng)
    {
        var live = s.Live('v');
        var choices = new List<(int W, Func<Op?> Make)>();
        void Add(string kind, int weight, Func<Op?> make)
        {
            if (weight > 0 && s.Enabled(this, kind)) choices.Add((weight, make));
        }

        Add("vmalloc", live.Count < 4 ? 20 : live.Count < 8 ? 8 : 2, () => MakeVmalloc(s, rng));
        Add("vfree", live.Count > 0 ? 14 : 0, () =>
        {
            string h = rng.Pick(live);
            s.RemoveLive(h);
            return new VfreeOp(h);
        });
        Add("read", live.Count > 0 ? 20 : 0, () => MakeRead(s, rng));
        // Likelier once every area has been freed: the purge then leaves the whole range reusable.
        Add("vm_unmap_aliases", live.Count == 0 && s.Ops.Any(o => o is VmallocOp) ? 14 : 4, () => new VmUnmapAliasesOp());
        Add("fail_alloc", 3, () => new FailAllocOp(rng.Chance(50) ? 0 : (int)rng.Range(1, 16), rng.Chance(70) ? 1 : (int)rng.Range(2, 8)));
        Add("rcu_reader", 6, () => new RcuReaderOp(rng.Chance(20) ? 0 : (int)rng.Range(1, 6)));
        // A grace period matters when a reader is inside (the engine shows it), or may soon
        // be: some CPU runs a task.
        Add("synchronize_rcu", s.RcuReaderInside ? 14 : s.BusyCpus.Count > 0 ? 8 : 4, () => new SynchronizeRcuOp());
        Add("read_page", 5, () => MakeReadPage(s, rng));
        Add("prefetch_page", VmemmapChanging(s) ? 12 : 2, () => MakePrefetch(s, rng));
        return Pick(choices, rng);
    }

    private static Op MakeVmalloc(GenState s, Prng rng)
    {
        long page = s.Arch.PageSize;
        long pmdPages = s.Arch.PmdSize / page;
        int roll = rng.Next(100);
        long size = roll switch
        {
            < 60 => rng.Range(1, 4) * page,
            < 75 => rng.Range(5, 64) * page,
            < 85 => rng.Range(1, 4 * page - 1),                                  // not page-aligned
            _ => rng.Range(pmdPages - 2, pmdPages + 2) * page,                     // around a PMD
        };
        string h = s.FreshHandle('v');
        s.AddLive(h);
        return new VmallocOp(size) { Bind = h };
    }

    private static Op MakeRead(GenState s, Prng rng)
    {
        // ReadOp takes the offset modulo the area's size, so any offset is valid.
        long page = s.Arch.PageSize;
        long offset = rng.Chance(40) ? 0 : rng.Chance(80) ? rng.Range(1, 8) * page : rng.Range(1, 16 * page);
        return new ReadOp(rng.Pick(s.Live('v')), offset);
    }

    private static Op MakeReadPage(GenState s, Prng rng)
    {
        long pfns = s.Machine.MemoryBytes >> s.Arch.PageShift;
        return new ReadStructPageOp(rng.Range(0, pfns - 1));
    }

    /// <summary>A speculative walk: hardware may make one for any address at any time; aimed, most
    /// of the time, at a vmemmap entry changed to a new leaf and not yet flushed (where what a
    /// CPU caches matters), else at any struct page.</summary>
    private static Op MakePrefetch(GenState s, Prng rng)
    {
        var a = s.Arch;
        var changed = VmemmapChanges(s).ToList();
        if (changed.Count == 0 || !rng.Chance(80)) return new PrefetchPageOp(((ReadStructPageOp)MakeReadPage(s, rng)).Pfn);
        var p = changed[rng.Next(changed.Count)];
        long first = a.PageToPfn(p.Start);
        long count = Math.Max(1, (long)(Math.Min(p.End, a.VmemmapEnd) - p.Start) / Engine.Config.ArchConfig.StructPageSize);
        return new PrefetchPageOp(first + rng.Range(0, Math.Min(count, 4096) - 1));
    }

    private static IEnumerable<Engine.Smp.PendingFlush> VmemmapChanges(GenState s) =>
        s.Engine.Tlb.PendingFlushes.Where(p => p.Mm == "init_mm" && p.New.IsLeaf && p.Start >= s.Arch.VmemmapStart && p.Start < s.Arch.VmemmapEnd);

    private static bool VmemmapChanging(GenState s) => VmemmapChanges(s).Any();

    private static Op? Pick(List<(int W, Func<Op?> Make)> choices, Prng rng)
    {
        int i = rng.PickIndex(choices.Select(c => c.W).ToList());
        return i < 0 ? null : choices[i].Make();
    }
}
