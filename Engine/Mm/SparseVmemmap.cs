// mm/sparse-vmemmap.c: the virtually mapped memmap. vmemmap_populate maps the struct pages of
// a PFN range at VMEMMAP_START + pfn * sizeof(struct page): PMD blocks where the arch maps
// vmemmap by PMD (vmemmap_populate_hugepages: x86-64, arm64 4K), base pages otherwise
// (vmemmap_populate_basepages: arm64 16K/64K). At boot (sparse_init) the frames come from
// memblock, all present sections' memmaps back to back; at run time (section_activate for
// hot-add) from the page allocator, which can fail with ENOMEM.
//
// Departures from the kernel: the altmap (memmap_on_memory) of hot-added blocks is in
// Engine/Hotplug/AddMemory.cs, not here; a PMD-mapped range whose PMD
// block cannot be allocated does not fall back to base pages (the x86/arm64 code does, with a
// warning).
using PropertySuite.Engine.Config;

namespace PropertySuite.Engine.Mm;

public sealed class SparseVmemmap(ArchConfig arch, PhysMem mem, PageTable swapperPgDir)
{
    private long?[] _bootVmemmapFrame = [];   // per section: first frame of its boot vmemmap, if any

    /// <summary>Off-table holders of vmemmap frames (frames a running path took off the page
    /// table or has not installed yet): each mechanism that holds some registers its source.</summary>
    private readonly List<Func<IEnumerable<(long Pfn, long Count)>>> _offTable = new();

    public void AddOffTableHolder(Func<IEnumerable<(long Pfn, long Count)>> source) => _offTable.Add(source);

    /// <summary>sparse_init's vmemmap_populate for every present section, from memblock.</summary>
    internal void SparseInit(long presentSections, PtAllocator memblockTable)
    {
        _bootVmemmapFrame = new long?[mem.NrSections];
        long framesPerSection = arch.SectionVmemmapBytes >> arch.PageShift;
        // memblock places the sections' memmaps back to back (each PMD aligned when PMD mapped).
        long align = arch.VmemmapMappedByPmd ? arch.PmdSize >> arch.PageShift : 1;
        long first = mem.MemblockAlloc(presentSections * framesPerSection, align);
        mem.SetOwner(first, presentSections * framesPerSection, FrameOwner.Vmemmap);
        for (long s = 0; s < presentSections; s++)
        {
            long frame = first + s * framesPerSection;
            var err = MapVmemmap(s * arch.PagesPerSection, arch.PagesPerSection, (long _, out long f) => { f = frame; return true; }, memblockTable, preallocated: true);
            if (err != Errno.Ok) throw new ModelBugException($"boot vmemmap of section {s}: {err}");
            _bootVmemmapFrame[s] = frame;
        }
    }

    /// <summary>vmemmap_populate(start, end) at run time for the struct pages of
    /// [<paramref name="startPfn"/>, +<paramref name="nrPages"/>): allocates the backing
    /// (PMD-sized blocks or base pages) and any missing tables from the page allocator. ENOMEM
    /// leaves what was mapped in place (the caller, section_activate, unwinds with
    /// vmemmap_free).</summary>
    [Kernel("mm/sparse-vmemmap.c", "vmemmap_populate")]
    public Errno VmemmapPopulate(long startPfn, long nrPages, PtAllocator allocTable)
    {
        int order = arch.VmemmapMappedByPmd ? arch.PmdShift - arch.PageShift : 0;
        return MapVmemmap(startPfn, nrPages, (long _, out long f) => mem.TryAllocPages(order, FrameOwner.Vmemmap, out f), allocTable, preallocated: false);
    }

    /// <summary>Gives the backing frame of the vmemmap page at <paramref name="offset"/> frames
    /// from the first one; false on ENOMEM.</summary>
    private delegate bool VmemmapBacking(long offset, out long frame);

