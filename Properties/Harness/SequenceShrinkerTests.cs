using PropertySuite.Generators.Harness;

namespace PropertySuite.Properties.Harness;

[Trait("Category", "harness")]
public class SequenceShrinkerTests
{
    private static IEnumerable<int> NoSimplification(int x) => [];

    private static IEnumerable<int> TowardZero(int x) => x > 0 ? [0, x / 2] : [];

    [Fact]
    public void EmptySequenceHasNoCandidates()
    {
        Assert.Empty(SequenceShrinker.Candidates(Array.Empty<int>(), TowardZero));
    }

    [Fact]
    public void SingleElementIsRemovedFirstThenSimplified()
    {
        var candidates = SequenceShrinker.Candidates(new[] { 8 }, TowardZero).ToList();

        Assert.Equal([[], [0], [4]], candidates);
    }

    [Fact]
    public void ChunkRemovalsComeLargestFirstAtAlignedOffsetsThenElementSimplifications()
    {
        var candidates = SequenceShrinker.Candidates(new[] { 1, 2, 3, 4, 5 }, x => x == 3 ? [0] : [])
            .Select(c => string.Join(",", c))
            .ToList();

        string[] expected =
        [
            // k = 5/2 = 2: chunks [0,2), [2,4), [4,5)
            "3,4,5", "1,2,5", "1,2,3,4",
            // k = 1
            "2,3,4,5", "1,3,4,5", "1,2,4,5", "1,2,3,5", "1,2,3,4",
            // element 2 (value 3) simplified
            "1,2,0,4,5",
        ];
        Assert.Equal(expected, candidates);
    }

    [Theory]
    [InlineData(0, new int[0])]
    [InlineData(1, new[] { 1 })]
    [InlineData(3, new[] { 1 })]
    [InlineData(4, new[] { 2, 1 })]
    [InlineData(1000, new[] { 500, 250, 125, 62, 31, 15, 7, 3, 1 })]
    public void ChunkSizesHalveDownToOne(int n, int[] expected)
    {
        Assert.Equal(expected, SequenceShrinker.ChunkSizes(n));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(100)]
    [InlineData(1000)]
    public void CandidateCountIsFiniteAndBoundedByTwiceTheLengthPlusSimplifications(int n)
    {
        var xs = Enumerable.Range(1, n).ToArray();

        var count = SequenceShrinker.Candidates(xs, TowardZero).Count();

        // Chunk removals: sum over k of ceil(n/k) <= 2n + log2(n) + 1; each element adds <= 2.
        Assert.InRange(count, 1, 2 * n + 32 + 2 * n);
    }

    [Fact]
    public void EveryCandidateIsStrictlyShorterOrSimplerAndTheInputIsUntouched()
    {
        var xs = new[] { 5, 0, 7, 3, 9, 1 };
        var before = (int[])xs.Clone();

        foreach (var candidate in SequenceShrinker.Candidates(xs, TowardZero))
        {
            Assert.NotSame(xs, candidate);
            Assert.True(candidate.Length < xs.Length || candidate.Sum() < xs.Sum());
            candidate[0] = 999; // mutating a candidate must not leak into the input or later candidates
        }

        Assert.Equal(before, xs);
    }

    [Fact]
    public void CandidatesArePureAcrossEnumerations()
    {
        var xs = new List<int> { 4, 1, 6, 2 };
        var candidates = SequenceShrinker.Candidates(xs, TowardZero);

        var first = candidates.Select(c => string.Join(",", c)).ToList();
        xs[0] = 100; // later changes to the caller's list do not change the candidates
        var second = candidates.Select(c => string.Join(",", c)).ToList();

        Assert.Equal(first, second);
    }

    [Fact]
    public void CandidatesAreLazy()
    {
        var simplifierCalls = 0;
        IEnumerable<int> Counting(int x)
        {
            simplifierCalls++;
            return [0];
        }

        var firstChunkRemoval = SequenceShrinker.Candidates(Enumerable.Range(1, 10_000).ToArray(), Counting).First();

        Assert.Equal(5_000, firstChunkRemoval.Length);
        Assert.Equal(0, simplifierCalls);
    }

    [Theory]
    [InlineData(1_000)]
    [InlineData(3_000)]
    public void PlantedThreeStepBugIsMinimizedToExactlyItsThreeSteps(int benignSteps)
    {
        for (var trial = 0; trial < 5; trial++)
        {
            var steps = ShrinkBenchmark.PlantBug(benignSteps, seed: (ulong)(7919 * benignSteps + trial));
            var original = (int[])steps.Clone();
            Assert.True(ShrinkBenchmark.Fails(steps));

            var shrunk = SequenceShrinker.Minimize(steps, ShrinkBenchmark.Fails, ShrinkBenchmark.ShrinkStep, 100_000, out var attempts);

            Assert.Equal([ShrinkBenchmark.Arm, ShrinkBenchmark.Load, ShrinkBenchmark.Fire], shrunk);
            Assert.InRange(attempts, 1, 1_999);
            Assert.Equal(original, steps);
        }
    }

    [Fact]
    public void MinimizeSimplifiesElementsAfterRemovingWhatItCan()
    {
        // Fails while some element is >= 10: the minimum is one element, bisected down to 10.
        static bool HasBig(int[] xs) => xs.Any(x => x >= 10);
        static IEnumerable<int> Bisect(int x) => x > 0 ? new[] { 0, x / 2, x - 1 }.Distinct().Where(c => c < x) : [];

        var shrunk = SequenceShrinker.Minimize([3, 40, 1, 97, 5], HasBig, Bisect, 10_000, out var attempts);

        Assert.Equal([10], shrunk);
        Assert.True(attempts > 0);
    }

    [Fact]
    public void MinimizeStopsAtTheAttemptLimit()
    {
        var xs = ShrinkBenchmark.PlantBug(1_000, seed: 1);

        var shrunk = SequenceShrinker.Minimize(xs, ShrinkBenchmark.Fails, NoSimplification, 10, out var attempts);

        Assert.Equal(10, attempts);
        Assert.True(ShrinkBenchmark.Fails(shrunk));
        Assert.True(shrunk.Length > 3);
    }

    [Fact]
    public void MinimizeWithZeroAttemptsReturnsTheInput()
    {
        var xs = new[] { 1, 2, 3 };

        var shrunk = SequenceShrinker.Minimize(xs, _ => true, NoSimplification, 0, out var attempts);

        Assert.Same(xs, shrunk);
        Assert.Equal(0, attempts);
    }

    [Fact]
    public void MinimizeResultIsOneMinimal()
    {
        var xs = ShrinkBenchmark.PlantBug(300, seed: 42);

        var shrunk = SequenceShrinker.Minimize(xs, ShrinkBenchmark.Fails, NoSimplification, 100_000, out _);

        Assert.True(ShrinkBenchmark.Fails(shrunk));
        Assert.DoesNotContain(SequenceShrinker.Candidates(shrunk, NoSimplification), ShrinkBenchmark.Fails);
    }
}
