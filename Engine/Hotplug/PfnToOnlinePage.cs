// mm/memory_hotplug.c pfn_to_online_page: the check PFN walkers (compaction's scanners,
// memory_failure, /proc/kpageflags, page_idle) make before they touch a struct page found by PFN
// rather than through a reference: the PFN's section is online (and, for a section with
// sub-sections, the sub-section is present: pfn_section_valid), else NULL.
//
// What the kernel guarantees and what it does not: the check takes no lock (no get_online_mems,
// no RCU), so nothing keeps the answer true once it is given. Offlining after the check is
// harmless to the walker: the memmap stays mapped until the memory is removed, and the walker
// sees an offline page's struct page (its get_page_unless_zero finds refcount 0 and gives up).
// A remove that also completes inside that window unmaps and frees the memmap under the walker:
// the kernel accepts that race as too narrow to matter ("pfn_to_online_page() is racy as well,
// but the race window is very small and we never saw a problem in practice really", David
// Hildenbrand, 7 Jun 2021, Message-ID 85984701-55ae-dfa5-2a8d-f637051b612d@redhat.com, in the
// thread of "mm,page_alloc: Use {get,put}_online_mems() to get stable zone's values"). The model
// keeps the window as it is: the walker is a task whose check and struct-page read are separate
// steps, so a scenario that runs offline and remove between them shows the read of a freed
// memmap (an example test does). Generation interleaves offline into the window, not remove, and
// draws no remove while any walker by PFN runs (Op.WalksByPfn, HotplugFamily), so that correct
// runs are not failed on a race the kernel chose to accept.
using PropertySuite.Engine.Mm;

namespace PropertySuite.Engine.Hotplug;

public sealed partial class MemoryHotplug
{
    /// <summary>pfn_to_online_page: the struct page pointer of <paramref name="pfn"/> when its
    /// section is online and, for a section of sub-sections, its sub-section present; else 0.</summary>
    [Kernel("mm/memory_hotplug.c", "pfn_to_online_page")]
    public ulong PfnToOnlinePage(long pfn)
    {
        long s = Mem.PfnToSection(pfn);
        if (pfn < 0 || s < 0 || s >= _sections.Length || Mem.SectionStateOf(s) != SectionState.Online) return 0;
        if (_sections[s].Device && LifetimeOf(pfn) is null) return 0; // pfn_section_valid
        return PfnToPage(pfn);
    }
}
