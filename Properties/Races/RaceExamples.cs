using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Races;

/// <summary>
/// The interleavings of S001 written out by hand: each buggy variant fails at the step where the
/// kernel would crash or mis-count, and today's kernel runs the same schedule clean.
/// </summary>
[Trait("Category", "races")]
public class RaceExamples
{
    private static string Header(string variant, string config = "x86_64-4k-l4", int cpus = 2) =>
        $"propertysuite-repro 1\nconfig {config}\nmemory 256M\ncpus {cpus}\nvariant {variant}\n";

    /// <summary>Matthew Wilcox's interleaving: a reader holds a pointer to
    /// page-cache folio F (pfn H+64); F is truncated and freed; its 2M block becomes a HugeTLB
    /// folio whose vmemmap page 1 is remapped onto the head copy; the reader's get lands on the
    /// fake head.</summary>
    private const string MatthewsRace =
        "p1 = filemap_add 65\n" +
        "cpu1: start spec_lookup p1 64\n" +
        "step cpu1 to xa_load\n" +                 // rcu_read_lock; F = xa_load()
        "truncate p1\n" +                           // F's refcount drops to 0; freed to the buddy
        "f1 = hugetlb_alloc 2M\n" +                 // buddy hands out F's 2M block; HVO; the folio goes to a user
        "step cpu1 to page_ref_count\n" +          // page_ref_add_unless: read
        "step cpu1 to folio_try_get_rcu\n" +       // page_ref_add_unless: atomic add
        "step cpu1 until done\n";

    [Theory]
    [InlineData("spec-get-pre-fix", "NoWriteThroughReadOnlyVmemmap", 7)]
    [InlineData("spec-get-writable-tails", "NoTailRefcountGain", 7)]
    public void MatthewsInterleavingIsCaught(string variant, string invariant, int step)
    {
        var r = ScenarioRunner.Run(Repro.Parse(Header(variant) + MatthewsRace));
        Assert.Equal(invariant, r.FailedInvariant);
        Assert.Equal(step, r.Step);
    }

    [Theory]
    [InlineData("default")]
    [InlineData("hvo-off")]
    public void TodaysKernelSurvivesMatthewsInterleaving(string variant)
    {
        var r = ScenarioRunner.Run(Repro.Parse(Header(variant) + MatthewsRace + "step cpu0 until done\nstep cpu1 until done\nstep cpu0 until done\n"));
        Assert.True(r.Violation is null, r.ToString());
    }

    [Fact]
    public void TheFixWithoutItsGracePeriodWritesThroughTheRemappedAlias()
    {
        // The reader passes bd225530's check on a live page-cache page, then the page is freed
        // and remapped before its atomic add: only synchronize_rcu keeps the remap out of that window.
        const string body =
            "p1 = filemap_add 65\n" +
            "cpu1: start spec_lookup p1 64\n" +
            "step cpu1 to xa_load\n" +            // load the pointer
            "step cpu1 to page_ref_count\n" +     // check: not a fake head, refcount 1
            "truncate p1\n" +                      // the cache drops its reference: freed
            "f1 = hugetlb_alloc 2M\n" +            // remapped, handed to a user
            "step cpu1 to folio_try_get_rcu\n";   // atomic add through the read-only alias
        var broken = ScenarioRunner.Run(Repro.Parse(Header("bd225530-without-synchronize-rcu") + body));
        Assert.Equal("NoWriteThroughReadOnlyVmemmap", broken.FailedInvariant);
        Assert.Equal(7, broken.Step);
        var fixedKernel = ScenarioRunner.Run(Repro.Parse(Header("default") + body + "step cpu1 until done\nstep cpu0 until done\n"));
        Assert.True(fixedKernel.Violation is null, fixedKernel.ToString());
    }

    [Fact]
    public void YuZhaosPfnWalkerIsCaughtBeforeTheFix()
    {
        const string body =
            "p1 = filemap_add 65\n" +
            "cpu1: start pfn_walk p1 64\n" +
            "step cpu1 to PageLRU\n" +               // sees PG_lru on the page
            "truncate p1\n" +
            "f1 = hugetlb_alloc 2M\n" +
            "step cpu1 to get_page_unless_zero\n";
        var r = ScenarioRunner.Run(Repro.Parse(Header("spec-get-pre-fix") + body));
        Assert.Equal("NoWriteThroughReadOnlyVmemmap", r.FailedInvariant);
        // Muchun Song's proposal keeps its synchronize_rcu, but a PFN walker holds no RCU: its
        // add through the RW fake head succeeds on the real head and is then dropped.
        var muchun = ScenarioRunner.Run(Repro.Parse(Header("muchun-drop-on-mismatch") + body));
        Assert.Equal("NoTailRefcountGain", muchun.FailedInvariant);
        var ok = ScenarioRunner.Run(Repro.Parse(Header("default") + body + "step cpu1 until done\n"));
        Assert.True(ok.Violation is null, ok.ToString());
    }

