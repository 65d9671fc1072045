// The incremental forms of the issue-9 restatements and of the vmalloc invariants agree with their full scans after every step
// of generated scenarios that draw from every family (the correct kernel and the breakages they
// exist for). Runs of a breakage stop at the first violation; the verdicts must agree up to and
// including it.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Generators;
using PropertySuite.Generators.Families;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.EngineCore;

[Trait("Category", "engine")]
public class TeethOracleTests
{
    private static readonly BuddyWellFormed Buddy = new();
    private static readonly RefcountAudit Audit = new();
    private static readonly VmallocMappingsExact VmallocExact = new();
    private static readonly HugeVmapLeafOnlyWhereAllowed HugeVmap = new();
    private static readonly NoSharedLeafEntries SharedLeaf = new();
    private static readonly HvoFrameConservation HvoFrames = new();
    private static readonly OnlineAccounting Online = new();
    private static readonly DirectMapAliasPermissions DirectMap = new();
    private static readonly NoFreedFrameReachable FreedFrame = new();

    // The verdict compared: the whole evidence, except the audit's, where only the frame it names
    // first must agree (either form may list other holders).
    private static string? Whole(Violation? v) => v?.Evidence;
    private static string? FrameNamed(Violation? v) => v?.Evidence.Split(" has ")[0];

    private static IEnumerable<(string Name, Func<IKernelView, Violation?> Incremental, Func<IKernelView, Violation?> Full, Func<Violation?, string?> Verdict)> Pairs()
    {
        yield return (Buddy.Name, Buddy.Check, Buddy.CheckFullScan, Whole);
        yield return (Audit.Name, Audit.Check, Audit.CheckFullScan, FrameNamed);
        yield return (VmallocExact.Name, VmallocExact.Check, VmallocExact.CheckFullScan, Whole);
        yield return (HugeVmap.Name, HugeVmap.Check, HugeVmap.CheckFullScan, Whole);
        yield return (SharedLeaf.Name, SharedLeaf.Check, SharedLeaf.CheckFullScan, Whole);
        yield return (HvoFrames.Name, HvoFrames.Check, HvoFrames.CheckFullScan, Whole);
        yield return (Online.Name, Online.Check, Online.CheckFullScan, Whole);
        yield return (DirectMap.Name, DirectMap.Check, DirectMap.CheckFullScan, Whole);
        yield return (FreedFrame.Name, FreedFrame.Check, FreedFrame.CheckFullScan, Whole);
    }

    /// <summary>Scenarios per row. Each operation comes from a family drawn uniformly from
    /// Families.All, so adding a family reshuffles every row's scenarios: 20 left
    /// broken-vunmap-range-overshoots without a violation once HvoBatchWindowFamily was added.</summary>
    private const int Seeds = 40;

    [Theory]
    [InlineData("default", "x86_64-4k-l4", 0)]
    [InlineData("default", "arm64-16k-l3", 0)]
    [InlineData("broken-truncate-frees-twice", "x86_64-4k-l4", 1)]
    [InlineData("broken-pfn-walk-skips-put", "x86_64-4k-l4", 1)]
    [InlineData("default", "arm64-4k-l4", 0)]
    [InlineData("broken-vmalloc-no-guard-page", "x86_64-4k-l4", 1)]
    [InlineData("broken-vunmap-range-overshoots", "x86_64-4k-l4", 1)]
    [InlineData("broken-huge-vmalloc-ignores-opt-in", "arm64-16k-l3", 1)]
    [InlineData("broken-cont-pte-vmap-ignores-phys-alignment", "arm64-4k-l4", 1)]
    [InlineData("hugetlb-folio-misaligned", "x86_64-4k-l4", 1)]
    [InlineData("broken-free-skips-vmemmap-restore", "x86_64-4k-l4", 1)]
    [InlineData("hvo-remaps-pmd-without-split", "x86_64-4k-l4", 1)]
    [InlineData("default", "arm64-64k-l3", 0)]
    public void IncrementalVerdictsEqualFullScans(string variant, string config, int mustFind)
    {
        var nv = KernelVariants.ByName(variant);
        var arch = ArchConfig.ByName(config);
        int found = 0, steps = 0;
        for (int seed = 0; seed < Seeds; seed++)
        {
            var s = new GenState(arch, new MachineConfig(Math.Max(256L << 20, arch.SectionSize), 2), nv, []);
            var rng = new Prng((ulong)(seed * 7919 + variant.Length));
            bool broke = false;
            for (int i = 0; i < 40 && !broke; i++)
            {
                var family = Families.All[rng.Next(Families.All.Count)];
                if (family.Next(s, rng) is not { } op) continue;
                s.Append(op);
                steps++;
                foreach (var (name, inc, full, verdict) in Pairs())
                {
                    string? f = verdict(full(s.Engine)), n = verdict(inc(s.Engine));
                    Assert.True(f == n, $"{variant} seed {seed} after `{op}`: {name} full scan says {f ?? "ok"}, incremental {n ?? "ok"}\n{string.Join("\n", s.Ops)}");
                    broke |= f is not null;
                }
            }
            if (broke) found++;
        }
        Assert.True(steps > 300, $"only {steps} steps generated");
        if (mustFind > 0) Assert.True(found >= mustFind, $"{variant}: no scenario broke an invariant");
        else Assert.Equal(0, found);
    }

