// The invariant contract. An invariant is a pure function of engine state: it observes and
// never acts (no engine operation, no mutation, no state of its own between calls).
using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>A broken invariant: which one, and the evidence (addresses, PFNs, expected vs actual).</summary>
public sealed record Violation(string Invariant, string Evidence)
{
    public override string ToString() => $"{Invariant}: {Evidence}";
}

/// <summary>One claim about every reachable state.</summary>
public interface IInvariant
{
    /// <summary>The claim as a PascalCase name, e.g. NoLeafMapsFreeFrame.</summary>
    string Name { get; }
    /// <summary>One sentence: what must hold.</summary>
    string Claim { get; }
    /// <summary>Where it comes from: seed thread, kernel file and function.</summary>
    string Source { get; }
    /// <summary>The first violation found, or null.</summary>
    Violation? Check(IKernelView k);
}
