// The explicit table of operation verbs: verb → parser of its arguments. Adding an operation
// means adding its record and one line here. No reflection.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Scenario;

public static class OpCatalog
{
    /// <summary>Parses the arguments of one verb; the prefix (cpu, start, bind) is applied after.</summary>
    public delegate Op ArgParser(LineReader r, int cpus);

    /// <summary>Largest size an operation may name (vmalloc etc.): 64 GiB keeps replays bounded.</summary>
    public const long MaxOpSize = 64L << 30;

    private static readonly Dictionary<string, (ArgParser Parse, char? BindKind)> Verbs = new(StringComparer.Ordinal)
    {
        ["vmalloc"] = ((r, _) => new VmallocOp(r.Size("size", 1, MaxOpSize)), 'v'),
        ["vfree"] = ((r, _) => new VfreeOp(r.Handle('v')), null),
        ["read"] = ((r, _) => new ReadOp(r.Handle('v'), r.Size("offset", 0, MaxOpSize)), null),
        ["free_empty_tables"] = ((r, _) => new FreeEmptyTablesOp(), null),
        ["fail_alloc"] = ((r, _) => new FailAllocOp((int)r.Int("after", 0, 1_000_000), (int)r.Int("count", 1, 1_000_000)), null),
        ["rcu_reader"] = ((r, _) => new RcuReaderOp((int)r.Int("steps", 0, 10_000)), null),
        ["synchronize_rcu"] = ((r, _) => new SynchronizeRcuOp(), null),
        ["filemap_add"] = ((r, _) => new FilemapAddOp((int)r.Int("pages", 1, 1 << 20)), 'p'),
        ["truncate"] = ((r, _) => new TruncateOp(r.Handle('p')), null),
        ["spec_lookup"] = ((r, _) => new SpecLookupOp(r.Handle('p'), r.Int("index", 0, 1 << 20)), null),
        ["pfn_walk"] = ((r, _) => new PfnWalkOp(r.Handle('p'), r.Int("index", 0, 1 << 20)), null),
        ["compact_pfn"] = ((r, _) => new CompactPfnOp(r.Int("pfn", 0, long.MaxValue >> 16)), null),
        ["read_folio_page"] = ((r, _) => new ReadFolioPageOp(r.Handle('f'), r.Int("subpage", 0, 1L << 32)), null),
        ["read_page"] = ((r, _) => new ReadStructPageOp(r.Int("pfn", 0, long.MaxValue >> 16)), null),
        ["prefetch_page"] = ((r, _) => new PrefetchPageOp(r.Int("pfn", 0, long.MaxValue >> 16)), null),
        ["hugetlb_pool"] = ((r, _) => new HugetlbPoolOp(r.Size("hugetlb size", 1, MaxOpSize), r.Int("nr_hugepages", 0, HugetlbOpText.MaxPoolCount)), null),
        ["hugetlb_alloc"] = ((r, _) => new HugetlbAllocOp(r.Size("hugetlb size", 1, MaxOpSize)), 'f'),
        ["hugetlb_free"] = ((r, _) => new HugetlbFreeOp(r.Handle('f')), null),
        ["dissolve"] = ((r, _) => new DissolveOp(r.Handle('f')), null),
        ["memory_failure"] = ((r, _) => new MemoryFailureOp(r.Handle('f'), r.Int("subpage", 0, 1L << 32)), null),
        ["flush_dcache_page"] = ((r, _) => new FlushDcachePageOp(r.Handle('f'), r.Int("subpage", 0, 1L << 32)), null),
        ["vmalloc_huge"] = ((r, _) => new VmallocHugeOp(r.Size("size", 1, MaxOpSize)), 'v'),
        ["vm_unmap_aliases"] = ((r, _) => new VmUnmapAliasesOp(), null),
        ["module_alloc"] = ((r, _) => new ModuleAllocOp(r.Size("size", 1, MaxOpSize)), 'v'),
        ["set_vm_flush_reset_perms"] = ((r, _) => new SetVmFlushResetPermsOp(r.Handle('v')), null),
        ["set_memory_ro"] = ((r, _) => new SetMemoryOp(SetMemoryKind.Ro, r.Handle('v'), r.Size("offset", 0, MaxOpSize), r.Int("pages", 1, 1 << 24)), null),
        ["set_memory_rw"] = ((r, _) => new SetMemoryOp(SetMemoryKind.Rw, r.Handle('v'), r.Size("offset", 0, MaxOpSize), r.Int("pages", 1, 1 << 24)), null),
        ["set_memory_x"] = ((r, _) => new SetMemoryOp(SetMemoryKind.X, r.Handle('v'), r.Size("offset", 0, MaxOpSize), r.Int("pages", 1, 1 << 24)), null),
        ["set_memory_nx"] = ((r, _) => new SetMemoryOp(SetMemoryKind.Nx, r.Handle('v'), r.Size("offset", 0, MaxOpSize), r.Int("pages", 1, 1 << 24)), null),
        ["vmap"] = ((r, _) => new VmapOp(r.Int("pages", 0, 1 << 20)), 'v'),
        ["vunmap"] = ((r, _) => new VunmapOp(r.Handle('v')), null),
        ["vunmap_range"] = ((r, _) => new VunmapRangeOp(r.Handle('v'), r.Size("offset", 0, MaxOpSize), r.Int("pages", 1, 1 << 24), true), null),
        ["vunmap_range_noflush"] = ((r, _) => new VunmapRangeOp(r.Handle('v'), r.Size("offset", 0, MaxOpSize), r.Int("pages", 1, 1 << 24), false), null),
        ["ioremap"] = ((r, _) => new IoremapOp(r.Size("phys offset", 0, MaxOpSize), r.Size("size", 0, MaxOpSize)), 'v'),
        ["iounmap"] = ((r, _) => new IounmapOp(r.Handle('v')), null),
        ["vmalloc_to_page"] = ((r, _) => new VmallocToPageOp(r.Handle('v'), r.Size("offset", 0, MaxOpSize)), null),
        ["read_direct_map"] = ((r, _) => new ReadDirectMapOp(r.Handle('v'), r.Size("offset", 0, MaxOpSize)), null),
        ["hvo_knob"] = ((r, _) => new HvoKnobOp(HugetlbOpText.OnOff(r)), null),
        // HugeTLB high-granularity mapping (HgmOps.cs)
        ["hgm_mmap"] = ((r, _) => new HgmMmapOp(r.Size("hugetlb size", 1, MaxOpSize), r.Int("pages", 1, HgmOpText.MaxFilePages), HgmOpText.Flag(r, "anon")), 'a'),
        ["hgm_touch"] = ((r, _) => new HgmTouchOp(r.Handle('a'), HgmOpText.Offset(r), HgmOpText.Flag(r, "write")), null),
        ["madvise_split"] = ((r, _) => new MadviseSplitOp(r.Handle('a'), HgmOpText.Offset(r), HgmOpText.Offset(r)), null),
        ["uffd_register"] = ((r, _) => new UffdRegisterOp(r.Handle('a'), HgmOpText.Offset(r), HgmOpText.Offset(r), HgmOpText.Mode(r, "minor", "wp")), null),
        ["uffdio_continue"] = ((r, _) => new UffdioContinueOp(r.Handle('a'), HgmOpText.Offset(r), HgmOpText.Offset(r)), null),
        ["madvise_collapse"] = ((r, _) => new MadviseCollapseOp(r.Handle('a'), HgmOpText.Offset(r), HgmOpText.Offset(r)), null),
        ["hgm_munmap"] = ((r, _) => new HgmMunmapOp(r.Handle('a'), HgmOpText.Offset(r), HgmOpText.Offset(r)), null),
        ["hgm_mprotect"] = ((r, _) => new HgmMprotectOp(r.Handle('a'), HgmOpText.Offset(r), HgmOpText.Offset(r), !HgmOpText.Mode(r, "ro", "rw")), null),
        ["hgm_fork"] = ((r, _) => new HgmForkOp(r.Handle('a')), 'a'),
        ["hgm_alias"] = ((r, _) => new HgmAliasOp(r.Handle('a')), 'a'),
        ["hgm_exit"] = ((r, _) => new HgmExitOp(r.Handle('a')), null),
        ["hgm_walk"] = ((r, _) => new HgmWalkOp(r.Handle('a'), HgmOpText.Offset(r)), null),
        ["hgm_punch_hole"] = ((r, _) => new HgmPunchHoleOp(r.Handle('a'), r.Int("index", 0, HgmOpText.MaxFilePages)), null),
        ["hgm_truncate"] = ((r, _) => new HgmTruncateOp(r.Handle('a'), r.Int("pages", 0, HgmOpText.MaxFilePages)), null),
        ["hgm_memory_failure"] = ((r, _) => new HgmMemoryFailureOp(r.Handle('a'), r.Int("index", 0, HgmOpText.MaxFilePages), r.Int("subpage", 0, 1L << 32)), null),
        ["add_memory"] = ((r, _) => HotplugOpText.Parse(HotplugCall.AddMemory, r), null),
        ["online_pages"] = ((r, _) => HotplugOpText.Parse(HotplugCall.OnlinePages, r), null),
        ["offline_pages"] = ((r, _) => HotplugOpText.Parse(HotplugCall.OfflinePages, r), null),
        ["remove_memory"] = ((r, _) => HotplugOpText.Parse(HotplugCall.RemoveMemory, r), null),
        ["memremap_pages"] = ((r, _) => HotplugOpText.Parse(HotplugCall.MemremapPages, r), null),
        ["memunmap_pages"] = ((r, _) => HotplugOpText.Parse(HotplugCall.MemunmapPages, r), null),
        ["ptdump"] = ((r, _) => HotplugOpText.ParsePtdump(r), null),
        ["online_pfn_walk"] = ((r, _) => new OnlinePfnWalkOp(r.Int("pfn", 0, long.MaxValue >> 16)), null),
    };

