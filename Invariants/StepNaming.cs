// Naming the steps of a scenario: counted `step cpuN [K]` lines become `step cpuN until done` or
// `step cpuN to ACTION` where that keeps the run, so a shrunk repro keeps reproducing when a
// kernel path later takes a different number of steps.
//
// First the lines whose named form takes exactly the same steps, judged on a run of the scenario
// that records what each step did: the steps after the point where the named line would stop
// must all be inert (the CPU idle, or a blocked context retrying, which changes nothing while
// only this CPU runs). Then, for a line that stops where no named form can (the second of two
// pte_clear steps, say), the named forms of the actions its target performed, latest first, and
// `until done`: a different schedule, kept only if it shows the same failure (so only for a
// scenario that fails).
// Every rewrite is confirmed by running it: the scenario must give exactly the run the original
// gives (same outcome, step and evidence), or the line keeps its count.
using PropertySuite.Engine;
using PropertySuite.Engine.Scenario;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Invariants;

public static class StepNaming
{
    /// <summary>A counted line and its named forms: <see cref="Exact"/> when the first takes
    /// the same steps, else alternatives to try in order.</summary>
    private sealed record Proposal(int Index, bool Exact, IReadOnlyList<StepOp> Forms);

    /// <summary><paramref name="s"/> with its counted `step` lines named where that gives the same run.</summary>
    public static Scenario NameSteps(Scenario s)
    {
        ArgumentNullException.ThrowIfNull(s);
        var run = ScenarioRunner.Run(s);
        var baseline = run.ToString();
        var proposals = Propose(s);
        // Without a failure to keep, a different schedule cannot be told from the same one.
        if (!run.Failed) proposals.RemoveAll(p => !p.Exact);
        if (proposals.Count == 0) return s;
        bool Same(Scenario c) => ScenarioRunner.Run(c).ToString() == baseline;

        var exact = proposals.Where(p => p.Exact).ToList();
        var current = s;
        var all = s with { Ops = exact.Aggregate(s.Ops, (ops, p) => ops.SetItem(p.Index, p.Forms[0])) };
        if (exact.Count > 0 && Same(all)) current = all;
        else
            foreach (var p in exact)
                if (current with { Ops = current.Ops.SetItem(p.Index, p.Forms[0]) } is var c && Same(c)) current = c;
        foreach (var p in proposals.Where(p => !p.Exact))
            foreach (var form in p.Forms)
                if (current with { Ops = current.Ops.SetItem(p.Index, form) } is var c && Same(c))
                {
                    current = c;
                    break;
                }
        return current;
    }

    /// <summary>Runs the operations as ScenarioRunner does (without checking invariants, up to
    /// an engine exception), stepping counted lines one step at a time to see what each did.</summary>
    private static List<Proposal> Propose(Scenario s)
    {
        var proposals = new List<Proposal>();
        Kernel k;
        try { k = s.Boot(); }
        catch (Exception e) when (e is not OutOfMemoryException) { return proposals; }
        var rc = new RunContext(k);
        for (int i = 0; i < s.Ops.Length; i++)
        {
            var op = s.Ops[i];
            k.BeginStep(i + 1);
            try
            {
                if (op is StepOp { Until: StepUntil.Count } step)
                {
                    var p = Observe(k, step, i, out bool diverged);
                    if (p is not null) proposals.Add(p);
                    if (diverged) break; // this run is no longer the scenario's
                }
                else ScenarioRunner.Apply(k, rc, op);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                break; // the scenario's run stops here too
            }
        }
        return proposals;
    }

    private readonly record struct Taken(bool Inert, bool Blocked, bool ByTarget, string? Action, bool TargetDone);

    /// <summary>Takes the line's steps and proposes its named forms, or null.
    /// <paramref name="diverged"/>: a step beyond the line's was taken and made progress.</summary>
    private static Proposal? Observe(Kernel k, StepOp step, int index, out bool diverged)
    {
        diverged = false;
        var cpu = k.Cpus[step.Cpu];
        var target = cpu.Top;
        var steps = new Taken[step.Count];
        for (int n = 0; n < step.Count; n++)
        {
            var st = k.Sched.StepCpu(step.Cpu);
            bool byTarget = st is not null && cpu.LastStepContext == target;
            steps[n] = new Taken(st is not { IsProgress: true }, st is { IsBlocked: true }, byTarget, byTarget ? st!.Value.Action : null, target?.Task.Done == true);
        }
        Proposal Exactly(StepOp form) => new(index, true, [form]);
        if (target is null) return Exactly(StepOp.UntilDone(step.Cpu)); // a no-op whatever its form
        int last = Array.FindLastIndex(steps, t => !t.Inert);
        if (last < 0) return Exactly(StepOp.UntilDone(step.Cpu)); // the first step blocked; so did the rest
        // Where `until done` stops: the first step that blocked or ended the target.
        int done = Array.FindIndex(steps, t => t.Blocked || t.TargetDone);
        if (done == last && steps[last].TargetDone) return Exactly(StepOp.UntilDone(step.Cpu));
        if (steps[last] is { ByTarget: true, Action: { } action } && action != StepStatus.ReturnAction)
        {
            int to = Array.FindIndex(steps, t => t.Blocked || t.TargetDone || (t.ByTarget && t.Action == action));
            if (to == last) return Exactly(StepOp.To(step.Cpu, action));
        }
        if (done >= last) return Exactly(StepOp.UntilDone(step.Cpu));
        if (done < 0 && !steps[last].ByTarget)
        {
            // The last steps were an interrupt handler's and nothing stopped `until done` within
            // the count: it would take one more step, the same line only if that one blocks.
            var next = k.Sched.StepCpu(step.Cpu);
            if (next is { IsBlocked: true }) return Exactly(StepOp.UntilDone(step.Cpu));
            diverged = next is not null;
            return null;
        }
        // No named form stops here: the target's actions as alternatives, latest first.
        var firstSeen = new List<string>();
        for (int n = 0; n <= last && (done < 0 || n <= done); n++)
            if (steps[n] is { ByTarget: true, Action: { } a } && a != StepStatus.ReturnAction && !firstSeen.Contains(a)) firstSeen.Add(a);
        var forms = firstSeen.AsEnumerable().Reverse().Select(a => StepOp.To(step.Cpu, a)).Append(StepOp.UntilDone(step.Cpu)).ToList();
        return new Proposal(index, false, forms);
    }
}
