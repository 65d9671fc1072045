// Generation of page-cache and speculative-reference operations (S001): files of order-0
// folios, speculative lookups and PFN walks started as tasks (their steps come from the
// schedule family), and truncation. Indices favour the first struct page of a vmemmap page
// (multiples of PAGE_SIZE / sizeof(struct page)): where HVO leaves aliases, bugs live.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;

namespace PropertySuite.Generators.Families;

public sealed class PageCacheFamily : IOpFamily
{
    public string Name => "pagecache";

    public bool AppliesTo(ArchConfig arch, NamedVariant variant) => true;

    public int Weight(GenState s) => 3;

    public Op? Next(GenState s, Prng rng)
    {
        var files = s.Live('p');
        int perVmemmapPage = s.Arch.StructPagesPerVmemmapPage;
        if (files.Count == 0 || rng.Chance(15))
        {
            // Enough pages to reach into the second vmemmap page of a folio, sometimes more.
            int pages = rng.Pick(new[] { 1, perVmemmapPage + 1, 2 * perVmemmapPage + 1, 4 * perVmemmapPage });
            string h = s.FreshHandle('p');
            s.AddLive(h);
            return new FilemapAddOp(pages) { Bind = h };
        }
        var folios = s.Live('f');
        if (folios.Count > 0 && rng.Chance(20))
        {
            // A struct-page read of a HugeTLB subpage, from a task or an interrupt handler
            // (the schedule family raises interrupts with operations like this one).
            long sub = rng.Chance(70) ? perVmemmapPage * rng.Range(0, 7) : rng.Range(0, 8 * perVmemmapPage);
            return new ReadFolioPageOp(rng.Pick(folios), sub);
        }
        string file = rng.Pick(files);
        int choice = rng.Next(10);
        if (choice < 6)
        {
            int cpu = s.IdleCpu(rng);
            if (cpu < 0) return null;
            long index = rng.Chance(60) ? perVmemmapPage * rng.Range(0, 4) : rng.Range(0, 4 * perVmemmapPage);
            Op op = rng.Chance(70) ? new SpecLookupOp(file, index) : new PfnWalkOp(file, index);
            bool start = s.Machine.Cpus > 1 && rng.Chance(80);
            if (start) s.BusyCpus.Add(cpu);
            return op with { Cpu = cpu, Start = start };
        }
        s.RemoveLive(file);
        return new TruncateOp(file);
    }
}
