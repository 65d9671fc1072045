using PropertySuite.Generators.Harness;
using Xunit.Abstractions;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// Prints the shrink benchmark into the test log (run with
/// <c>--logger "console;verbosity=detailed"</c> to see it). Timings are printed, never asserted.
/// </summary>
[Trait("Category", "harness")]
public class ShrinkBenchmarkTests(ITestOutputHelper output)
{
    [Fact]
    [Trait("Category", "Benchmark")]
    public void ShrinkBenchmarkReachesTheThreeStepMinimum()
    {
        var log = new StringWriter();

        var rows = ShrinkBenchmark.Run(log);

        output.WriteLine(log.ToString());
        Assert.Equal(ShrinkBenchmark.Sizes, rows.Select(r => r.BenignSteps));
        Assert.All(rows, r => Assert.All(r.ResultLengths, length => Assert.Equal(3, length)));
    }
}
