// Hand-written HGM scenarios: the thread's examples (seed 002: a 2M folio mapped by 512 PTEs has
// mapcount 512, collapse returns it to 1; a 1G folio continued piece by piece then collapsed to
// one PUD), every HGM breakage caught by its invariant checked alone (so that an invariant
// earlier in the registry cannot take the credit) while the correct kernel runs the same
// scenario clean, and bad input returned as the kernel's errors.
using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Engine.Smp;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Hgm;

[Trait("Category", "hgm")]
public class HgmExamples
{
    internal static string Header(string variant, string memory = "256M", int cpus = 2) =>
        $"propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory {memory}\ncpus {cpus}\nvariant {variant}\n";

    /// <summary>Populate page 0 through an alias, register the mapping for minor faults with HGM,
    /// then UFFDIO_CONTINUE <paramref name="pieces"/> 4K pieces of it.</summary>
    internal static string Continued(int pieces, string extra = "")
    {
        var sb = new System.Text.StringBuilder("a1 = hgm_mmap 2M 1\na2 = hgm_alias a1\nhgm_touch a2 0 write\nmadvise_split a1 0 2M\nuffd_register a1 0 2M minor\n");
        for (int i = 0; i < pieces; i++) sb.Append($"uffdio_continue a1 {i * 4}K 4K\n".Replace(" 0K ", " 0 "));
        return sb.Append(extra).ToString();
    }

    private static (Kernel K, RunResult R) RunKeep(string text, IReadOnlyList<IInvariant>? invariants = null)
    {
        Kernel? kernel = null;
        var r = ScenarioRunner.Run(Repro.Parse(text), invariants, booted: k => kernel = k);
        return (kernel!, r);
    }

    private static HugetlbFolio OnlyFolio(Kernel k) => Assert.Single(k.Hgm.Files[0].PageCache.Values);

    private static StructPage Page(Kernel k, HugetlbFolio f, long i) => ((IKernelView)k).PeekView.Read(k.Arch.PfnToPage(f.HeadPfn + i));

    [Fact]
    public void A2MFolioMappedBy512PtesHasMapcount512PlusItsAliasAndCollapseReturnsItTo1()
    {
        var (k, r) = RunKeep(Header("default") + Continued(512));
        Assert.True(r.Violation is null, r.ToString());
        var f = OnlyFolio(k);
        // 512 PTEs in a1 and the PMD of the alias a2 that populated the page cache.
        Assert.Equal(513, Page(k, f, 1).EntireMapcount);
        Assert.Equal(1 + 513, Page(k, f, 0).Refcount); // the page cache's reference and one per entry

        var (k2, r2) = RunKeep(Header("default") + Continued(512, "madvise_collapse a1 0 2M\nhgm_munmap a2 0 2M\n"));
        Assert.True(r2.Violation is null, r2.ToString());
        var f2 = OnlyFolio(k2);
        Assert.Equal(1, Page(k2, f2, 1).EntireMapcount);
        Assert.Equal(2, Page(k2, f2, 0).Refcount);
        var mm = k2.Hgm.Mms.Single().Mm;
        Assert.Equal(PtLevel.Pmd, mm.Pgd.Walk(HgmOpText.MapBase).Level);
        Assert.True(mm.Pgd.Walk(HgmOpText.MapBase).IsLeaf);
    }

    [Fact]
    public void A1GFolioContinuedPieceByPieceThenCollapsesToOnePud()
    {
        // 4K pieces over the first 2M, then 2M pieces (PMD entries) over the rest of the 1G page.
        var sb = new System.Text.StringBuilder("hugetlb_pool 1G 1\na1 = hgm_mmap 1G 1\na2 = hgm_alias a1\nhgm_touch a2 0\nhgm_munmap a2 0 1G\nmadvise_split a1 0 1G\nuffd_register a1 0 1G minor\n");
        for (int i = 0; i < 512; i++) sb.Append(i == 0 ? "uffdio_continue a1 0 4K\n" : $"uffdio_continue a1 {i * 4}K 4K\n");
        sb.Append("uffdio_continue a1 2M 1022M\n");
        var (k, r) = RunKeep(Header("default", "2G") + sb);
        Assert.True(r.Violation is null, r.ToString());
        var f = OnlyFolio(k);
        Assert.Equal(512 + 511, Page(k, f, 1).EntireMapcount);
        var mm = k.Hgm.Mms.Single().Mm;
        Assert.Equal(PtLevel.Pte, mm.Pgd.Walk(HgmOpText.MapBase).Level);
        Assert.Equal(PtLevel.Pmd, mm.Pgd.Walk(HgmOpText.MapBase + (2UL << 20)).Level);

        var (k2, r2) = RunKeep(Header("default", "2G") + sb + "madvise_collapse a1 0 1G\n");
        Assert.True(r2.Violation is null, r2.ToString());
        var w = k2.Hgm.Mms.Single().Mm.Pgd.Walk(HgmOpText.MapBase + (5UL << 20));
        Assert.True(w.IsLeaf);
        Assert.Equal(PtLevel.Pud, w.Level);
        Assert.Equal(1, Page(k2, OnlyFolio(k2), 1).EntireMapcount);
    }

