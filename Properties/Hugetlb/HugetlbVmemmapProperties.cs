using PropertySuite.Engine;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Hugetlb;

/// <summary>
/// The HVO mechanism on the correct kernel: the paths the kernel takes on failure (head copy not
/// allocated, a split failing mid-walk, restore failing), the exclusions, and that fake heads are
/// aliases that the page-flags helpers see through. Every scenario also runs all invariants.
/// </summary>
[Trait("Category", "hugetlb")]
public class HugetlbVmemmapProperties
{
    internal static string Header(string variant = "default", string config = "x86_64-4k-l4", string memory = "1G") =>
        $"propertysuite-repro 1\nconfig {config}\nmemory {memory}\ncpus 2\nvariant {variant}\n";

    /// <summary>Runs the scenario with every invariant; calls <paramref name="booted"/> with the
    /// kernel once booted and <paramref name="after"/> after each step; asserts nothing was violated.</summary>
    internal static RunResult RunClean(string text, Action<int, Kernel>? after = null, Action<Kernel>? booted = null)
    {
        var r = ScenarioRunner.Run(Repro.Parse(text), trace: (i, _, k) => after?.Invoke(i, k), booted: booted);
        Assert.True(r.Violation is null, r.ToString());
        return r;
    }

    private static HugetlbFolio OnlyFolio(Kernel k) => Assert.Single(k.Hugetlb.AllFoliosByPfn());

    [Theory]
    [InlineData("default", 7)]
    [InlineData("hvo-no-head-copy", 7)]
    [InlineData("hvo-v5.14", 6)]
    [InlineData("hvo-off", 0)]
    public void OptimizeFreesExactlyVMinusRFramesAndRestoreTakesThemBack(string variant, long freed)
    {
        long before = 0, optimized = 0, restored = 0;
        RunClean(Header(variant) + "hugetlb_pool 2M 0\nhugetlb_pool 2M 1\nhugetlb_pool 2M 0\n", (i, k) =>
        {
            long n = k.Mem.Count(FrameOwner.Vmemmap);
            if (i == 1) before = n;
            if (i == 2) optimized = n;
            if (i == 3) restored = n;
        });
        Assert.Equal(freed, before - optimized);
        Assert.Equal(before, restored);
    }

    [Fact]
    public void HeadCopyAllocationFailureFallsBackToTheOldHeadPage()
    {
        // Allocation 1 is the folio, 2 the head copy (GFP_NORETRY: fails quietly).
        long before = 0, after = 0;
        var r = RunClean(Header() + "fail_alloc 1 1\nf1 = hugetlb_alloc 2M\n", (i, k) =>
        {
            if (i == 1) before = k.Mem.Count(FrameOwner.Vmemmap);
            if (i == 2)
            {
                after = k.Mem.Count(FrameOwner.Vmemmap);
                var f = OnlyFolio(k);
                Assert.True(k.PageFlags.FolioTestHugetlbVmemmapOptimized(k.PageFlags.PeekView, k.Hugetlb.FolioPage(f)));
            }
        });
        Assert.Equal(1, r.Reached.GetValueOrDefault("hvo.head_copy_enomem"));
        Assert.Equal(7, before - after);
    }

