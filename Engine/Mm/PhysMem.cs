// Physical memory: mm/sparse.c (struct mem_section, section states), mm/memblock.c (boot
// allocations) and the page allocator entry points of mm/page_alloc.c (alloc_pages,
// __free_pages, alloc_contig_pages), with an owner recorded for every frame.
//
// Departures from the kernel:
// - memblock allocations are placed bottom-up right after a fixed-size kernel image, so that all
//   boot-reserved frames form one range [0, BootReservedEnd).
// - Frame owners are the model's bookkeeping, not a kernel structure: the kernel does not know
//   who owns a page. They exist so that conservation can be checked against independent records.
// - Section states are tracked here; memory hot-plug (Engine/Hotplug) changes them.
using PropertySuite.Engine.Config;

namespace PropertySuite.Engine.Mm;

/// <summary>State of a memory section (SECTION_MARKED_PRESENT, SECTION_IS_ONLINE).</summary>
public enum SectionState : byte { Absent, Present, Online, Offline, Removed }

/// <summary>
/// The PFN space of a machine: sections, the owner of every frame, the buddy allocator and the
/// allocation fault-injection hook.
/// </summary>
public sealed class PhysMem : IPhysMemView
{
    private readonly ArchConfig _arch;
    private readonly SectionState[] _sectionState;
    private readonly FrameOwner[] _sectionUniform;
    private readonly FrameOwner[]?[] _sectionOwners;
    private readonly long[] _ownerCounts = new long[Enum.GetValues<FrameOwner>().Length];
    private long _memblockNext;
    private bool _buddyOnline;

    /// <summary>The buddy allocator; owners are kept in step by the methods of this class.</summary>
    public BuddyAllocator Buddy { get; }

    public long MaxPfn { get; }
    public int NrSections => _sectionState.Length;
    public long PagesPerSection => _arch.PagesPerSection;

    /// <summary>End of the boot-reserved range [0, BootReservedEnd): kernel image and memblock.</summary>
    public long BootReservedEnd => _memblockNext;

    /// <summary>Allocations that still succeed before injected failures start (0 once they
    /// have started, or when none are injected: <see cref="FailCount"/> says whether any are).</summary>
    public long FailAfter { get; private set; }
    /// <summary>Number of injected failures still to deliver.</summary>
    public long FailCount { get; private set; }
    public long AllocationsAttempted { get; private set; }
    public long AllocationsFailed { get; private set; }

    /// <summary>Frees of frames that were not allocated (double free or foreign free), in order.</summary>
    public List<string> BadFrees { get; } = new();
    IReadOnlyList<string> IPhysMemView.BadFrees => BadFrees;
    IReadOnlyList<PfnRange> IPhysMemView.Changed => Changed;
    IBuddyView IPhysMemView.Buddy => Buddy;

    /// <summary>Told of every free before the frames become free: (first PFN, count, owner until
    /// now, who frees). The kernel wires it to its FreeWitness.</summary>
    public Action<long, long, FrameOwner, string>? Freeing { get; set; }

    /// <summary>Ranges whose owner changed since <see cref="ClearChanged"/>, for incremental checks.</summary>
    public List<PfnRange> Changed { get; } = new();

    /// <summary>Sections whose state was set since <see cref="ClearChanged"/> (repeats possible).</summary>
    public IReadOnlyList<long> SectionsChanged => _sectionsChanged;
    private readonly List<long> _sectionsChanged = new();

    private readonly long[] _sectionsIn = new long[Enum.GetValues<SectionState>().Length];

    /// <summary>How many sections are in <paramref name="state"/>, kept where a state is set.</summary>
    public long SectionsIn(SectionState state) => _sectionsIn[(int)state];

    public PhysMem(ArchConfig arch, long totalPfns)
    {
        _arch = arch;
        MaxPfn = totalPfns;
        int nr = checked((int)(totalPfns / arch.PagesPerSection));
        _sectionState = new SectionState[nr];
        _sectionsIn[(int)SectionState.Absent] = nr;
        _sectionUniform = new FrameOwner[nr];
        _sectionOwners = new FrameOwner[]?[nr];
        _ownerCounts[(int)FrameOwner.Absent] = totalPfns;
        Buddy = new BuddyAllocator(arch.MaxPageOrder);
    }