    [Theory]
    [InlineData("broken-hgm-continue-skips-mapcount", "", "MapcountEqualsPageTableReferences", 6)]
    [InlineData("broken-hgm-collapse-skips-folio-get", "madvise_collapse a1 0 2M\n", "RefcountCoversMappings", 7)]
    [InlineData("broken-hgm-continue-maps-next-subpage", "", "HugetlbPteShape", 6)]
    [InlineData("broken-hgm-split-ignores-huge-alignment", "hgm_munmap a1 4K 4K\n", "VmaTreeWellFormed", 7)]
    [InlineData("broken-hgm-punch-hole-skips-unmap", "hgm_punch_hole a1 0\n", "UserLeafMapsLiveFolio", 7)]
    [InlineData("hgm-v2-hvo", "uffdio_continue a1 1M 4K\n", "NoWriteThroughReadOnlyVmemmap", 7)]
    public void BrokenHgmPathIsCaughtByItsInvariant(string variant, string extra, string invariant, int step)
    {
        string body = Continued(1, extra);
        var (_, r) = RunKeep(Header(variant) + body, [InvariantRegistry.ByName(invariant)]);
        Assert.True(r.FailedInvariant == invariant, r.ToString());
        Assert.Equal(step, r.Step);

        var (_, ok) = RunKeep(Header("default") + body);
        Assert.True(ok.Violation is null, ok.ToString());
    }

    // A walk holds the PTE table of a continued piece when a collapse of that huge page runs on
    // another CPU: without the hugetlb VMA lock the collapse frees the table under the walk.
    private const string WalkRacesCollapse = "start hgm_walk a1 0\nstep cpu0 to hugetlb_walk_step\ncpu1: madvise_collapse a1 0 2M\nstep cpu0 until done\n";
    // A CPU's walk cache holds the PTE table of a continued piece; a collapse is stopped after
    // it frees the old tables.
    private const string CollapseStoppedAtPteFree = "hgm_touch a1 0\ncpu1: start madvise_collapse a1 0 2M\nstep cpu1 to pte_free\n";

    [Theory]
    [InlineData("broken-hgm-collapse-skips-vma-lock", WalkRacesCollapse, "NoKernelOops", 10)]
    [InlineData("broken-hgm-collapse-frees-tables-before-flush", CollapseStoppedAtPteFree, "NoFreedFrameReachable", 9)]
    public void BrokenHgmLockingIsCaughtInItsInterleaving(string variant, string extra, string invariant, int step)
    {
        string body = Continued(1, extra);
        var (_, r) = RunKeep(Header(variant) + body, [InvariantRegistry.ByName(invariant)]);
        Assert.True(r.FailedInvariant == invariant, r.ToString());
        Assert.Equal(step, r.Step);

        var (k, ok) = RunKeep(Header("default") + body);
        Assert.True(ok.Violation is null, ok.ToString());
    }

    [Fact]
    public void V2WithoutHvoKeepsSubpageMapcountsAndV1WithHvoKeepsTheEntireCount()
    {
        string body = Continued(2, "uffdio_continue a1 1M 4K\n");
        var (k2, r2) = RunKeep(Header("hgm-v2-hvo-off") + body);
        Assert.True(r2.Violation is null, r2.ToString());
        var f2 = OnlyFolio(k2);
        Assert.Equal(1, Page(k2, f2, 256).Mapcount); // subpage at 1M: written in a tail struct page
        Assert.Equal(1, Page(k2, f2, 1).EntireMapcount); // the alias's PMD

        var (k1, r1) = RunKeep(Header("default") + body);
        Assert.True(r1.Violation is null, r1.ToString());
        Assert.Equal(4, Page(k1, OnlyFolio(k1), 1).EntireMapcount);
        Assert.Equal(0, Page(k1, OnlyFolio(k1), 256).Mapcount);
    }