    /// <summary>Maps the memmap of [startPfn, +nrPages) with leaves whose frames
    /// <paramref name="backing"/> gives (by offset in frames from the first vmemmap page).</summary>
    private Errno MapVmemmap(long startPfn, long nrPages, VmemmapBacking backing, PtAllocator allocTable, bool preallocated)
    {
        ulong va = arch.PfnToPage(startPfn);
        long frames = (nrPages * ArchConfig.StructPageSize) >> arch.PageShift;
        var level = arch.VmemmapMappedByPmd ? PtLevel.Pmd : PtLevel.Pte;
        long step = arch.VmemmapMappedByPmd ? arch.PmdSize >> arch.PageShift : 1;
        for (long i = 0; i < frames; i += step)
        {
            ulong pva = va + (ulong)(i << arch.PageShift);
            var t = swapperPgDir.WalkAlloc(pva, level, allocTable, out var err);
            if (t is null) return err;
            int idx = swapperPgDir.Index(pva, level);
            if (!t.Entries[idx].IsNone) continue; // a subsection of this block is already populated
            long frame;
            if (preallocated) { backing(0, out long first); frame = first + i; }
            else if (!backing(i, out frame)) return Errno.ENOMEM;
            swapperPgDir.Set(t, idx, Pte.MkLeaf(frame, writable: true));
        }
        return Errno.Ok;
    }

    /// <summary>The PFN described by slot 0 of a boot vmemmap frame; false when the frame is
    /// not part of the boot vmemmap.</summary>
    public bool TryBootDescribedPfn(long frame, out long pfn)
    {
        pfn = 0;
        long framesPerSection = arch.SectionVmemmapBytes >> arch.PageShift;
        // Boot vmemmap blocks are allocated in section order: binary search by first frame.
        int lo = 0, hi = _bootVmemmapFrame.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_bootVmemmapFrame[mid] is not { } f) { hi = mid - 1; continue; }
            if (f <= frame) { found = mid; lo = mid + 1; } else hi = mid - 1;
        }
        if (found < 0) return false;
        long start = _bootVmemmapFrame[found]!.Value;
        if (frame >= start + framesPerSection) return false;
        pfn = found * arch.PagesPerSection + (frame - start) * arch.StructPagesPerVmemmapPage;
        return true;
    }

    /// <summary>Distinct frames mapped by init_mm leaves inside [VMEMMAP_START, VMEMMAP_END)
    /// (aliases, such as HVO's remapped tails, count once) plus the off-table holders', from the
    /// incrementally maintained <see cref="PageTable.LeafFrames"/> index: cost grows with what
    /// changed since the last call, not with the size of vmemmap.</summary>
    public long CountVmemmapFrames()
    {
        var index = swapperPgDir.LeafFrames(arch.VmemmapStart, arch.VmemmapEnd);
        var extra = _offTable.SelectMany(s => s()).ToList();
        if (extra.Count == 0) return index.DistinctFrames;
        // A page on a list may still be mapped (vmemmap_remap_pte adds it before it rewrites the
        // entry): count every frame once.
        return CountDistinct(index.Runs.Concat(extra));
    }

    /// <summary>The full-scan oracle of <see cref="CountVmemmapFrames"/>: walks every vmemmap
    /// leaf. For tests that check the incremental count.</summary>
    public long CountVmemmapFramesFullScan()
    {
        var runs = _offTable.SelectMany(s => s()).ToList();
        foreach (var w in swapperPgDir.Leaves(arch.VmemmapStart, arch.VmemmapEnd))
            runs.Add((w.Entry.Pfn, (long)(swapperPgDir.EntrySize(w.Table) >> arch.PageShift)));
        return CountDistinct(runs);
    }

    /// <summary>The number of distinct frames in a collection of (pfn, count) runs.</summary>
    public static long CountDistinct(IEnumerable<(long Pfn, long Count)> runs)
    {
        long total = 0, coveredTo = long.MinValue;
        foreach (var (pfn, n) in runs.OrderBy(r => r.Pfn))
        {
            long start = Math.Max(pfn, coveredTo), end = pfn + n;
            if (end > start) { total += end - start; coveredTo = end; }
        }
        return total;
    }
}
