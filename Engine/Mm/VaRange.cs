// Arithmetic on half-open virtual address ranges [start, end) that may reach the top of the
// 64-bit address space. As in the kernel, where addr + size wraps to 0 for the last entry of a
// table (pgd_addr_end and friends compare `end - 1`), an end of 0 means 2^64; comparisons are
// made on the inclusive last byte, end - 1, so such a range still overlaps and contains what it
// should.
namespace PropertySuite.Engine.Mm;

public static class VaRange
{
    /// <summary>Whether non-empty [aStart, aEnd) and [bStart, bEnd) share a byte (an end of 0 is 2^64).</summary>
    public static bool Overlaps(ulong aStart, ulong aEnd, ulong bStart, ulong bEnd) =>
        aStart <= bEnd - 1 && bStart <= aEnd - 1;

    /// <summary>Whether [innerStart, innerEnd) lies inside [outerStart, outerEnd) (an end of 0 is 2^64).</summary>
    public static bool Contains(ulong outerStart, ulong outerEnd, ulong innerStart, ulong innerEnd) =>
        innerStart >= outerStart && innerEnd - 1 <= outerEnd - 1;
}
