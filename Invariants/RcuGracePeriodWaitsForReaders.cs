using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// The grace-period guarantee: a grace period (synchronize_rcu, from its call to its return) ends
/// only after every read-side section that began before it has ended. Judged from the recorded
/// history of sections and grace periods on one clock of RCU events, not from the list of readers
/// synchronize_rcu chose to wait for, so a grace period that waits for the wrong readers is caught
/// as surely as one that waits for none. Checked for the grace periods that ended in this step
/// (one that ended earlier was judged then, and its verdict cannot change). Source:
/// Documentation/RCU/whatisRCU.rst ("synchronize_rcu() ... will not return until all pre-existing
/// RCU read-side critical sections have completed"); Documentation/RCU/Design/Requirements/
/// Requirements.rst, the grace-period guarantee; bd225530a4c7 relies on it.
/// </summary>
public sealed class RcuGracePeriodWaitsForReaders : IInvariant
{
    public string Name => nameof(RcuGracePeriodWaitsForReaders);
    public string Claim => "a grace period never ends while a reader that began before it is still inside";
    public string Source => "Documentation/RCU/whatisRCU.rst; Requirements.rst grace-period guarantee; bd225530a4c7";

    public Violation? Check(IKernelView k)
    {
        var gps = k.GracePeriods;
        for (int i = gps.Count - 1; i >= 0 && gps[i].Step == k.Step; i--)
        {
            var gp = gps[i];
            foreach (var r in k.RcuReadSections)
            {
                if (r.Begin >= gp.Begin) break; // sections are in order of their beginning
                if (r.EndTick is not { } left || left > gp.End)
                    return new(Name, $"grace period {gp.Seq} ({gp.Who}) ended while {r.Reader}, inside a read-side section since before it began, {(r.EndTick is null ? "was still inside" : "had not left")}");
            }
        }
        return null;
    }
}