    public SectionState SectionStateOf(long section) => _sectionState[section];

    /// <summary>pfn_valid: the PFN lies in a present section (its struct page exists).</summary>
    public bool PfnValid(long pfn) =>
        pfn >= 0 && pfn < MaxPfn && _sectionState[pfn / _arch.PagesPerSection] is SectionState.Online or SectionState.Present or SectionState.Offline;
    public long PfnToSection(long pfn) => pfn / _arch.PagesPerSection;

    /// <summary>Frames with the given owner.</summary>
    public long Count(FrameOwner owner) => _ownerCounts[(int)owner];

    /// <summary>Marks a section present and online with all frames owned by <paramref name="owner"/>.</summary>
    public void AddSection(long section, FrameOwner owner)
    {
        if (_sectionState[section] is not (SectionState.Absent or SectionState.Removed))
            throw new ModelBugException($"section {section} added twice (state {_sectionState[section]})");
        SetSectionState(section, SectionState.Online);
        SetOwner(section * PagesPerSection, PagesPerSection, owner);
    }

    /// <summary>Sets a section's state (memory hot-plug, Engine/Hotplug/MemoryHotplug.cs).</summary>
    internal void SetSectionState(long section, SectionState state)
    {
        _sectionsIn[(int)_sectionState[section]]--;
        _sectionsIn[(int)state]++;
        _sectionState[section] = state;
        _sectionsChanged.Add(section);
    }

    /// <summary>Takes [pfn, pfn+count), every frame of it free, out of the buddy to
    /// <paramref name="owner"/> (offline_pages after isolation). The range must be aligned to
    /// MAX_PAGE_ORDER blocks, as a memory section is.</summary>
    internal void TakeFreeRange(long pfn, long count, FrameOwner owner)
    {
        if (!AllOwnedBy(pfn, count, FrameOwner.Free))
            throw new ModelBugException($"take of pfn range {pfn:x}+{count}: not every frame is free");
        Buddy.TakeFreeRange(pfn, count);
        SetOwner(pfn, count, owner);
    }

    public FrameOwner OwnerOf(long pfn)
    {
        if ((ulong)pfn >= (ulong)MaxPfn) return FrameOwner.Absent;
        long s = pfn / PagesPerSection;
        var arr = _sectionOwners[s];
        return arr is null ? _sectionUniform[s] : arr[pfn % PagesPerSection];
    }

    /// <summary>Whether every frame of [pfn, pfn+count) has <paramref name="owner"/>.</summary>
    public bool AllOwnedBy(long pfn, long count, FrameOwner owner)
    {
        if (count < 0) return false;
        if (pfn < 0 || pfn > MaxPfn - count)
        {
            // Frames outside [0, MaxPfn) are Absent, as OwnerOf reports them.
            if (owner != FrameOwner.Absent) return false;
            long lo = Math.Clamp(pfn, 0, MaxPfn), hi = Math.Clamp(pfn + count, 0, MaxPfn);
            return lo >= hi || AllOwnedBy(lo, hi - lo, owner);
        }
        long end = pfn + count;
        while (pfn < end)
        {
            long s = pfn / PagesPerSection, sEnd = Math.Min(end, (s + 1) * PagesPerSection);
            var arr = _sectionOwners[s];
            if (arr is null) { if (_sectionUniform[s] != owner) return false; }
            else
            {
                var span = System.Runtime.InteropServices.MemoryMarshal.AsBytes(
                    arr.AsSpan((int)(pfn - s * PagesPerSection), (int)(sEnd - pfn)));
                if (span.IndexOfAnyExcept((byte)owner) >= 0) return false;
            }
            pfn = sEnd;
        }
        return true;
    }

