// A half-open range of page frame numbers [Start, End), as the kernel's (start_pfn, end_pfn)
// pairs are (e.g. walk_system_ram_range, __offline_pages, memmap_init_range); the kernel passes
// some of them as (pfn, nr_pages) instead, which is where the off-by-one between an end and a
// count comes from. Built from either form by name (FromTo / FromCount); it has no positional
// deconstruction, so code that expects a (pfn, count) pair cannot silently take the end for
// the count.
namespace PropertySuite.Engine.Mm;

/// <summary>The PFNs [Start, End).</summary>
public readonly record struct PfnRange
{
    public long Start { get; }
    /// <summary>The first PFN above the range (exclusive).</summary>
    public long End { get; }
    public long Count => End - Start;
    public bool IsEmpty => End == Start;

    private PfnRange(long start, long end)
    {
        if (end < start) throw new ModelBugException($"pfn range [{start:x}, {end:x}): end below start");
        Start = start;
        End = end;
    }

    /// <summary>[start, end).</summary>
    public static PfnRange FromTo(long start, long end) => new(start, end);
    /// <summary>[start, start + count).</summary>
    public static PfnRange FromCount(long start, long count) => new(start, start + count);

    public bool Contains(long pfn) => pfn >= Start && pfn < End;
    public bool Overlaps(PfnRange other) => Start < other.End && other.Start < End;

    public override string ToString() => $"pfn [{Start:x}, {End:x})";
}
