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
            var idle = s.IdleCpus;
            if (idle.Count == 0) return null;
            int cpu = idle[^1];
            bool start = cpu != 0 && rng.Chance(80);
            return reader with { Cpu = cpu, Start = start };
        }
        return s.Enabled(this, "truncate") ? Truncate(s, rng.Pick(files)) : null;
    }

    public Op? NextTask(GenState s, Prng rng)
    {
        var files = s.Live('p');
        return files.Count == 0 ? null : Reader(s, rng, rng.Pick(files));
    }

    public Op? NextIrqHandler(GenState s, Prng rng)
    {
        // Aim at struct pages whose vmemmap entry is being changed right now, if the generation
        // engine shows an open break-before-make window: any context may touch any struct page.
        if (s.Engine.Arm64.BbmWindows is { Count: > 0 } && rng.Chance(70))
        {
            var k = s.Engine;
            var w = k.Arm64.BbmWindows[rng.Next(k.Arm64.BbmWindows.Count)];
            long first = k.Arch.PageToPfn(w.Start);
            long count = Math.Max(1, (long)(w.End - w.Start) / Engine.Config.ArchConfig.StructPageSize);
            return new ReadStructPageOp(first + rng.Range(0, Math.Min(count, 4096) - 1));
        }
        return s.Live('f').Count > 0 && s.Enabled(this, "read_folio_page") ? ReadFolioPage(s, rng) : null;
    }

    /// <summary>The lowest idle CPU (operations on a busy CPU would be no-ops), or 0.</summary>
    private static int FreeCpu(GenState s) => s.IdleCpus is [int first, ..] ? first : 0;

    private static Op Add(GenState s, Prng rng)
    {
        int perVmemmapPage = s.Arch.StructPagesPerVmemmapPage;
        // Enough pages to reach into the second vmemmap page of a folio, sometimes more.
        // Or a PMD's worth and more, so that whole pageblocks hold only this file's pages.
        int pmdPages = (int)(s.Arch.PmdSize >> s.Arch.PageShift);
        int pages = rng.Pick(new[] { 1, perVmemmapPage + 1, 2 * perVmemmapPage + 1, 4 * perVmemmapPage, pmdPages, 2 * pmdPages });
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
        long index = AimedIndex(s, rng, file) ?? Index(s, rng, 4);
        return rng.Pick(choices) switch
        {
            0 => new SpecLookupOp(file, index),
            1 => new PfnWalkOp(file, index),
            _ => new CompactPfnOp(AimedPfn(s, rng)),
        };
    }

    /// <summary>Mostly, a file index whose page's struct page is the first of a vmemmap page
    /// (pfn a multiple of PAGE_SIZE / 64), read from the generation engine: those are the
    /// struct pages HVO turns into fake heads if the page is freed and reused.</summary>
    private const int AimWindow = 8192;

    private static long? AimedIndex(GenState s, Prng rng, string file)
    {
        if (!rng.Chance(70) || !s.Handles.TryGet<Engine.PageCache.AddressSpace>(file, out var f)) return null;
        int per = s.Arch.StructPagesPerVmemmapPage;
        // The first AimWindow pages of the file only: a file that fills memory (the hot-plug
        // family's) has hundreds of thousands, and every draw would walk them all.
        var window = f.IPages.Take(AimWindow).ToList();
        var aimed = window.Where(kv => s.Engine.Arch.PageToPfn(kv.Value) % per == 0).Select(kv => kv.Key).ToList();
        if (aimed.Count == 0) return null;
        // Better still: one in a pageblock that holds only this file's pages, which a huge page
        // can reuse whole once the file is gone.
        long block = s.Arch.PmdSize >> s.Arch.PageShift;
        var pfns = window.Select(kv => s.Engine.Arch.PageToPfn(kv.Value)).ToHashSet();
        var whole = aimed.Where(i =>
        {
            long b = s.Engine.Arch.PageToPfn(f.IPages[i]) / block * block;
            return pfns.Contains(b) && pfns.Contains(b + block - 1) && Enumerable.Range(0, (int)block).All(j => pfns.Contains(b + j));
        }).ToList();
        return whole.Count > 0 && rng.Chance(80) ? rng.Pick(whole) : rng.Pick(aimed);
    }

    /// <summary>A PFN for a compaction-style walker: mostly a live page-cache page at a vmemmap
    /// page boundary (as for <see cref="AimedIndex"/>), else one of the first pageblocks the
    /// buddy hands out.</summary>
    private static long AimedPfn(GenState s, Prng rng)
    {
        int per = s.Arch.StructPagesPerVmemmapPage;
        if (s.Engine.FilemapIfUsed is { } fm && rng.Chance(75))
        {
            var aimed = fm.LivePfns.Where(p => p % per == 0).ToList();
            if (aimed.Count > 0) return rng.Pick(aimed);
        }
        long block = s.Arch.PmdSize >> s.Arch.PageShift;
        long first = (FirstFree(s) + block - 1) / block * block;
        return first + block * rng.Range(0, 2) + Index(s, rng, (int)(block / per));
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

    /// <summary>The file of the most recent reader, among the last 12 operations, whose task the
    /// engine has not finished (and, if <paramref name="requireStepped"/>, with a step drawn
    /// since it was started), if any.</summary>
    private static string? PendingReaderFile(GenState s, IReadOnlyList<string> live, bool requireStepped)
    {
        for (int t = s.Tasks.Count - 1; t >= 0 && s.Tasks[t].OpIndex >= s.Ops.Count - 12; t--)
        {
            var (i, op, _) = s.Tasks[t];
            if (s.Tasks[t].Done || !op.Start) continue;
            string? file = op switch { SpecLookupOp l => l.File, PfnWalkOp w => w.File, CompactPfnOp => live.Count > 0 ? live[^1] : null, _ => null };
            bool stepped = !requireStepped || s.Ops.Skip(i + 1).Any(o => o is StepOp);
            if (file is not null && live.Contains(file) && stepped) return file;
        }
        return null;
    }
}