    [Fact]
    public void BadInputIsTheKernelsErrorNotAnException()
    {
        var k = Kernel.Boot(ArchConfig.X86_64_4K, new MachineConfig(256L << 20, 1));
        var hgm = k.Hgm;
        var file = hgm.HugetlbFileSetup(2L << 20, 2, out var e0)!;
        Assert.Equal(Errno.Ok, e0);
        Assert.Null(hgm.HugetlbFileSetup(3L << 20, 1, out var e1));
        Assert.Equal(Errno.EINVAL, e1);
        var hm = hgm.MmAlloc()!;
        ulong b = HgmOpText.MapBase;
        Assert.Equal(Errno.EINVAL, hgm.DoMmap(hm, file, b + 4096, 2UL << 20, 0, true)); // unaligned
        Assert.Equal(Errno.Ok, hgm.DoMmap(hm, file, b, 4UL << 20, 0, true));
        Assert.Equal(Errno.EEXIST, hgm.DoMmap(hm, file, b, 2UL << 20, 0, true));
        Assert.Equal(Errno.Ok, hgm.DoMmap(hm, null, b + (1UL << 30), 2UL << 20, 0, true)); // anonymous PROT_NONE
        Assert.Equal(Errno.EINVAL, hgm.VmaOps.HugetlbEnableHgmVma(hm, b + (1UL << 30), b + (1UL << 30) + (2UL << 20))); // not hugetlb
        Assert.Equal(Errno.ENOMEM, hgm.VmaOps.HugetlbEnableHgmVma(hm, b, b + (8UL << 20))); // a hole
        Assert.Equal(Errno.EINVAL, hgm.VmaOps.UserfaultfdRegister(hm, b, b + 4096, minor: true)); // not huge aligned
        Assert.Equal(Errno.Ok, hgm.VmaOps.UserfaultfdRegister(hm, b, b + (4UL << 20), minor: true));

        Errno Run(Func<ExecContext, Ret<Errno>, IEnumerable<StepStatus>> body)
        {
            var ret = new Ret<Errno>();
            var task = new LambdaTask("t", (_, ctx) => body(ctx, ret));
            Assert.True(k.Sched.StartTask(0, task));
            Assert.True(k.Sched.RunToCompletionOrBlock(0, task));
            return ret.Value;
        }
        // Without MADV_SPLIT UFFDIO_CONTINUE wants whole huge pages.
        Assert.Equal(Errno.EINVAL, Run((c, r) => hgm.Faults.MfillAtomicHugetlb(c, hm, b, 4096, r)));
        Assert.Equal(Errno.Ok, hgm.VmaOps.HugetlbEnableHgmVma(hm, b, b + (4UL << 20)));
        Assert.Equal(Errno.EINVAL, Run((c, r) => hgm.Faults.MfillAtomicHugetlb(c, hm, b + 512, 4096, r))); // misaligned
        Assert.Equal(Errno.ENOENT, Run((c, r) => hgm.Faults.MfillAtomicHugetlb(c, hm, b + (2UL << 20), 4UL << 20, r))); // past the VMA
        Assert.Equal(Errno.EFAULT, Run((c, r) => hgm.Faults.MfillAtomicHugetlb(c, hm, b, 4096, r))); // not in the page cache
        Assert.Equal(Errno.EINVAL, Run((c, r) => hgm.Collapse.HugetlbCollapse(c, hm, b + (1UL << 30), b + (1UL << 30) + (2UL << 20), r))); // not hugetlb
        Assert.Equal(Errno.EINVAL, Run((c, r) => hgm.Unmap.DoVmiMunmap(c, hm, b + 4096, 4096, r))); // splits inside a huge page
        Assert.Equal(Errno.EINVAL, Run((c, r) => hgm.Unmap.HugetlbChangeProtection(c, hm, b, 4096, false, r)));
        Assert.Equal(Errno.Ok, Run((c, r) => hgm.Unmap.DoVmiMunmap(c, hm, b + (2UL << 20), 2UL << 20, r))); // aligned: allowed
        Assert.Equal(2, hm.Vmas.Count);
    }
}
