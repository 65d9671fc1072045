using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// synchronize_rcu() returns only after every reader that was inside an RCU read-side section
/// when it began has left it. Source: Documentation/RCU/whatisRCU.rst; bd225530a4c7 relies on it;
/// Documentation/RCU/Design/Requirements/Requirements.rst.
/// </summary>
public sealed class RcuGracePeriodWaitsForReaders : IInvariant
{
    public string Name => nameof(RcuGracePeriodWaitsForReaders);
    public string Claim => "a grace period never ends while a reader that began before it is still inside";
    public string Source => "Documentation/RCU/whatisRCU.rst; bd225530a4c7";

    public Violation? Check(IKernelView k)
    {
        foreach (var (seq, who, still) in k.GracePeriods)
            if (still.Count > 0)
                return new(Name, $"grace period {seq} ({who}) ended while {string.Join(", ", still)} {(still.Count == 1 ? "was" : "were")} still inside a read-side section begun before it");
        return null;
    }
}
