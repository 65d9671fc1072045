using PropertySuite.Properties.Infra;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Properties.EngineCore;

[Trait("Category", "engine")]
public class RangeSetTests
{
    private static string Show(RangeSet s) => string.Join(" ", s.Ranges.Select(r => $"[{r.Start},{r.Start + r.Count})"));

    [Fact]
    public void AddingAdjacentRangesCoalescesThemOnBothSides()
    {
        var s = new RangeSet();
        s.Add(0, 10);
        s.Add(20, 10);
        Assert.Equal("[0,10) [20,30)", Show(s));
        s.Add(10, 10);
        Assert.Equal("[0,30)", Show(s));
        Assert.Equal(1, s.Count);
    }

    [Fact]
    public void RemovingFromTheMiddleSplitsARange()
    {
        var s = new RangeSet();
        s.Add(0, 30);
        s.Remove(10, 5);
        Assert.Equal("[0,10) [15,30)", Show(s));
        s.Remove(0, 10);
        s.Remove(25, 5);
        Assert.Equal("[15,25)", Show(s));
        Assert.True(s.TryFirst(out long first));
        Assert.Equal(15, first);
    }

    [Fact]
    public void ContainsIsHalfOpen()
    {
        var s = new RangeSet();
        s.Add(10, 5);
        Assert.False(s.Contains(9));
        Assert.True(s.Contains(10));
        Assert.True(s.Contains(14));
        Assert.False(s.Contains(15));
    }

    [Theory]
    [InlineData(5, 10)]   // overlaps the tail of [0,10)
    [InlineData(0, 1)]    // same start
    [InlineData(12, 18)]  // would merge with [30,40) but covers [15,16) in between
    [InlineData(14, 2)]   // overlaps [15,16) from the left
    [InlineData(-5, 100)] // covers everything
    public void OverlappingAddIsAModelBug(long start, long count)
    {
        var s = new RangeSet();
        s.Add(0, 10);
        s.Add(15, 1);
        s.Add(30, 10);
        string before = Show(s);
        Assert.Throws<ModelBugException>(() => s.Add(start, count));
        Assert.Equal(before, Show(s));
    }

    [Theory]
    [InlineData(5, 10)]  // crosses the end of [0,10)
    [InlineData(10, 1)]  // in the gap
    [InlineData(3, 0)]   // empty
    public void RemovingWhatIsNotInsideOneRangeIsAModelBug(long start, long count)
    {
        var s = new RangeSet();
        s.Add(0, 10);
        s.Add(20, 10);
        Assert.Throws<ModelBugException>(() => s.Remove(start, count));
    }

    private static long? Fit(RangeSet s, long count, long align) => s.TryFindAlignedFit(count, align, out long x) ? x : null;

    [Fact]
    public void AlignedFitFindsTheLowestAlignedStartThatFits()
    {
        var s = new RangeSet();
        s.Add(3, 10);   // [3,13): aligned-8 start 8 leaves 5
        s.Add(20, 30);  // [20,50): aligned-8 start 24 leaves 26
        Assert.Equal(8, Fit(s, 5, 8));
        Assert.Equal(24, Fit(s, 6, 8));
        Assert.Equal(32, Fit(s, 16, 16));
        Assert.Null(Fit(s, 27, 8));
    }

    /// <summary>Any sequence of adds and removes that the rules allow (an add of free units, a
    /// removal from inside one range) leaves exactly the maximal runs of a bitmap model, coalesced.</summary>
    [PsProperty]
    public void AddsAndRemovesKeepTheMaximalRunsOfABitmap((byte Start, byte Count, bool Add)[] steps)
    {
        const int Universe = 64;
        var set = new RangeSet();
        var model = new bool[Universe];
        foreach (var (rawStart, rawCount, add) in steps)
        {
            int start = rawStart % Universe, count = 1 + rawCount % 8;
            if (start + count > Universe) continue;
            var span = model.AsSpan(start, count);
            if (add && !span.Contains(true))
            {
                set.Add(start, count);
                span.Fill(true);
            }
            else if (!add && !span.Contains(false))
            {
                set.Remove(start, count); // inside one maximal run, which is one range
                span.Fill(false);
            }
        }
        var runs = new List<(long Start, long Count)>();
        for (int i = 0; i < Universe;)
        {
            if (!model[i]) { i++; continue; }
            int j = i;
            while (j < Universe && model[j]) j++;
            runs.Add((i, j - i));
            i = j;
        }
        Assert.Equal(runs, set.Ranges.ToList());
        for (int x = 0; x < Universe; x++) Assert.Equal(model[x], set.Contains(x));
    }
}
