using PropertySuite.Engine;
using PropertySuite.Engine.Config;

namespace PropertySuite.Properties.Hugetlb;

/// <summary>
/// The savings table, measured by running the engine (Engine/Hugetlb/Savings.cs), against
/// Documentation/mm/vmemmap_dedup.rst: x86-64 4K frees 7 of 8 vmemmap pages per 2M folio and 4095 of 4096 per
/// 1G folio (6 and 4094 with the v5.14 two-page scheme), arm64 contiguous-PTE sizes free nothing;
/// 1 TiB of 2M folios has 16 GiB of vmemmap of which 14 GiB (12 GiB) is freed. A small allocation
/// per size keeps the test fast; the per-TiB figures are exact regardless (the 1 TiB run is the
/// benchmark, Bench/HvoBench.cs).
/// </summary>
[Trait("Category", "hugetlb")]
public class SavingsSnapshotTests
{
    /// <summary>HugeTLB memory allocated per row: 32 folios of 2M, one of anything from 64M up.</summary>
    private const long Memory = 64L << 20;

    private static readonly Lazy<List<SavingsRow>> Rows = new(() => Savings.Compute(new SavingsOptions(Memory)));

    [Fact]
    public void SavingsTableMatchesTheSnapshot() =>
        PropertySuite.Properties.Infra.Snapshot.Verify("savings", Savings.Format(Rows.Value, tsv: false));

    [Theory]
    [InlineData("x86_64-4k-l4", "2M", HvoScheme.OnePageKept, 8, 7)]
    [InlineData("x86_64-4k-l4", "1G", HvoScheme.OnePageKept, 4096, 4095)]
    [InlineData("x86_64-4k-l4", "2M", HvoScheme.TwoPagesKept, 8, 6)]
    [InlineData("x86_64-4k-l4", "1G", HvoScheme.TwoPagesKept, 4096, 4094)]
    [InlineData("arm64-4k-l4", "64K", HvoScheme.OnePageKept, 0, 0)]
    [InlineData("arm64-4k-l4", "32M", HvoScheme.OnePageKept, 128, 127)]
    [InlineData("arm64-16k-l3", "2M", HvoScheme.OnePageKept, 0, 0)]
    [InlineData("arm64-16k-l3", "32M", HvoScheme.OnePageKept, 8, 7)]
    [InlineData("arm64-16k-l3", "1G", HvoScheme.OnePageKept, 256, 255)]
    [InlineData("arm64-64k-l3", "2M", HvoScheme.OnePageKept, 0, 0)]
    [InlineData("arm64-64k-l3", "512M", HvoScheme.OnePageKept, 8, 7)]
    [InlineData("arm64-64k-l3", "16G", HvoScheme.OnePageKept, 256, 255)]
    public void MeasuredSavingsMatchTheKernelTable(string config, string size, HvoScheme scheme, long vmemmapPages, long freed)
    {
        Assert.True(ArchConfig.TryParseSize(size, out long bytes));
        var row = Assert.Single(Rows.Value, r => r.Config == config && r.HugePageBytes == bytes && r.Scheme == scheme);
        Assert.Equal(vmemmapPages, row.VmemmapPages);
        Assert.Equal(freed, row.FreedPerFolio);
        if (vmemmapPages > 0) Assert.Equal(vmemmapPages - freed, row.KeptPerFolio);
    }

    [Fact]
    public void OneTebibyteOf2MFoliosFrees14GiBOf16()
    {
        var one = Assert.Single(Rows.Value, r => r.Config == "x86_64-4k-l4" && r.HugePageBytes == 2L << 20 && r.Scheme == HvoScheme.OnePageKept);
        var two = Assert.Single(Rows.Value, r => r.Config == "x86_64-4k-l4" && r.HugePageBytes == 2L << 20 && r.Scheme == HvoScheme.TwoPagesKept);
        Assert.Equal(16L << 30, one.VmemmapBytesPerTiB);
        Assert.Equal(14L << 30, one.SavedBytesPerTiB);
        Assert.Equal(12L << 30, two.SavedBytesPerTiB);
        var giant = Assert.Single(Rows.Value, r => r.Config == "x86_64-4k-l4" && r.HugePageBytes == 1L << 30 && r.Scheme == HvoScheme.OnePageKept);
        Assert.Equal(4095L * 4096 * 1024, giant.SavedBytesPerTiB);
    }
}
