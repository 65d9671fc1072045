using PropertySuite.Engine.Mm;

namespace PropertySuite.Properties.Infra;

/// <summary>Test shorthands for engine calls that report failure by a bool or null (the engine
/// has no -1 sentinels): where a test's set-up needs the value, a failure fails the test.</summary>
public static class MappedFrames
{
    /// <summary>The frame init_mm maps <paramref name="va"/> to; fails the test when nothing does.</summary>
    public static long MappedFrame(this Mmu mmu, ulong va) =>
        mmu.FrameOf(va, out _) ?? throw new Xunit.Sdk.XunitException($"{va:x} is not mapped in init_mm");

    /// <summary>alloc_pages that the test needs to succeed.</summary>
    public static long AllocPagesOrFail(this PhysMem mem, int order, FrameOwner owner) =>
        mem.TryAllocPages(order, owner, out long pfn) ? pfn : throw new Xunit.Sdk.XunitException($"alloc_pages(order {order}) failed");

    /// <summary>alloc_contig_pages that the test needs to succeed.</summary>
    public static long AllocContigPagesOrFail(this PhysMem mem, long nrPages, FrameOwner owner) =>
        mem.TryAllocContigPages(nrPages, owner, out long pfn) ? pfn : throw new Xunit.Sdk.XunitException($"alloc_contig_pages({nrPages}) failed");
}
