// Scenario properties written as FsCheck.Xunit methods ([PsProperty] with a Scenario argument):
// the arbitrary and the check the method's body calls.
//
//   [PsProperty(Arbitrary = [typeof(MyScenarios)])]
//   public void AnyScenarioOfACorrectKernelHoldsEveryInvariant(Scenario s) =>
//       ScenarioCases.Check("MyClass.AnyScenario...", s, Budget.FromEnvironment());
//
// The arbitrary is the project's one-pass generator (a drawn scenario has already run and been
// checked while it was drawn) with the scenario shrinker, which asks for the failing step of
// the candidate it shrinks: the run of each scenario checked here is remembered (weakly) so
// that FsCheck's shrink loop, which enumerates a value's candidates after running the property
// on it, gets it.
//
// The check runs the scenario (or takes the run generation made), and on a violation writes the
// repro atomically, always to the same file for one property, `PROPERTY.repro` in the budget's
// repro directory, then throws with the run, the repro and the command that replays it. FsCheck
// runs the body on every shrink candidate and ends on the smallest failing one, so the file
// holds what FsCheck reports as shrunk. Unlike ScenarioProperty.Assert, a shrink may move to
// another failure than the first found (FsCheck shrinks to any failure): for a property of
// correct kernels every failure is a finding, and the file and the message name the one shrunk
// to.
using System.Runtime.CompilerServices;
using FsCheck.Fluent;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;

namespace PropertySuite.Generators;

public static class ScenarioCases
{
    private static readonly ConditionalWeakTable<Scenario, RunResult> Runs = new();

    /// <summary>Scenarios drawn with <paramref name="options"/>, shrunk by the scenario shrinker.</summary>
    public static FsCheck.Arbitrary<Scenario> Arbitrary(ScenarioOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Arb.From(ScenarioGenerator.Gen(options), s => ScenarioShrinker.Candidates(s, () => RunOf(s) is { Failed: true } r ? r.Step : null));
    }

    private static RunResult? RunOf(Scenario s) => ScenarioGenerator.RunOf(s) ?? (Runs.TryGetValue(s, out var r) ? r : null);

    /// <summary>The repro file a failing <paramref name="property"/> writes (and overwrites while
    /// FsCheck shrinks).</summary>
    public static string ReproPath(string property, Budget budget)
    {
        ArgumentNullException.ThrowIfNull(budget);
        return Path.Combine(budget.ReproDir, property + ".repro");
    }

    /// <summary>Runs <paramref name="s"/>; on a violation writes its repro to
    /// <see cref="ReproPath"/> and throws <see cref="PropertyFailedException"/>.</summary>
    /// <param name="property">Class.Method: names the repro file and the printed test filter.</param>
    public static void Check(string property, Scenario s, Budget budget)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(property);
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(budget);
        var r = RunOf(s) ?? ScenarioRunner.Run(s);
        Runs.AddOrUpdate(s, r);
        if (!r.Failed) return;

        // Named steps survive refactoring; keep the counted form only if naming changed the run.
        var named = StepNaming.NameSteps(s);
        var namedRun = ScenarioRunner.Run(named);
        var (shown, run) = namedRun.Failed && ScenarioProperty.Signature(namedRun) == ScenarioProperty.Signature(r) ? (named, namedRun) : (s, r);
        shown = shown with { Expect = run.AsExpectation() };
        string filter = $"FullyQualifiedName~{property}";
        string text = ScenarioProperty.WithComments(shown,
        [
            $"property {property}: {run.FailedInvariant} violated at step {run.Step}",
            run.Violation?.Evidence ?? run.ToString(),
            $"the smallest failing case FsCheck tried; `dotnet test --filter '{filter}'` searches again",
        ]);
        string path = PbtRunner.WriteReproAtomically(budget.ReproDir, property + ".repro", text);
        throw new PropertyFailedException(
            $"{run}\nRepro ({shown.Ops.Length} operation(s)) written to {path}:\n{text}Replay the repro file: {ScenarioProperty.CliReplay} {path}\n",
            run.EngineError)
        {
            Invariant = run.FailedInvariant,
            Step = run.Step,
            Evidence = run.Violation?.Evidence,
            ReproText = text,
            ReproPath = path,
        };
    }
}