    [Fact]
    public void SplitFailingMidWalkRollsBackAndLeavesTheFolioUnoptimized()
    {
        // A 1G folio's vmemmap spans 8 PMD blocks. The pool grows in a batch
        // (hugetlb_vmemmap_optimize_folios): allocation 1 is the folio, 2-3 the PTE tables of the
        // first two PMDs in the split pass; from the 4th on everything fails, so the split pass
        // stops at the third PMD, the head copy is not allocated, and the remap walk remaps the
        // 1024 entries of the two split PMDs before it cannot split the third: vmemmap_remap_free
        // walks them back with vmemmap_restore_pte.
        long before = 0;
        var r = RunClean(Header(memory: "4G") + "fail_alloc 3 16\nhugetlb_pool 1G 1\n", (i, k) =>
        {
            if (i == 1) before = k.Mem.Count(FrameOwner.Vmemmap);
            if (i == 2)
            {
                var f = OnlyFolio(k);
                Assert.False(k.PageFlags.FolioTestHugetlbVmemmapOptimized(k.PageFlags.PeekView, k.Hugetlb.FolioPage(f)));
                Assert.Equal(before, k.Mem.Count(FrameOwner.Vmemmap));
                Assert.Equal(0, k.PageFlags.HugetlbOptimizeVmemmapKey);
                Assert.Equal(0, k.HugetlbVmemmap.VmemmapFramesInFlight);
            }
        });
        Assert.Equal(1, r.Reached.GetValueOrDefault("hvo.rollback"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("hvo.optimize_failed"));
    }

    [Fact]
    public void RestoreFailureKeepsTheFolioAsASurplusPage()
    {
        // Shrinking the pool cannot free a folio whose vmemmap cannot be allocated.
        var r = RunClean(Header() + "hugetlb_pool 2M 1\nfail_alloc 3 1\nhugetlb_pool 2M 0\n", (i, k) =>
        {
            if (i != 3) return;
            var h = k.Hugetlb.SizeToHstate(2L << 20)!;
            Assert.Equal(1, h.NrHugePages);
            Assert.Equal(1, h.SurplusHugePages);
            Assert.Equal(1, h.FreeHugePages);
            Assert.Equal(0, h.PersistentHugePages);
            Assert.True(k.PageFlags.FolioTestHugetlbVmemmapOptimized(k.PageFlags.PeekView, k.Hugetlb.FolioPage(OnlyFolio(k))));
        });
        Assert.Equal(1, r.Reached.GetValueOrDefault("hvo.restore_enomem"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("hugetlb.restore_failed_surplus"));
    }

    [Fact]
    public void DissolveOfAFolioInUseIsRefusedAndOfAFreeOneFreesIt()
    {
        RunClean(Header() + "hugetlb_pool 2M 1\nf1 = hugetlb_alloc 2M\ndissolve f1\nhugetlb_free f1\ndissolve f1\n", (i, k) =>
        {
            if (i == 3) Assert.Equal(FolioState.Active, OnlyFolio(k).State);
            if (i == 5) Assert.Empty(k.Hugetlb.AllFoliosByPfn());
        });
    }

    [Fact]
    public void MemoryFailureOnAFreeFolioDissolvesItAndPoisonsTheRawPageAfterRestore()
    {
        long headPfn = -1;
        RunClean(Header() + "hugetlb_pool 2M 1\nf1 = hugetlb_alloc 2M\nhugetlb_free f1\nmemory_failure f1 130\n", (i, k) =>
        {
            if (i == 2) headPfn = OnlyFolio(k).HeadPfn;
            if (i != 4) return;
            Assert.Empty(k.Hugetlb.AllFoliosByPfn());
            Assert.True(k.Mmu.PeekStructPage(k.Arch.PfnToPage(headPfn + 130), out var raw));
            Assert.Equal(PageFlags.HwPoison, raw.Flags);
            Assert.True(k.Mmu.PeekStructPage(k.Arch.PfnToPage(headPfn + 129), out var healthy));
            Assert.Equal(PageFlags.None, healthy.Flags);
        });
    }

    [Theory]
    [InlineData("default", "arm64-4k-l4", "2M")]                 // arm64 HVO disabled since 060a2c92d1b6
    [InlineData("arm64-hvo-stop-machine", "arm64-4k-l4", "64K")]  // cont-PTE size: vmemmap is 1/4 page
    [InlineData("arm64-hvo-stop-machine", "arm64-64k-l3", "2M")] // cont-PTE size on 64K: 1/32 page
    [InlineData("hvo-off", "x86_64-4k-l4", "2M")]
    public void ExcludedFoliosAreNotOptimized(string variant, string config, string size)
    {
        RunClean(Header(variant, config, config.Contains("64k") ? "2G" : "1G") + $"f1 = hugetlb_alloc {size}\n", (i, k) =>
        {
            Assert.False(k.PageFlags.FolioTestHugetlbVmemmapOptimized(k.PageFlags.PeekView, k.Hugetlb.FolioPage(OnlyFolio(k))));
            Assert.Equal(0, k.PageFlags.HugetlbOptimizeVmemmapKey);
        });
    }

    [Fact]
    public void SelfHostedVmemmapIsNotOptimized()
    {
        // memmap_on_memory: the vmemmap page that describes the folio lives in the memory it
        // describes (PageVmemmapSelfHosted on the vmemmap page's own struct page) → -ENOTSUPP.
        var r = RunClean(Header() + "hvo_knob on\nf1 = hugetlb_alloc 2M\n", (i, k) =>
        {
            if (i == 1)
            {
                long first = k.Mmu.FrameOf(k.Arch.PfnToPage(0), out _) ?? throw new Xunit.Sdk.XunitException("pfn 0's struct page is not mapped");
                for (long frame = first; frame < first + (k.Arch.PmdSize >> k.Arch.PageShift); frame++)
                {
                    k.Mmu.PeekStructPage(k.Arch.PfnToPage(frame), out var sp);
                    sp.Flags |= PageFlags.VmemmapSelfHosted;
                    k.Mmu.WriteStructPage(null, k.Arch.PfnToPage(frame), sp, "test: memmap_on_memory");
                }
            }
            if (i == 2) Assert.False(k.PageFlags.FolioTestHugetlbVmemmapOptimized(k.PageFlags.PeekView, k.Hugetlb.FolioPage(OnlyFolio(k))));
        });
        Assert.Equal(1, r.Reached.GetValueOrDefault("hvo.self_hosted"));
        Assert.Equal(1, r.Reached.GetValueOrDefault("hvo.optimize_failed"));
    }

    [Fact]
    public void TheKnobAffectsOnlyLaterAllocations()
    {
        RunClean(Header() + "hvo_knob off\nf1 = hugetlb_alloc 2M\nhvo_knob on\nf2 = hugetlb_alloc 2M\nhvo_knob off\n", (i, k) =>
        {
            if (i < 4) return;
            var folios = k.Hugetlb.AllFoliosByPfn();
            Assert.Equal(2, folios.Count);
            Assert.False(k.PageFlags.FolioTestHugetlbVmemmapOptimized(k.PageFlags.PeekView, k.Hugetlb.FolioPage(folios[0])));
            Assert.True(k.PageFlags.FolioTestHugetlbVmemmapOptimized(k.PageFlags.PeekView, k.Hugetlb.FolioPage(folios[1])));
        });
    }

    [Fact]
    public void FakeHeadsAreAliasesOfTheHeadThatThePageFlagsHelpersSeeThrough()
    {
        RunClean(Header() + "f1 = hugetlb_alloc 2M\n", (i, k) =>
        {
            var f = OnlyFolio(k);
            var v = k.PageFlags.PeekView;
            ulong head = k.Hugetlb.FolioPage(f);
            int s = k.Arch.StructPagesPerVmemmapPage;
            for (long j = 1; j < k.Hugetlb.SizeToHstate(2L << 20)!.VmemmapPages; j++)
            {
                ulong fake = k.Arch.PfnToPage(f.HeadPfn + j * s);
                // Raw: the alias shows the head's own record, PG_head included.
                Assert.Equal(v.Read(head), v.Read(fake));
                Assert.Equal(k.Mmu.FrameOf(head, out _), k.Mmu.FrameOf(fake, out bool writable));
                Assert.False(writable);
                // Through the helpers: a tail of the real head.
                Assert.True(k.PageFlags.PageIsFakeHead(v, fake));
                Assert.False(k.PageFlags.PageHead(v, fake));
                Assert.True(k.PageFlags.PageTail(v, fake));
                Assert.Equal(head, k.PageFlags.CompoundHead(v, fake));
            }
        });
    }

    [Fact]
    public void TwoPageSchemeHasNoFakeHeads()
    {
        RunClean(Header("hvo-v5.14") + "f1 = hugetlb_alloc 2M\n", (i, k) =>
        {
            var f = OnlyFolio(k);
            var v = k.PageFlags.PeekView;
            int s = k.Arch.StructPagesPerVmemmapPage;
            for (long j = 2; j < 8; j++)
                Assert.False(k.PageFlags.PageIsFakeHead(v, k.Arch.PfnToPage(f.HeadPfn + j * s)));
            Assert.Equal(k.Mmu.FrameOf(k.Arch.PfnToPage(f.HeadPfn + s), out _), k.Mmu.FrameOf(k.Arch.PfnToPage(f.HeadPfn + 7 * s), out _));
        });
    }

    [Fact]
    public void OldVmemmapPagesAreFreedOnlyAfterTheFlush()
    {
        // During the PTE remaps the old pages are held on the walk's list (in flight), none freed.
        var s = Repro.Parse(Header() + "start f1 = hugetlb_alloc 2M\nstep cpu0 to vmemmap_remap_pte\nstep cpu0 to flush_tlb_kernel_range\nstep cpu0 to free_vmemmap_page_list\n");
        long before = -1;
        var r = ScenarioRunner.Run(s, trace: (i, _, k) =>
        {
            if (i == 1) before = k.Mem.Count(FrameOwner.Vmemmap);
            if (i == 3) { Assert.True(k.HugetlbVmemmap.VmemmapFramesInFlight > 0); Assert.Equal(before + 1, k.Mem.Count(FrameOwner.Vmemmap)); }
            if (i == 4) { Assert.Equal(0, k.HugetlbVmemmap.VmemmapFramesInFlight); Assert.Equal(before - 7, k.Mem.Count(FrameOwner.Vmemmap)); }
        });
        Assert.True(r.Violation is null, r.ToString());
    }
}