    /// <summary>How many frames of [pfn, pfn+count) have <paramref name="owner"/> (frames
    /// outside the machine count as Absent).</summary>
    public long CountOwned(long pfn, long count, FrameOwner owner)
    {
        long lo = Math.Clamp(pfn, 0, MaxPfn), hi = Math.Clamp(pfn + count, 0, MaxPfn);
        long n = owner == FrameOwner.Absent ? count - (hi - lo) : 0;
        while (lo < hi)
        {
            long s = lo / PagesPerSection, sEnd = Math.Min(hi, (s + 1) * PagesPerSection);
            var arr = _sectionOwners[s];
            if (arr is null) { if (_sectionUniform[s] == owner) n += sEnd - lo; }
            else n += System.Runtime.InteropServices.MemoryMarshal.AsBytes(
                arr.AsSpan((int)(lo - s * PagesPerSection), (int)(sEnd - lo))).Count((byte)owner);
            lo = sEnd;
        }
        return n;
    }

    /// <summary>Sets the owner of [pfn, pfn+count), keeping the per-owner counts.</summary>
    public void SetOwner(long pfn, long count, FrameOwner owner)
    {
        if (pfn < 0 || count < 0 || pfn + count > MaxPfn)
            throw new ModelBugException($"SetOwner pfn {pfn:x} count {count} outside [0, {MaxPfn:x})");
        // Coalesce with the previous record when adjacent (boot sets owners section by section).
        if (Changed.Count > 0 && Changed[^1].End == pfn) Changed[^1] = PfnRange.FromTo(Changed[^1].Start, pfn + count);
        else Changed.Add(PfnRange.FromCount(pfn, count));
        long end = pfn + count;
        while (pfn < end)
        {
            long s = pfn / PagesPerSection, sStart = s * PagesPerSection, sEnd = Math.Min(end, sStart + PagesPerSection);
            var arr = _sectionOwners[s];
            if (pfn == sStart && sEnd == sStart + PagesPerSection)
            {
                if (arr is null) _ownerCounts[(int)_sectionUniform[s]] -= PagesPerSection;
                else foreach (var o in arr) _ownerCounts[(int)o]--;
                _sectionOwners[s] = null;
                _sectionUniform[s] = owner;
                _ownerCounts[(int)owner] += PagesPerSection;
            }
            else
            {
                if (arr is null)
                {
                    arr = new FrameOwner[PagesPerSection];
                    Array.Fill(arr, _sectionUniform[s]);
                    _sectionOwners[s] = arr;
                }
                for (long p = pfn; p < sEnd; p++)
                {
                    ref var slot = ref arr[p - sStart];
                    _ownerCounts[(int)slot]--;
                    slot = owner;
                }
                _ownerCounts[(int)owner] += sEnd - pfn;
            }
            pfn = sEnd;
        }
    }

    public void ClearChanged()
    {
        Changed.Clear();
        _sectionsChanged.Clear();
    }

    /// <summary>Boot-time memblock_alloc: bump allocation of frames that stay reserved.</summary>
    public long MemblockAlloc(long count, long align)
    {
        if (_buddyOnline) throw new ModelBugException("memblock_alloc after the buddy allocator took over");
        long pfn = (_memblockNext + align - 1) / align * align;
        if (pfn + count > MaxPfn) throw new ConfigException($"boot memory exhausted: memblock cannot place {count} frames");
        if (pfn > _memblockNext) SetOwner(_memblockNext, pfn - _memblockNext, FrameOwner.Kernel); // alignment padding
        _memblockNext = pfn + count;
        return pfn;
    }

    /// <summary>Reserves the kernel image at the bottom of memory.</summary>
    public void ReserveKernelImage(long pages)
    {
        SetOwner(0, pages, FrameOwner.Kernel);
        _memblockNext = pages;
    }

    /// <summary>memblock_free_all: every present frame above the memblock area goes to the buddy.</summary>
    public void MemblockFreeAll()
    {
        _buddyOnline = true;
        for (long s = 0; s < NrSections; s++)
        {
            if (_sectionState[s] != SectionState.Online) continue;
            long start = Math.Max(s * PagesPerSection, _memblockNext), end = (s + 1) * PagesPerSection;
            if (start >= end) continue;
            // Frames between the memblock end and the section end are still owned Kernel (added so).
            SetOwner(start, end - start, FrameOwner.Free);
            Buddy.FreeRange(start, end - start);
        }
    }