    public static IEnumerable<string> KnownVerbs => Verbs.Keys.Order(StringComparer.Ordinal);

    /// <summary>Verbs that stand for no kernel path as the model calls them, so that generation
    /// never draws them: they stay for hand-written scenarios of one engine function and for
    /// old repro files. free_empty_tables over the vmalloc range (FreeEmptyTablesOp): the kernel
    /// frees empty kernel tables only in hot-remove, over the linear map and vmemmap.</summary>
    public static IReadOnlySet<string> NotGenerated { get; } = new SortedSet<string>(StringComparer.Ordinal) { "free_empty_tables" };

    /// <summary>Parses `[cpuN:] [start] [h =] verb args`, `step cpuN [n | to ACTION | until done]`
    /// or `irq cpuN op`.</summary>
    public static Op ParseOp(LineReader r, int cpus)
    {
        int cpu = 0;
        string? first = r.Peek();
        bool prefixed = false;
        if (first is not null && first.EndsWith(':') && LineReader.TryCpu(first[..^1], out _))
        {
            prefixed = true;
            int col = r.Column;
            r.Word("cpu prefix");
            LineReader.TryCpu(first[..^1], out cpu);
            if (cpu >= cpus) throw new ReproParseException(r.LineNo, col, $"{first[..^1]}: the machine has {cpus} CPUs");
        }
        if (prefixed && r.Peek() is "step" or "irq")
            throw r.Error($"'{r.Peek()}' names its CPU as an argument (step cpuN, irq cpuN op); it takes no cpuN: prefix");
        if (r.Peek() == "step")
        {
            r.Word("step");
            int c = r.Cpu(cpus);
            if (r.Peek() == "to")
            {
                r.Word("to");
                string action = r.Action();
                r.End();
                return StepOp.To(c, action);
            }
            if (r.Peek() == "until")
            {
                r.Word("until");
                r.Expect("done");
                r.End();
                return StepOp.UntilDone(c);
            }
            if (r.Peek() is { } w && !(char.IsAsciiDigit(w[0]) || w[0] is '-' or '+'))
                throw r.Error($"'{r.Peek()}' is not a step count, 'to ACTION' or 'until done'");
            int count = r.AtEnd ? 1 : (int)r.Int("step count", 1, CpuStepping.MaxSteps);
            r.End();
            return new StepOp(count) { Cpu = c };
        }
        if (r.Peek() == "irq")
        {
            r.Word("irq");
            int c = r.Cpu(cpus);
            var inner = ParseOp(r, cpus);
            if (inner is StepOp or IrqOp || inner.Start || inner.Bind is not null || inner.Cpu != 0)
                throw r.Error("an interrupt handler is a plain operation (no step, irq, start, cpu or handle)");
            return new IrqOp(inner) { Cpu = c };
        }
        bool start = false;
        if (r.Peek() == "start") { r.Word("start"); start = true; }
        string? bind = null;
        if (r.Peek(1) == "=")
        {
            int col = r.Column;
            bind = r.Word("handle");
            if (!LineReader.IsHandle(bind)) throw new ReproParseException(r.LineNo, col, $"'{bind}' is not a handle (a letter and digits, e.g. v1)");
            r.Expect("=");
        }
        int vcol = r.Column;
        string verb = r.Word("an operation");
        if (!Verbs.TryGetValue(verb, out var entry))
            throw new ReproParseException(r.LineNo, vcol, $"unknown operation '{verb}'");
        if (bind is not null && entry.BindKind is null)
            throw new ReproParseException(r.LineNo, vcol, $"'{verb}' produces nothing to bind to {bind}");
        if (bind is not null && bind[0] != entry.BindKind)
            throw new ReproParseException(r.LineNo, vcol, $"'{verb}' binds {entry.BindKind}N handles, not {bind}");
        var op = entry.Parse(r, cpus);
        r.End();
        return op with { Cpu = cpu, Start = start, Bind = bind };
    }
}
