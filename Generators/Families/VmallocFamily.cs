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
//   other CPUs' operations (huge mappings over leftover tables, frees, purges).
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
        "vmap", "vunmap", "vunmap_range", "ioremap", "iounmap", "vmalloc_to_page"];

    /// <summary>How many allocations "pressure" makes fail: more than the 2 * 512 splits a reset
    /// of one 2M huge page tries (invalid, then default, for each small page).</summary>
    private const int PressureAllocs = 4096;

    /// <summary>Correct variants (drawn or fixed) and the variants that focus on vmalloc. A
    /// buggy variant of another mechanism does not get this family: it would only dilute that
    /// variant's search, whose SearchTests were measured without it, and change its stream.</summary>
    public bool AppliesTo(ArchConfig arch, NamedVariant variant) =>
        variant.Correct || (VariantTargets.For(variant.Name)?.Focus.Contains(typeof(VmallocFamily)) ?? false);

    public int Weight(GenState s) => 10;

    public Op? Next(GenState s, Prng rng)
    {
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
            s.RemoveLive(h);
            return new VfreeOp(h);
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
