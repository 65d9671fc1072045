using PropertySuite.Engine;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;
using static PropertySuite.Properties.Hugetlb.HugetlbVmemmapProperties;

namespace PropertySuite.Properties.Hugetlb;

/// <summary>
/// The batch path of HVO, as mm/hugetlb.c's prep_and_add_allocated_folios drives it when the pool
/// grows (set_max_huge_pages): mm/hugetlb_vmemmap.c hugetlb_vmemmap_optimize_folios splits the
/// vmemmap PMDs of every folio first, flushes the TLB once, optimizes each folio without a
/// per-folio flush and with one synchronize_rcu for the whole batch (the flag is cleared after the
/// first folio), and on ENOMEM with pages already collected flushes, frees them and tries that
/// folio again. Not optimizing is safe, so no safety invariant notices a batch that skips a folio,
/// waits too often or never retries: these examples state what the kernel does, and every
/// scenario also runs all invariants.
/// </summary>
[Trait("Category", "hugetlb")]
public class HvoBatchPathTests
{
    private static bool Optimized(Kernel k, HugetlbFolio f) =>
        k.PageFlags.FolioTestHugetlbVmemmapOptimized(k.PageFlags.PeekView, k.Hugetlb.FolioPage(f));

    [Theory]
    [InlineData("default", 1)]
    [InlineData("bd225530-without-synchronize-rcu", 0)]
    public void PoolGrowthOptimizesEveryFolioAndWaitsForOneGracePeriodPerBatch(string variant, int gracePeriods)
    {
        long vmemmapBefore = 0, vmemmapAfter = 0, gpBefore = 0, gpAfter = 0;
        RunClean(Header(variant) + "synchronize_rcu\nhugetlb_pool 2M 4\n", (i, k) =>
        {
            if (i == 1) { vmemmapBefore = k.Mem.Count(FrameOwner.Vmemmap); gpBefore = k.Rcu.GracePeriodHistory.Count; }
            if (i != 2) return;
            vmemmapAfter = k.Mem.Count(FrameOwner.Vmemmap);
            gpAfter = k.Rcu.GracePeriodHistory.Count;
            var folios = k.Hugetlb.AllFoliosByPfn().ToList();
            Assert.Equal(4, folios.Count);
            Assert.All(folios, f => Assert.True(Optimized(k, f), $"folio at {f.HeadPfn:x} not optimized"));
            Assert.All(folios, f => Assert.False(f.VmemmapBusy));
            Assert.Equal(4, k.PageFlags.HugetlbOptimizeVmemmapKey);
            Assert.Equal(0, k.HugetlbVmemmap.VmemmapFramesInFlight);
        });
        Assert.Equal(4 * 7, vmemmapBefore - vmemmapAfter);
        Assert.Equal(gracePeriods, gpAfter - gpBefore);
    }

    [Fact]
    public void ThePoolGrowsThroughTheSplitPassOneFlushAndThePerFolioRemap()
    {
        // The batch as a task, one action per step: the order of the actions is the kernel's.
        var actions = new List<string>();
        RunClean(Header() + "cpu1: start hugetlb_pool 2M 2\nstep cpu1 until done\n",
            booted: k => k.Cpus[1].OnStep = (_, st) => { if (st.Action is { } a) actions.Add(a); });
        int split = actions.IndexOf("vmemmap_split_pmd");
        int flush = actions.IndexOf("flush_tlb_all");
        int firstSet = actions.IndexOf("folio_set_hugetlb_vmemmap_optimized");
        int lastSet = actions.LastIndexOf("folio_set_hugetlb_vmemmap_optimized");
        int free = actions.LastIndexOf("free_vmemmap_page_list");
        string seen = string.Join(", ", actions);
        Assert.True(split >= 0 && split < flush, seen);
        Assert.True(flush < firstSet && firstSet < lastSet, seen);
        Assert.True(lastSet < free, seen);
        Assert.Equal(2, actions.Count(a => a == "folio_set_hugetlb_vmemmap_optimized"));
        Assert.Equal(1, actions.Count(a => a == "synchronize_rcu"));
        Assert.DoesNotContain("folio_clear_hugetlb_vmemmap_optimized", actions);
    }

    [Fact]
    public void OutOfMemoryInTheBatchFreesTheCollectedPagesAndOptimizesTheFolioAgain()
    {
        // Two 1G folios on 4G: allocations 1-2 are the folios, 3-10 the PTE tables of the first
        // folio's eight vmemmap PMDs in the split pass. Allocations 11-14 fail: the second folio's
        // first table (the split pass stops), both head copies (a quiet fallback), and the second
        // folio's split inside its remap (ENOMEM while the first folio's 4095 pages wait in the
        // list). The kernel then flushes, frees those pages and retries the folio, which succeeds.
        long before = 0;
        var r = RunClean(Header(memory: "4G") + "fail_alloc 10 4\nhugetlb_pool 1G 2\n", (i, k) =>
        {
            if (i == 1) before = k.Mem.Count(FrameOwner.Vmemmap);
            if (i != 2) return;
            var folios = k.Hugetlb.AllFoliosByPfn().ToList();
            Assert.Equal(2, folios.Count);
            Assert.All(folios, f => Assert.True(Optimized(k, f), $"folio at {f.HeadPfn:x} not optimized"));
            Assert.Equal(2 * 4095, before - k.Mem.Count(FrameOwner.Vmemmap));
            Assert.Equal(0, k.HugetlbVmemmap.VmemmapFramesInFlight);
        });
        Assert.Equal(1, r.Reached.GetValueOrDefault("hvo.batch_retry"));
        Assert.Equal(2, r.Reached.GetValueOrDefault("hvo.optimized"));
    }

    [Fact]
    public void ShrinkingThePoolRestoresEveryFolioAndWaitsForReadersFirst()
    {
        // hugetlb_vmemmap_restore_folio: synchronize_rcu before the remap (a speculative reader may
        // still hold a tail struct page), then every vmemmap page back, the flag cleared.
        long full = 0, gpBefore = 0, gpAfter = 0;
        RunClean(Header() + "hugetlb_pool 2M 0\nhugetlb_pool 2M 2\nhugetlb_pool 2M 0\n", (i, k) =>
        {
            if (i == 1) full = k.Mem.Count(FrameOwner.Vmemmap);
            if (i == 2) gpBefore = k.Rcu.GracePeriodHistory.Count;
            if (i != 3) return;
            gpAfter = k.Rcu.GracePeriodHistory.Count;
            Assert.Empty(k.Hugetlb.AllFoliosByPfn());
            Assert.Equal(full, k.Mem.Count(FrameOwner.Vmemmap));
            Assert.Equal(0, k.PageFlags.HugetlbOptimizeVmemmapKey);
            Assert.Equal(0, k.HugetlbVmemmap.VmemmapFramesInFlight);
        });
        Assert.True(gpAfter - gpBefore >= 1, $"{gpAfter - gpBefore} grace periods while the pool shrank");
    }
}