    /// <summary>Arms the fault-injection hook: after <paramref name="after"/> more successful
    /// allocations, the next <paramref name="count"/> allocations fail with ENOMEM.</summary>
    public void InjectFailures(long after, long count)
    {
        FailAfter = after;
        FailCount = count;
    }

    private bool ShouldFail()
    {
        AllocationsAttempted++;
        if (FailCount <= 0) return false;
        if (FailAfter > 0) { FailAfter--; return false; }
        FailCount--;
        AllocationsFailed++;
        return true;
    }

    /// <summary>alloc_pages(order): 2^order naturally aligned frames, first one in
    /// <paramref name="pfn"/>, now owned by <paramref name="owner"/>; false for ENOMEM (out of
    /// memory, an order above MAX_PAGE_ORDER, or an injected failure).</summary>
    public bool TryAllocPages(int order, FrameOwner owner, out long pfn)
    {
        pfn = 0;
        if (ShouldFail()) return false;
        if (!Buddy.TryAllocPages(order, out pfn)) { AllocationsFailed++; return false; }
        SetOwner(pfn, 1L << order, owner);
        return true;
    }

    /// <summary>alloc_contig_pages: <paramref name="nrPages"/> frames starting at a multiple of
    /// the largest power of two that divides <paramref name="nrPages"/> (a gigantic folio's
    /// natural alignment), the first in <paramref name="pfn"/>; false for ENOMEM.</summary>
    public bool TryAllocContigPages(long nrPages, FrameOwner owner, out long pfn)
    {
        pfn = 0;
        if (ShouldFail()) return false;
        if (nrPages <= 0) throw new ModelBugException($"alloc_contig_pages of {nrPages} pages");
        if (!Buddy.TryAllocContig(nrPages, nrPages & -nrPages, out pfn)) { AllocationsFailed++; return false; }
        SetOwner(pfn, nrPages, owner);
        return true;
    }

    /// <summary>__free_pages: returns a block to the buddy. Freeing a frame that is not owned by
    /// <paramref name="expectedOwner"/> (a double free, or a free of someone else's frame) does
    /// not happen; it is recorded in <see cref="BadFrees"/>, which an invariant reports.</summary>
    public void FreePages(long pfn, int order, FrameOwner expectedOwner, string who)
    {
        long n = 1L << order;
        if (pfn < 0 || order < 0 || order > 62 || pfn > MaxPfn - n)
        {
            BadFrees.Add($"{who}: free of pfn {pfn:x} order {order}: outside the machine's frames [0, {MaxPfn:x})");
            return;
        }
        if (!AllOwnedBy(pfn, n, expectedOwner))
        {
            BadFrees.Add($"{who}: free of pfn {pfn:x} order {order} owned {OwnerOf(pfn)}, expected {expectedOwner}");
            return;
        }
        Freeing?.Invoke(pfn, n, expectedOwner, who);
        SetOwner(pfn, n, FrameOwner.Free);
        Buddy.FreePages(pfn, order);
    }

    /// <summary>__free_one_page alone: hands the block to the buddy with none of
    /// free_pages_prepare's checks and no owner change. Only a deliberately broken path calls it
    /// (a double free that bypasses the checks corrupts the free lists).</summary>
    internal void FreeOnePageUnchecked(long pfn, int order) => Buddy.FreePages(pfn, order);

    /// <summary>Frees a range of order-0-compatible frames (e.g. a gigantic folio).</summary>
    public void FreeContigPages(long pfn, long nrPages, FrameOwner expectedOwner, string who)
    {
        if (pfn < 0 || nrPages <= 0 || pfn > MaxPfn - nrPages)
        {
            BadFrees.Add($"{who}: free of pfn range {pfn:x}+{nrPages}: outside the machine's frames [0, {MaxPfn:x})");
            return;
        }
        if (!AllOwnedBy(pfn, nrPages, expectedOwner))
        {
            BadFrees.Add($"{who}: free of pfn range {pfn:x}+{nrPages} not wholly owned by {expectedOwner}");
            return;
        }
        Freeing?.Invoke(pfn, nrPages, expectedOwner, who);
        SetOwner(pfn, nrPages, FrameOwner.Free);
        Buddy.FreeRange(pfn, nrPages);
    }
}
