// The switches of HugeTLB high-granularity mapping (Engine/Hgm), James Houghton's series
// "hugetlb: introduce HugeTLB high-granularity mapping" as posted to linux-mm: v1 (5 Jan 2023,
// 46 patches, "Based on latest mm-unstable (85b44c25cd1e)") and v2 (18 Feb 2023). The series was
// never merged; the names are the series'.
//
// - Mapcount V1 (the v1 posting): the mapcount of a high-granularity mapped HugeTLB folio is "the
//   total number of page table references to that page" (512 for a 2M folio mapped by 512 PTEs
//   in one VMA). The model keeps it where hugetlb keeps its one mapcount, folio->_entire_mapcount
//   in the first tail page, which HVO leaves writable (it lies in the vmemmap page it keeps).
// - Mapcount V2 (the v2 posting, "Changed mapcount to be more THP-like"): a mapping of the whole
//   folio counts in _entire_mapcount, a high-granularity mapping counts in the _mapcount of each
//   subpage it maps. Those are tail struct pages, which HVO maps read-only; v2 therefore made HGM
//   and HVO a build-time choice (Mike Kravetz's concern). The combination is kept selectable so
//   that the suite can show, by running it, what goes wrong.
// - MemoryFailureUnmapsPieceOnly: the series' stated motivation, not implemented by it: on a
//   memory error in a VM_HUGETLB_HGM VMA unmap only the PAGE_SIZE piece holding the error.
namespace PropertySuite.Engine.Config;

/// <summary>How the mapcount of a high-granularity mapped HugeTLB folio is kept.</summary>
public enum HgmMapcount
{
    /// <summary>HGM v1: one count per page-table entry mapping any part of the folio, in the folio's mapcount.</summary>
    V1,
    /// <summary>HGM v2: THP-like; whole-folio entries in _entire_mapcount, smaller entries in each subpage's _mapcount.</summary>
    V2,
}

/// <summary>The HGM design switches; the defaults are the v1 posting.</summary>
public sealed record HgmOptions
{
    public HgmMapcount Mapcount { get; init; } = HgmMapcount.V1;

    /// <summary>The series' motivation as a design: memory failure in a VM_HUGETLB_HGM VMA unmaps
    /// only the poisoned PAGE_SIZE piece (splitting the mapping around it) instead of the whole
    /// folio, and keeps the folio in the page cache.</summary>
    public bool MemoryFailureUnmapsPieceOnly { get; init; }
}

/// <summary>Deliberately broken HGM paths, one per HGM invariant (meta-tests only, not history).</summary>
public sealed record HgmBreakage
{
    /// <summary>UFFDIO_CONTINUE installs its entry without hugetlb_add_file_rmap: the mapcount misses it.</summary>
    public bool ContinueSkipsMapcount { get; init; }
    /// <summary>MADV_COLLAPSE drops the references of the entries it removes but takes none for the new one.</summary>
    public bool CollapseSkipsFolioGet { get; init; }
    /// <summary>UFFDIO_CONTINUE maps the subpage one PAGE_SIZE past the one its address implies.</summary>
    public bool ContinueMapsNextSubpage { get; init; }
    /// <summary>hugetlb_vm_op_split accepts any PAGE_SIZE-aligned address: VMAs split inside a huge page.</summary>
    public bool SplitIgnoresHugeAlignment { get; init; }
    /// <summary>Hole punch removes the folio from the page cache and frees it without unmapping it.</summary>
    public bool PunchHoleSkipsUnmap { get; init; }
    /// <summary>MADV_COLLAPSE frees the lower page tables before flushing the mm's TLB and walk caches.</summary>
    public bool CollapseFreesTablesBeforeFlush { get; init; }
    /// <summary>MADV_COLLAPSE takes neither the hugetlb VMA lock nor i_mmap_rwsem for write.</summary>
    public bool CollapseSkipsVmaLock { get; init; }
}
