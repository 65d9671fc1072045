using System.Text;
using PropertySuite.Engine.Config;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;

namespace PropertySuite.Properties.Infra;

/// <summary>The outcome section of an expected-outcomes snapshot (race, HGM): one variant run by
/// generation at its measured search effort, and either "no violation" or the invariant it broke
/// with the shrunk repro.</summary>
public static class VariantOutcome
{
    /// <summary>Runs <paramref name="variant"/> (on <paramref name="config"/>, or configurations it
    /// allows) and appends its section, headed by <paramref name="heading"/>.</summary>
    public static void Append(StringBuilder sb, string property, string heading, string variant, string? config = null)
    {
        var nv = KernelVariants.ByName(variant);
        var budget = Budget.Parse(new Dictionary<string, string?>());
        if (VariantTargets.For(variant) is { } t && t.SearchEffort > budget.Tests) budget = budget with { Tests = t.SearchEffort };
        var result = ScenarioProperty.Check(property, ScenarioOptions.For(variant, budget, config), budget);
        sb.Append("\n## ").Append(heading).Append(nv.Correct ? " (correct)" : " (buggy)").Append(": ").Append(nv.Description).Append('\n');
        if (result.Failure is not { } f)
        {
            sb.Append($"  no violation in {result.Pbt.TestsRun} generated scenarios\n");
            return;
        }
        sb.Append($"  {f.Invariant} at step {f.Step}, shrunk to {f.ReproOps} operations:\n");
        foreach (var line in f.Shrunk.ToString().TrimEnd('\n').Split('\n')) sb.Append("    ").Append(line).Append('\n');
    }
}