    /// <summary>Paths the generated rows above do not reach (their machines have no hot-plug
    /// range; a restore failure needs an injected ENOMEM): written out, compared after every
    /// step. Each pair is compared while its full scan passed at the step before, and at the
    /// step it first fails.</summary>
    [Theory]
    [InlineData("default", "x86_64-4k-l4", "add_memory {B0} {S}\nonline_pages {B0} {S}\nf1 = hugetlb_alloc 2M\nhugetlb_free f1\ndissolve f1\noffline_pages {B0} {S}\nremove_memory {B0} {S}\nmemremap_pages {B0} 2M\nmemremap_pages 0x40200000 2M\n", false)]
    [InlineData("default", "arm64-16k-l4", "add_memory {B0} {S} memmap_on_memory\nonline_pages {B0} {S}\nhugetlb_alloc 2M\noffline_pages {B0} {S}\nadd_memory {B1} {S}\nremove_memory {B0} {S}\n", false)]
    [InlineData("broken-offline-keeps-section-online", "arm64-16k-l4", "add_memory {B0} {S}\nonline_pages {B0} {S}\noffline_pages {B0} {S}\n", true)]
    [InlineData("broken-online-skips-generic-online-page", "x86_64-4k-l4", "add_memory {B0} {S}\nonline_pages {B0} {S}\n", true)]
    [InlineData("broken-restore-leaks-partial-alloc", "x86_64-4k-l4", "f1 = hugetlb_alloc 2M\nfail_alloc 1 1\nhugetlb_free f1\n", true)]
    [InlineData("broken-free-skips-vmemmap-restore", "x86_64-4k-l5", "f1 = hugetlb_alloc 2M\nf2 = hugetlb_alloc 2M\nhugetlb_free f1\n", true)]
    [InlineData("broken-pmd-free-pte-page-skips-flush", "arm64-4k-l4", "v1 = vmalloc 4K\ncpu1: read v1 0\nvfree v1\nvm_unmap_aliases\nv2 = vmalloc_huge 2M\n", true)]
    [InlineData("broken-hgm-collapse-frees-tables-before-flush", "x86_64-4k-l4", "a1 = hgm_mmap 2M 1\na2 = hgm_alias a1\nhgm_touch a2 0 write\nmadvise_split a1 0 2M\nuffd_register a1 0 2M minor\nuffdio_continue a1 0 4K\nuffdio_continue a1 4K 4K\nhgm_touch a1 0\ncpu1: start madvise_collapse a1 0 2M\nstep cpu1 to pte_free\n", true)]
    [InlineData("default", "x86_64-4k-l4", "a1 = hgm_mmap 2M 1\na2 = hgm_alias a1\nhgm_touch a2 0 write\nmadvise_split a1 0 2M\nuffd_register a1 0 2M minor\nuffdio_continue a1 0 4K\nuffdio_continue a1 4K 4K\nhgm_touch a1 0\ncpu1: start madvise_collapse a1 0 2M\nstep cpu1 to pte_free\nstep cpu1 until done\nhgm_munmap a2 0 2M\nhgm_munmap a1 0 2M\n", false)]
    [InlineData("broken-set-memory-no-alias", "x86_64-4k-l4", "v1 = module_alloc 8K\nset_memory_ro v1 0 1\n", true)]
    [InlineData("broken-reset-perms-skips-direct-map-flush", "x86_64-4k-l4", "v1 = module_alloc 8K\nset_memory_ro v1 0 2\ncpu1: read_direct_map v1 4K\nvfree v1\n", true)]
    [InlineData("huge-module-alloc", "x86_64-4k-l4", "v1 = module_alloc 2M\nset_memory_ro v1 0 512\nfail_alloc 0 4096\nvfree v1\n", true)]
    [InlineData("default", "x86_64-4k-l4", "v1 = module_alloc 2M\nset_memory_ro v1 0 512\ncpu1: read_direct_map v1 4K\nset_memory_rw v1 0 1\nfail_alloc 0 4096\nvfree v1\nv2 = module_alloc 8K\nset_memory_ro v2 0 2\nvfree v2\n", false)]
    public void IncrementalVerdictsEqualFullScansOnWrittenScenarios(string variant, string config, string body, bool breaks)
    {
        var s = Engine.Scenario.Repro.Parse(Hotplug.HotplugProperties.Repro(config, variant, body));
        var clean = Pairs().Select(_ => true).ToArray();
        int steps = 0;
        var r = ScenarioRunner.Run(s, invariants: [], trace: (step, op, k) =>
        {
            steps++;
            int i = 0;
            foreach (var (name, inc, full, verdict) in Pairs())
            {
                if (clean[i])
                {
                    string? f = verdict(full(k)), n = verdict(inc(k));
                    Assert.True(f == n, $"{variant} step {step} `{op}`: {name} full scan says {f ?? "ok"}, incremental {n ?? "ok"}");
                    clean[i] = f is null;
                }
                i++;
            }
        });
        Assert.True(r.Violation is null || r.Violation.Invariant == RunResult.EngineExceptionName, r.ToString());
        Assert.Equal(s.Ops.Count(), steps);
        Assert.Equal(breaks, clean.Contains(false));
    }

