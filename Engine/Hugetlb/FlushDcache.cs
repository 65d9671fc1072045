// arch/arm64/mm/flush.c flush_dcache_page as seed S000 (Muchun Song, Feb 2022, merged with the
// arm64 HVO enablement 1e63ac088f20 in v6.1) patches it:
//
//   if (PageHuge(page)) page = compound_head(page);   // only the head's flags may be cleared
//   if (test_bit(PG_dcache_clean, &page->flags)) clear_bit(PG_dcache_clean, &page->flags);
//
// "Only the head page's flags of HugeTLB can be cleared since the tail vmemmap pages associated
// with each HugeTLB page are mapped with read-only ... some tail page structs still can see the
// flag since the head vmemmap page frame is reused." The FlushDcachePageOnTail variant is the v1
// patch without that line: on a fake head (a tail at a multiple of PAGE_SIZE / 64 that aliases
// the head page) test_bit sees the head's PG_dcache_clean and clear_bit writes through the
// read-only alias. On x86 flush_dcache_page is empty.
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>arch/arm64/mm/flush.c: flush_dcache_page.</summary>
public sealed class Arm64Flush : KernelCode
{
    internal Arm64Flush(Kernel k) : base(k) { }


    /// <summary>flush_dcache_page(pfn_to_page(pfn)).</summary>
    [Kernel("arch/arm64/mm/flush.c", "flush_dcache_page")]
    public IEnumerable<StepStatus> FlushDcachePage(ExecContext ctx, long pfn)
    {
        if (Arch.Arch != Config.Arch.Arm64) { yield return StepStatus.After("flush_dcache_page"); yield break; }
        var v = View(ctx);
        ulong page = PfnToPage(pfn);
        if (!Hvo.FlushDcachePageOnTail && PageHuge(v, page)) page = CompoundHead(v, page);
        if (ReadStructPage(ctx, page, out var sp) && (sp.Flags & PageFlags.DcacheClean) != 0)
        {
            ModifyPageFlags(ctx, page, PageFlags.None, PageFlags.DcacheClean, "flush_dcache_page: clear_bit(PG_dcache_clean)");
            Note("flush_dcache.cleared");
        }
        yield return StepStatus.After("flush_dcache_page");
    }
}
