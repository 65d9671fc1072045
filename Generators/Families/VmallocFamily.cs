// Generation of huge-vmalloc operations (Engine/Scenario/VmallocOps.cs and the vmalloc, vfree,
// read lines of CoreOps.cs), weighted toward where the vmalloc invariants break:
// - sizes around PMD_SIZE (PMD_SIZE - 1 page .. 2 * PMD_SIZE), on arm64 around CONT_PTE_SIZE
//   (contiguous PTEs for vmalloc_huge), as well as a few pages, through
//   vmalloc_huge and plain vmalloc (the opt-in test and the v5.13 policy differ exactly there);
// - reads before frees, so that a CPU's TLB and walk cache hold the area when it goes away, and
//   vm_unmap_aliases after frees, so that the freed range (and its leftover PTE tables) is
//   handed out again: a huge area over a PMD that small areas used replaces the old PTE table
//   through pmd_free_pte_page;
// - allocation failures just before a huge allocation, so that the fallback to small pages runs;
// - module allocations (module_alloc: VM_FLUSH_RESET_PERMS) whose permissions set_memory_ro/rw/
//   x/nx change, mostly over the whole area, reads through the direct-map alias of their pages
//   (so that a CPU caches the alias's permission), set_vm_flush_reset_perms on other areas (a
//   vfree with the flag and without it), and sustained memory pressure (fail_alloc of 4096
//   allocations: every split the permission reset would need fails, as Rick Edgecombe feared).
//   set_memory_* is drawn only for module allocations: they are the callers that change vmalloc
//   permissions (the module loader, BPF JIT, kprobes and ftrace trampolines all allocate through
//   module_alloc / execmem), and a caller that changes permissions of an area it vfrees without
//   VM_FLUSH_RESET_PERMS or set_memory_rw is buggy itself;
// - vmap of a few fresh pages, vunmap, and vunmap_range / vunmap_range_noflush of whole
//   backing allocations of an area (never cutting a leaf: correct callers do not);
// - ioremap of device ranges of a few pages, CONT_PTE_SIZE, PMD_SIZE and beyond (a PUD now and
//   then) at physical offsets that are aligned, one page off or anywhere, and iounmap;
// - vmalloc_to_page walks, mostly started and stepped a table or two at a time between the
//   other CPUs' operations (huge mappings over leftover tables, frees, purges);
// - the population race (PopulateRacePlan): `cpuA: start vA = vmalloc S`, one step (which ends
//   right after the page of the first missing table is allocated, pte_alloc_one_kernel or a
//   pmd/pud_alloc_one), `cpuB: start vB = vmalloc` of a few pages, one step (vB's range follows
//   vA's, so it needs the same missing table and allocates its own page), then vA and vB until
//   done: both allocated before either took init_mm.page_table_lock, so the second re-checks
//   and frees its page (or, without the re-check, overwrites the first's table). S is a few
//   pages (at the start of a scenario nothing of the vmalloc range is populated) or PMD_SIZE
//   (its tail reaches into the next PMD, whose PTE table is then missing). The plan goes on
//   only while vA really stopped after an allocation; while it runs the family's weight is high,
//   so that other families do not break it up.
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

    public IReadOnlyList<string> Kinds { get; } = ["vmalloc_huge", "vmalloc", "vfree", "read", "vm_unmap_aliases", "fail_alloc",
        "module_alloc", "set_memory", "read_direct_map", "set_vm_flush_reset_perms", "pressure",
        "vmap", "vunmap", "vunmap_range", "ioremap", "iounmap", "vmalloc_to_page", "populate_race"];

    /// <summary>How many allocations "pressure" makes fail: more than the 2 * 512 splits a reset
    /// of one 2M huge page tries (invalid, then default, for each small page).</summary>
    private const int PressureAllocs = 4096;

    /// <summary>Correct variants (drawn or fixed) and the variants that focus on vmalloc. A
    /// buggy variant of another mechanism does not get this family: it would only dilute that
    /// variant's search, whose SearchTests were measured without it, and change its stream.</summary>
    public bool AppliesTo(ArchConfig arch, NamedVariant variant) =>
        variant.Correct || (VariantTargets.For(variant.Name)?.Focus.Contains(typeof(VmallocFamily)) ?? false);

    public int Weight(GenState s) => PopulateRacePlan(s, make: false) is not null ? 400 : ModuleChainLink(s) ? 200 : 10;

    public Op? Next(GenState s, Prng rng)
    {
        if (PopulateRacePlan(s, make: true) is { } planned) return planned;
        if (ModulePermissionChain(s, rng) is { } chained) return chained with { Cpu = s.IdleCpu(rng) };
        // A started vmalloc_to_page walk advances a table or two at a time, so that what the
        // other CPUs do (huge mappings replacing leftover tables, frees, purges) lands between
        // its reads.
        if (s.Ops.Count > 0 && s.Ops[^1] is VmallocToPageOp { Start: true } started && !s.Engine.Cpus[started.Cpu].Idle && rng.Chance(40))
            return new StepOp((int)rng.Range(1, 2)) { Cpu = started.Cpu };
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
        var vmaps = live.Where(h => IsVmap(s, h)).ToList();
        var ioremaps = live.Where(h => IsIoremap(s, h)).ToList();
        var modules = live.Where(h => IsModule(s, h)).ToList();
        var others = live.Where(h => !IsModule(s, h) && !IsVmap(s, h) && !IsIoremap(s, h)).ToList();
        var freeable = live.Where(h => !IsVmap(s, h) && !IsIoremap(s, h)).ToList();
        // Areas whose permissions set_memory_* changed: their vfree resets the direct map, and a
        // read of their alias puts its permission in a TLB, so frees and reads prefer them.
        var changed = modules.Where(h => s.Handles.TryGet<Engine.Mm.VmArea>(h, out var a) && !a.PageWritable(0)).ToList();
        Add("vfree", freeable.Count > 0 ? 12 : 0, () =>
        {
            string h = changed.Count > 0 && rng.Chance(60) ? rng.Pick(changed) : rng.Pick(freeable);
            return Vfree(s, h);
        });
        Add("vmap", live.Count < 4 ? 8 : 1, () =>
        {
            string h = s.FreshHandle('v');
            s.AddLive(h);
            return new VmapOp(rng.Range(1, 8)) { Bind = h };
        });
        Add("vunmap", vmaps.Count > 0 ? 8 : 0, () =>
        {
            string h = rng.Pick(vmaps);
            s.RemoveLive(h);
            return new VunmapOp(h);
        });
        Add("vmalloc_to_page", freeable.Count + vmaps.Count > 0 ? 6 : 0, () =>
        {
            var pick = freeable.Concat(vmaps).ToList();
            return new VmallocToPageOp(rng.Pick(pick), rng.Chance(50) ? 0 : rng.Range(1, 2 * s.Arch.PmdSize / s.Arch.PageSize) * s.Arch.PageSize) { Start = s.IdleCpus.Count > 1 && rng.Chance(60) };
        });
        Add("ioremap", live.Count < 4 ? 8 : 1, () => MakeIoremap(s, rng));
        Add("iounmap", ioremaps.Count > 0 ? 8 : 0, () =>
        {
            string h = rng.Pick(ioremaps);
            s.RemoveLive(h);
            return new IounmapOp(h);
        });
        Add("vunmap_range", live.Count > 0 ? (vmaps.Count > 0 ? 12 : 4) : 0, () => MakeVunmapRange(s, rng, vmaps.Count > 0 && rng.Chance(70) ? rng.Pick(vmaps) : rng.Pick(live)));
        Add("read", live.Count > 0 ? 16 : 0, () => MakeRead(s, rng));
        Add("populate_race", s.IdleCpus.Count >= 2 && live.Count < 4 ? 6 : 0, () => StartPopulateRace(s, rng));
        Add("vm_unmap_aliases", lastWasFree ? 20 : 4, () => new VmUnmapAliasesOp());
        Add("fail_alloc", 3, () => new FailAllocOp(rng.Chance(50) ? 0 : (int)rng.Range(1, 8), rng.Chance(70) ? 1 : (int)rng.Range(2, 4)));
        Add("module_alloc", live.Count < 4 ? 8 : 1, () => MakeModuleAlloc(s, rng));
        Add("set_memory", modules.Count > 0 ? 14 : 0, () => MakeSetMemory(s, rng, rng.Pick(modules)));
        Add("read_direct_map", changed.Count > 0 ? 14 : live.Count > 0 ? 6 : 0, () => new ReadDirectMapOp(changed.Count > 0 && rng.Chance(70) ? rng.Pick(changed) : rng.Pick(live),
            rng.Chance(50) ? 0 : rng.Range(1, 2 * s.Arch.PmdSize / s.Arch.PageSize) * s.Arch.PageSize));
        Add("set_vm_flush_reset_perms", others.Count > 0 ? 3 : 0, () => new SetVmFlushResetPermsOp(rng.Pick(others)));
        // Pressure matters once an area's permissions differ from the default: its reset on vfree
        // may then need a split.
        Add("pressure", changed.Count > 0 ? 10 : live.Count > 0 ? 1 : 0, () => new FailAllocOp(0, PressureAllocs));
        int i = rng.PickIndex(choices.Select(c => c.W).ToList());
        return i < 0 ? null : choices[i].Make();
    }

    /// <summary>Whether the last operation is a link of the module permission chain (see
    /// ModulePermissionChain), which this family then usually continues.</summary>
    private bool ModuleChainLink(GenState s)
    {
        if (s.Ops.Count == 0 || !s.Enabled(this, "set_memory")) return false;
        return s.Ops[^1] switch
        {
            ModuleAllocOp { Bind: { } h } => s.Handles.TryGet<Engine.Mm.VmArea>(h, out _),
            SetMemoryOp or ReadDirectMapOp => true,
            FailAllocOp { Count: PressureAllocs } => true,
            _ => false,
        };
    }

    /// <summary>`vfree h`: the handle leaves the live areas.</summary>
    private static VfreeOp Vfree(GenState s, string h)
    {
        s.RemoveLive(h);
        return new VfreeOp(h);
    }

    /// <summary>The module loader's life of an area, continued from the last operation (each
    /// link with a coin; any other operation breaks the chain): module_alloc is followed by
    /// set_memory_ro of the whole area (module_enable_ro), that by a read through the direct-map
    /// alias of one of its pages (a CPU caches the alias with the permission the change gave
    /// it), the read by sustained allocation pressure (the reset's direct-map split may then
    /// fail) or by the vfree, and the pressure by the vfree, whose VM_FLUSH_RESET_PERMS resets
    /// and flushes the aliases of the pages it frees.</summary>
    private Op? ModulePermissionChain(GenState s, Prng rng)
    {
        if (!ModuleChainLink(s) || s.IdleCpus.Count == 0 || !rng.Chance(75)) return null;
        long page = s.Arch.PageSize;
        bool Changed(string h) => s.Live('v').Contains(h) && IsModule(s, h) && s.Handles.TryGet<Engine.Mm.VmArea>(h, out var a) && !a.PageWritable(0);
        switch (s.Ops[^1])
        {
            case ModuleAllocOp { Bind: { } h } when s.Handles.TryGet<Engine.Mm.VmArea>(h, out var area) && area.PageWritable(0):
                return new SetMemoryOp(SetMemoryKind.Ro, h, 0, (long)(area.Size / (ulong)page));
            case SetMemoryOp { Kind: SetMemoryKind.Ro } set when Changed(set.Area) && s.Enabled(this, "read_direct_map")
                && s.Handles.TryGet<Engine.Mm.VmArea>(set.Area, out var changed):
                return new ReadDirectMapOp(set.Area, rng.Range(0, (long)(changed.Size / (ulong)page) - 1) * page);
            case ReadDirectMapOp read when Changed(read.Area):
                return rng.Chance(40) && s.Enabled(this, "pressure") ? new FailAllocOp(0, PressureAllocs)
                    : s.Enabled(this, "vfree") ? Vfree(s, read.Area) : null;
            case FailAllocOp { Count: PressureAllocs } when s.Enabled(this, "vfree") && s.Live('v').Where(Changed).ToList() is { Count: > 0 } areas:
                return Vfree(s, areas[^1]);
            default:
                return null;
        }
    }

    /// <summary>Whether the last step of <paramref name="cpu"/> allocated a page-table page for
    /// a missing table (the first step of __pte_alloc_kernel, __pmd_alloc, __pud_alloc,
    /// __p4d_alloc), before taking any lock.</summary>
    private static bool StoppedAfterTableAlloc(GenState s, int cpu) =>
        !s.Engine.Cpus[cpu].Idle && s.Engine.Cpus[cpu].LastStep.Action is "pte_alloc_one_kernel" or "pmd_alloc_one" or "pud_alloc_one" or "p4d_alloc_one";

    /// <summary>The next line of the population race, or null when no plan is under way (see
    /// the file header): read from the tail of the scenario, which the plan alone writes while
    /// its weight holds the other families off. With <paramref name="make"/> false it only
    /// says whether there is a next line (for the weight), binding no handle.</summary>
    private static Op? PopulateRacePlan(GenState s, bool make)
    {
        var ops = s.Ops;
        int n = ops.Count;
        static bool Started(Op o) => o is VmallocOp { Start: true };
        // [start vA]: one step of vA.
        if (n >= 1 && Started(ops[n - 1]) && !s.Engine.Cpus[ops[n - 1].Cpu].Idle
            && !(n >= 3 && Started(ops[n - 3]) && ops[n - 2] is StepOp))
            return new StepOp(1) { Cpu = ops[n - 1].Cpu };
        // [start vA, step A] with A stopped after its allocation: start vB on another CPU.
        if (n >= 2 && Started(ops[n - 2]) && ops[n - 1] is StepOp { Until: StepUntil.Count, Count: 1 } stepA && stepA.Cpu == ops[n - 2].Cpu
            && !(n >= 4 && Started(ops[n - 4]))
            && StoppedAfterTableAlloc(s, stepA.Cpu) && s.IdleCpus.FirstOrDefault(c => c != stepA.Cpu, -1) is var b && b >= 0)
        {
            var vb = new VmallocOp(s.Arch.PageSize) { Cpu = b, Start = true };
            if (!make) return vb;
            string h = s.FreshHandle('v');
            s.AddLive(h);
            return vb with { Bind = h };
        }
        // [start vA, step A, start vB]: one step of vB.
        if (n >= 3 && Started(ops[n - 1]) && Started(ops[n - 3]) && ops[n - 2] is StepOp && !s.Engine.Cpus[ops[n - 1].Cpu].Idle)
            return new StepOp(1) { Cpu = ops[n - 1].Cpu };
        // [start vA, step A, start vB, step B]: A until done.
        if (n >= 4 && Started(ops[n - 4]) && ops[n - 3] is StepOp && Started(ops[n - 2]) && ops[n - 1] is StepOp { Until: StepUntil.Count }
            && !s.Engine.Cpus[ops[n - 4].Cpu].Idle)
            return StepOp.UntilDone(ops[n - 4].Cpu);
        // [..., A until done]: B until done.
        if (n >= 5 && Started(ops[n - 5]) && Started(ops[n - 3]) && ops[n - 1] is StepOp { Until: StepUntil.Done } && !s.Engine.Cpus[ops[n - 3].Cpu].Idle)
            return StepOp.UntilDone(ops[n - 3].Cpu);
        return null;
    }

    /// <summary>The plan's first line: vA, a few pages or (where a PMD holds at most 2048 pages)
    /// PMD_SIZE of small pages, started on an idle CPU.</summary>
    private static Op StartPopulateRace(GenState s, Prng rng)
    {
        long page = s.Arch.PageSize, pmdPages = s.Arch.PmdSize / page;
        long size = pmdPages <= MaxPmdPages && rng.Chance(50) ? pmdPages * page : rng.Range(1, 4) * page;
        string h = s.FreshHandle('v');
        s.AddLive(h);
        return new VmallocOp(size) { Start = true, Bind = h };
    }

    private static Op MakeAlloc(GenState s, Prng rng, bool huge)
    {
        long page = s.Arch.PageSize;
        long pmdPages = s.Arch.PmdSize / page;
        bool aroundPmd = pmdPages <= MaxPmdPages && rng.Chance(huge ? 70 : 35);
        long contPages = s.Arch.ContSize(Engine.Config.PtLevel.Pte) / page;
        long size = aroundPmd
            ? rng.Pick(new[] { pmdPages - 1, pmdPages, pmdPages, pmdPages + 1, 2 * pmdPages }) * page
            : contPages > 1 && contPages <= MaxPmdPages && rng.Chance(40) // arm64: around CONT_PTE_SIZE
                ? rng.Pick(new[] { contPages - 1, contPages, contPages + 1, 3 * contPages }) * page
                : rng.Range(1, 4) * page;
        string h = s.FreshHandle('v');
        s.AddLive(h);
        return huge ? new VmallocHugeOp(size) { Bind = h } : new VmallocOp(size) { Bind = h };
    }

    private static bool IsVmap(GenState s, string handle) => s.Ops.Any(o => o is VmapOp && o.Bind == handle);
    private static bool IsIoremap(GenState s, string handle) => s.Ops.Any(o => o is IoremapOp && o.Bind == handle);

    /// <summary>ioremap of a device range: a few pages, or PMD-sized and larger (a PUD on
    /// machines with PUD leaves, rarely: it costs no memory, only VA), at a physical offset that
    /// is PMD-aligned, one page off, or anywhere, so that the alignment ladder of
    /// vmap_try_huge_pmd decides every way.</summary>
    private static Op MakeIoremap(GenState s, Prng rng)
    {
        long page = s.Arch.PageSize, pmd = s.Arch.PmdSize;
        long cont = s.Arch.ContSize(Engine.Config.PtLevel.Pte);
        long size = rng.Pick(new[] { 0, 1, 2, 3 }) switch
        {
            0 => cont > 0 && rng.Chance(50) ? rng.Pick(new[] { cont, 2 * cont, cont + page }) : rng.Range(1, 4) * page,
            1 => pmd,
            2 => rng.Pick(new[] { 2 * pmd, pmd + page, 3 * pmd }),
            _ => rng.Chance(20) && s.Arch.LeafAllowed(Engine.Config.PtLevel.Pud) ? s.Arch.PudSize : pmd,
        };
        long offset = rng.Pick(new[] { 0, 0, 1, 2 }) switch
        {
            0 => rng.Range(0, 3) * pmd,
            1 => page,
            _ => rng.Range(0, 4 * pmd / page) * page,
        };
        string h = s.FreshHandle('v');
        s.AddLive(h);
        return new IoremapOp(offset, size) { Bind = h };
    }

    /// <summary>A vmap user unmapping part of what it mapped: a few pages of a vmap'd buffer,
    /// or of any other area a whole number of its backing allocations (an area's leaves are
    /// never larger than 1 &lt;&lt; page_order, so such a range never cuts one: the kernel WARNs
    /// about a range that does, 61ef8ddaa35e, and correct callers do not make one). The size of
    /// the area is not known when the line is drawn (the allocation may fall back), so the
    /// range is in units of the largest order the area can have.</summary>
    private static Op MakeVunmapRange(GenState s, Prng rng, string handle)
    {
        long page = s.Arch.PageSize;
        long unit = 1;
        if (s.Handles.TryGet<Engine.Mm.VmArea>(handle, out var area))
            unit = area.IoremapPfn is not null ? (long)(area.Size / (ulong)page) : 1L << area.PageOrder; // an ioremap area's leaves: unmap it whole
        else if (!IsVmap(s, handle)) unit = s.Arch.PmdSize / page;
        long offset = rng.Chance(40) ? 0 : rng.Range(0, 3) * unit;
        long pages = rng.Range(1, 2) * unit;
        return new VunmapRangeOp(handle, offset * page, pages, Flush: rng.Chance(60));
    }

    private static bool IsModule(GenState s, string handle) => s.Ops.Any(o => o is ModuleAllocOp && o.Bind == handle);

    private static Op MakeModuleAlloc(GenState s, Prng rng)
    {
        long page = s.Arch.PageSize;
        long pmdPages = s.Arch.PmdSize / page;
        long size = pmdPages <= MaxPmdPages && rng.Chance(60)
            ? rng.Pick(new[] { pmdPages, pmdPages, pmdPages + 1, 2 * pmdPages }) * page
            : rng.Range(1, 4) * page;
        string h = s.FreshHandle('v');
        s.AddLive(h);
        return new ModuleAllocOp(size) { Bind = h };
    }

    /// <summary>What the module loader does (module_enable_ro/nx, text made ROX): mostly the
    /// whole area read-only, executable or back again; sometimes a few pages of it.</summary>
    private static Op MakeSetMemory(GenState s, Prng rng, string handle)
    {
        long page = s.Arch.PageSize;
        long pages = s.Handles.TryGet<Engine.Mm.VmArea>(handle, out var area) ? (long)(area.Size / (ulong)page) : 1;
        // The loader's order: read-only first, then executable; back to RW or NX less often.
        bool writable = area is null || area.PageWritable(0);
        var kind = writable
            ? rng.Pick(new[] { SetMemoryKind.Ro, SetMemoryKind.Ro, SetMemoryKind.Ro, SetMemoryKind.Ro, SetMemoryKind.X, SetMemoryKind.Nx })
            : rng.Pick(new[] { SetMemoryKind.X, SetMemoryKind.X, SetMemoryKind.Nx, SetMemoryKind.Rw, SetMemoryKind.Ro });
        bool whole = rng.Chance(70) || pages == 1;
        long offset = whole ? 0 : rng.Range(0, pages - 1);
        long n = whole ? pages : rng.Range(1, Math.Min(4, pages - offset));
        return new SetMemoryOp(kind, handle, offset * page, n);
    }

    private static Op MakeRead(GenState s, Prng rng)
    {
        long page = s.Arch.PageSize;
        long offset = rng.Chance(50) ? 0 : rng.Range(1, 2 * s.Arch.PmdSize / page) * page;
        return new ReadOp(rng.Pick(s.Live('v')), offset);
    }
}