    /// <summary>A page of an online section turned offline behind the allocator's back, with no
    /// section state set in that step: only the changed owner leads the incremental form there.</summary>
    [Fact]
    public void OnlineAccountingJudgesAnOwnerChangeAlone()
    {
        var k = Machines.Boot("x86_64-4k-l4", "1G");
        Assert.Null(Online.Check(k));
        k.BeginStep(1);
        k.Mem.SetOwner(k.Mem.MaxPfn - 1, 1, Engine.Mm.FrameOwner.Offline);
        var full = Online.CheckFullScan(k);
        Assert.NotNull(full);
        Assert.Equal(full!.Evidence, Online.Check(k)?.Evidence);
    }

    /// <summary>A direct-map PTE made writable again under a read-only module page, in a step
    /// that touches nothing of vmalloc: only the store to the direct map leads the incremental
    /// form to the vmalloc leaf whose alias it is (through the vmalloc leaf-frame index).</summary>
    [Fact]
    public void DirectMapAliasPermissionsJudgesADirectMapStoreAlone()
    {
        var k = Machines.Boot("x86_64-4k-l4", "256M");
        var (m, _) = k.Vmalloc.ModuleAlloc((ulong)k.Arch.PageSize * 2);
        Assert.Equal(Engine.Mm.Errno.Ok, k.Vmalloc.SetMemory.SetMemoryRo(m!.Addr, 2));
        k.BeginStep(1);
        Assert.Null(DirectMap.CheckFullScan(k));
        k.BeginStep(2);
        var alias = k.SwapperPgDir.Walk(k.Arch.PfnToVirt(m.Pages[1]));
        Assert.True(alias.IsLeaf && alias.Level == PtLevel.Pte && !alias.Entry.Writable, $"alias of the module's second page: {alias.Level} {alias.Entry}");
        k.SwapperPgDir.Set(alias.Table, alias.Index, alias.Entry.WithWritable(true));
        var full = DirectMap.CheckFullScan(k);
        Assert.NotNull(full);
        Assert.Equal(full!.Evidence, DirectMap.Check(k)?.Evidence);
    }

    /// <summary>A table built while detached and installed later: the step stores one table
    /// entry, and what makes the tree bad is below it (an entry stored a step earlier, when
    /// no walk from the root could reach it).</summary>
    [Fact]
    public void NoFreedFrameReachableJudgesAnInstalledSubtree()
    {
        var k = Machines.Boot("x86_64-4k-l4", "256M");
        var pgd = k.SwapperPgDir;
        ulong pudSize = 1UL << k.Arch.LevelShift(PtLevel.Pud);
        ulong va = (k.Arch.VmallocEnd - pudSize) & ~(pudSize - 1);
        var pud = pgd.WalkAlloc(va, PtLevel.Pud, k.Pgtable.TryAllocPageTablePage, out var err);
        Assert.True(pud is not null, $"no PUD table for {va:x}: {err}");
        int index = pgd.Index(va, PtLevel.Pud);
        Assert.True(pud!.Entries[index].IsNone, $"PUD entry for {va:x} is in use: {pud.Entries[index]}");
        k.BeginStep(1);
        Assert.True(k.Pgtable.TryAllocPageTablePage(out long pmdPfn));
        Assert.True(k.Pgtable.TryAllocPageTablePage(out long notATable));
        var pmd = pgd.NewTable(pmdPfn, PtLevel.Pmd, va);
        pgd.Set(pmd, 0, Pte.MkTable(notATable));
        Assert.Null(FreedFrame.CheckFullScan(k));
        k.BeginStep(2);
        pgd.Set(pud, index, Pte.MkTable(pmdPfn));
        var full = FreedFrame.CheckFullScan(k);
        Assert.NotNull(full);
        Assert.Equal(full!.Evidence, FreedFrame.Check(k)?.Evidence);
    }
}