    /// <summary>Only the struct pages at the start of a remapped vmemmap page alias the head:
    /// head + k * (PAGE_SIZE / 64) for k = 1 .. V-1, seven per 2M folio on 4K. Every other
    /// stale pointer reads a real tail with refcount 0 and x86's atomic_add_unless writes nothing.</summary>
    [Fact]
    public void OnlyHeadPlusMultiplesOf64FaultOnX86()
    {
        var faulting = new List<int>();
        for (int index = 0; index < 512; index++)
        {
            string body =
                "p1 = filemap_add 512\n" +
                $"cpu1: start spec_lookup p1 {index}\n" +
                "step cpu1 to xa_load\ntruncate p1\nf1 = hugetlb_alloc 2M\nstep cpu1 until done\n";
            var r = ScenarioRunner.Run(Repro.Parse(Header("spec-get-pre-fix") + body));
            if (r.FailedInvariant == "NoWriteThroughReadOnlyVmemmap") faulting.Add(index);
            else Assert.True(r.Violation is null, $"index {index}: {r}");
        }
        Assert.Equal(new[] { 64, 128, 192, 256, 320, 384, 448 }, faulting);
    }

    [Fact]
    public void Arm64HvoInPlaceBreaksBreakBeforeMake()
    {
        var r = ScenarioRunner.Run(Repro.Parse(Header("arm64-hvo-in-place", "arm64-4k-l4") + "f1 = hugetlb_alloc 2M\n"));
        Assert.Equal("BreakBeforeMake", r.FailedInvariant);
        Assert.Equal(1, r.Step);
        foreach (var v in new[] { "arm64-hvo-stop-machine", "arm64-hvo-bbml2", "default" })
        {
            var ok = ScenarioRunner.Run(Repro.Parse(Header(v, "arm64-4k-l4") + "f1 = hugetlb_alloc 2M\nhugetlb_free f1\nhugetlb_pool 2M 2\nhugetlb_pool 2M 0\n"));
            Assert.True(ok.Violation is null, $"{v}: {ok}");
        }
    }

    [Fact]
    public void FaultHandlerDeadlocksWhenAnInterruptTouchesTheWindow()
    {
        // cpu0 optimizes a folio under Nanyong Sun's scheme; in a break window of the vmemmap
        // that maps subpage 64's struct page, an interrupt on cpu0 reads that struct page: the
        // fault handler spins on the lock the interrupted context holds. Two such windows: the
        // PMD split's (once flushed: before the flush cpu0's TLB still maps the old block) and
        // that of the tail PTE remapped second (the first is the head's).
        string[] windows =
        [
            "step cpu0 to pmd_clear\nstep cpu0 to flush_tlb_kernel_range\n",
            "step cpu0 to vmemmap_remap_pte\nstep cpu0 to pte_clear\n",
        ];
        string Body(string schedule) => $"start f1 = hugetlb_alloc 2M\n{schedule}irq cpu0 read_folio_page f1 64\nstep cpu0 until done\n";
        foreach (var window in windows)
        {
            var r = ScenarioRunner.Run(Repro.Parse(Header("arm64-hvo-fault-handler", "arm64-4k-l4") + Body(window)));
            Assert.True(r.FailedInvariant == "NoDeadlock", $"{window}: {r}");
        }
        // Outside a window (or while the TLB still holds the old entry) the read is harmless.
        foreach (var outside in new[] { "step cpu0 to pmd_clear\n", "step cpu0 to vmemmap_split_pmd\n", "step cpu0 to vmemmap_remap_pte\n" })
        {
            var r = ScenarioRunner.Run(Repro.Parse(Header("arm64-hvo-fault-handler", "arm64-4k-l4") + Body(outside)));
            Assert.True(r.Violation is null, $"{outside}: {r}");
        }
        // Another CPU touching the same struct page in the window just waits for the update.
        foreach (var window in windows)
        {
            string other = $"start f1 = hugetlb_alloc 2M\n{window}cpu1: start read_folio_page f1 64\nstep cpu1 until done\nstep cpu0 until done\nstep cpu1 until done\n";
            var waits = ScenarioRunner.Run(Repro.Parse(Header("arm64-hvo-fault-handler", "arm64-4k-l4") + other));
            Assert.True(waits.Violation is null, waits.ToString());
        }
    }

    [Fact]
    public void StopMachineCostsOneCallPerVmemmapEntryChanged()
    {
        var calls = new List<long>();
        ScenarioRunner.Run(Repro.Parse(Header("arm64-hvo-stop-machine", "arm64-4k-l4") + "f1 = hugetlb_alloc 2M\nf2 = hugetlb_alloc 2M\n"),
            trace: (i, op, k) => calls.Add(k.Arm64.StopMachineCalls));
        // First folio: the PMD split of its vmemmap block plus its 8 vmemmap PTEs; the second
        // folio shares the split PTE table: 8.
        Assert.Equal(new long[] { 9, 17 }, calls);
    }
}
