// Generation of page-cache and speculative-reference operations (S001): files of order-0
// folios, speculative lookups and PFN walks started as tasks (their steps come from the
// schedule family), truncation, and struct-page reads of HugeTLB subpages from tasks and
// interrupt handlers.
//
// Where the bugs live, and the bias toward them (heuristics, not a script):
// - a reader that holds a pointer across a free matters only if the freed memory is reused by
//   something that reshapes vmemmap; so right after a truncation, the family often asks for a
//   PMD-sized HugeTLB folio, which the lowest-address-first buddy carves from the memory just
//   freed;
// - while a started reader is pending on a file, truncating that file is likelier;
// - indices favour the first struct page of a vmemmap page (multiples of PAGE_SIZE /
//   sizeof(struct page)): those are the ones HVO turns into fake heads.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;

namespace PropertySuite.Generators.Families;

public sealed class PageCacheFamily : IOpFamily
{
    public string Name => "pagecache";

    public IReadOnlyList<string> Kinds { get; } = ["filemap_add", "spec_lookup", "pfn_walk", "compact_pfn", "truncate", "read_folio_page", "hugetlb_alloc"];

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, long), long> FirstFreePfn = new();

    /// <summary>Where the buddy starts handing out memory on this machine (the first PFN after
    /// boot reservations), learnt once per configuration by booting it: compaction scans the
    /// pageblocks where allocations happen, and so does generation.</summary>
    private static long FirstFree(GenState s) =>
        FirstFreePfn.GetOrAdd((s.Arch.Name, s.Machine.MemoryBytes),
            _ => Engine.Kernel.Boot(s.Arch, new MachineConfig(s.Machine.MemoryBytes, 1)).Mem.BootReservedEnd);

    public bool AppliesTo(ArchConfig arch, NamedVariant variant) => true;

    public int Weight(GenState s)
    {
        if (s.Ops.Count > 0 && s.Ops[^1] is TruncateOp) return 14;
        // A started reader has loaded its pointer: now is when freeing the page matters.
        return PendingReaderFile(s, s.Live('p'), requireStepped: true) is not null ? 14 : 4;
    }

    public Op? Next(GenState s, Prng rng)
    {
        var files = s.Live('p');
        // Freed page-cache memory reused by a HugeTLB folio.
        if (s.Ops.Count > 0 && s.Ops[^1] is TruncateOp && s.Enabled(this, "hugetlb_alloc") && rng.Chance(70))
            return ReuseForHugetlb(s, rng);
        if (files.Count == 0 || (rng.Chance(12) && s.Enabled(this, "filemap_add")))
            return s.Enabled(this, "filemap_add") ? Add(s, rng) : null;
        string? readFile = PendingReaderFile(s, files, requireStepped: true);
        if (readFile is not null && s.Enabled(this, "truncate") && rng.Chance(75))
            return Truncate(s, readFile);
        var folios = s.Live('f');
        int roll = rng.Next(100);
        if (roll < 15 && folios.Count > 0 && s.Enabled(this, "read_folio_page"))
            return ReadFolioPage(s, rng);
        if (roll < 75)
        {
            var reader = Reader(s, rng, rng.Pick(files));
            if (reader is null) return null;
            // Readers go to the highest idle CPU, so the others stay free for what they race with.
            int cpu = Enumerable.Range(0, s.Machine.Cpus).Reverse().FirstOrDefault(c => !s.BusyCpus.Contains(c), -1);
            if (cpu < 0) return null;
            bool start = cpu != 0 && rng.Chance(80);
            if (start) s.BusyCpus.Add(cpu);
            return reader with { Cpu = cpu, Start = start };
        }
        return s.Enabled(this, "truncate") ? Truncate(s, rng.Pick(files)) : null;
    }

    public Op? NextTask(GenState s, Prng rng)
    {
        var files = s.Live('p');
        return files.Count == 0 ? null : Reader(s, rng, rng.Pick(files));
    }

    public Op? NextIrqHandler(GenState s, Prng rng) =>
        s.Live('f').Count > 0 && s.Enabled(this, "read_folio_page") ? ReadFolioPage(s, rng) : null;

    /// <summary>The lowest idle CPU (operations on a busy CPU would be no-ops), or 0.</summary>
    private static int FreeCpu(GenState s) => Enumerable.Range(0, s.Machine.Cpus).FirstOrDefault(c => !s.BusyCpus.Contains(c), 0);

    private static Op Add(GenState s, Prng rng)
    {
        int perVmemmapPage = s.Arch.StructPagesPerVmemmapPage;
        // Enough pages to reach into the second vmemmap page of a folio, sometimes more.
        int pages = rng.Pick(new[] { 1, perVmemmapPage + 1, 2 * perVmemmapPage + 1, 4 * perVmemmapPage });
        string h = s.FreshHandle('p');
        s.AddLive(h);
        return new FilemapAddOp(pages) { Bind = h, Cpu = FreeCpu(s) };
    }

    private Op? Reader(GenState s, Prng rng, string file)
    {
        var choices = new List<int>();
        if (s.Enabled(this, "spec_lookup")) choices.Add(0);
        if (s.Enabled(this, "pfn_walk")) choices.Add(1);
        if (s.Enabled(this, "compact_pfn")) choices.Add(2);
        if (choices.Count == 0) return null;
        long index = Index(s, rng, 4);
        return rng.Pick(choices) switch
        {
            0 => new SpecLookupOp(file, index),
            1 => new PfnWalkOp(file, index),
            // One of the first pageblocks the buddy hands out, at a struct-page-page boundary mostly.
            _ => new CompactPfnOp(Pageblock(s, rng) + Index(s, rng, (int)(s.Arch.PmdSize >> s.Arch.PageShift) / s.Arch.StructPagesPerVmemmapPage)),
        };
    }

    /// <summary>The start of one of the first few pageblocks (PMD-sized here) of free memory.</summary>
    private static long Pageblock(GenState s, Prng rng)
    {
        long block = s.Arch.PmdSize >> s.Arch.PageShift;
        long first = (FirstFree(s) + block - 1) / block * block;
        return first + block * rng.Range(0, 2);
    }

    private static Op Truncate(GenState s, string file)
    {
        s.RemoveLive(file);
        return new TruncateOp(file) { Cpu = FreeCpu(s) };
    }

    private static Op ReadFolioPage(GenState s, Prng rng) => new ReadFolioPageOp(rng.Pick(s.Live('f')), Index(s, rng, 8));

    private static Op? ReuseForHugetlb(GenState s, Prng rng)
    {
        long size = s.Arch.PmdSize;
        if (!s.Arch.IsHugetlbSize(size)) return null;
        string f = s.FreshHandle('f');
        s.AddLive(f);
        return new HugetlbAllocOp(size) { Bind = f, Cpu = FreeCpu(s) };
    }

    /// <summary>A subpage / file index: mostly k * (PAGE_SIZE / 64) for k below <paramref name="pagesOfStructPages"/>.</summary>
    private static long Index(GenState s, Prng rng, int pagesOfStructPages)
    {
        int per = s.Arch.StructPagesPerVmemmapPage;
        return rng.Chance(65) ? per * rng.Range(0, pagesOfStructPages - 1) : rng.Range(0, pagesOfStructPages * per - 1);
    }

    /// <summary>The file of the most recent reader started on a CPU that is still busy (and,
    /// if <paramref name="requireStepped"/>, stepped at least once since), if any.</summary>
    private static string? PendingReaderFile(GenState s, IReadOnlyList<string> live, bool requireStepped)
    {
        bool stepped = false;
        for (int i = s.Ops.Count - 1; i >= 0 && i >= s.Ops.Count - 12; i--)
        {
            var op = s.Ops[i];
            string? file = op switch { SpecLookupOp l => l.File, PfnWalkOp w => w.File, CompactPfnOp => live.Count > 0 ? live[^1] : null, _ => null };
            if (file is not null && op.Start && s.BusyCpus.Contains(op.Cpu) && live.Contains(file)
                && (stepped || !requireStepped))
                return file;
            if (op is StepOp) stepped = true;
        }
        return null;
    }
}
