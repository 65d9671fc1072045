// Shrinking scenarios. Pure and finite: Candidates(s) depends only on s (and the failing step,
// itself a deterministic function of s), enumerates finitely many smaller or simpler scenarios,
// and never changes s. Whether a candidate still fails is decided by running it (FsCheck runs
// the property on each candidate; Minimize runs the given function), so nothing here needs to
// know what makes the scenario fail.
//
// Candidate order (the greedy loop takes the first candidate that still fails and starts over):
//   1. cut everything after the failing step: the runner stops there, so the rest is dead;
//   2. remove chunks of operations, halves first, down to single operations
//      (SequenceShrinker; delta debugging's complement step). A removed `v1 = vmalloc` leaves
//      the later `read v1` a no-op, so every candidate stays runnable. A chunk removal that
//      leaves a prefix ending before the failing step is skipped: that run is known to pass.
//      In short scenarios also every adjacent pair (halving never tries pairs off its grid);
//   3. simplify the configuration: fewer CPUs (idle CPUs removed and the rest renumbered;
//      operations on removed CPUs dropped, or moved onto the remaining ones; or every operation
//      of one CPU dropped and the CPUs above it renumbered down), less memory, no hot-plug range, a simpler configuration
//      the variant allows (4K pages first);
//   4. run a started task as a plain operation where its CPU is first stepped (one line fewer);
//      simplify single operations: an interrupt handler run as a plain operation, then
//      Op.ShrinkCommon (cpu0, no `start`), an unused handle dropped, Op.ShrinkArgs (smaller
//      sizes, shorter readers, fewer steps, `step cpuN to ACTION` as `until done`);
//   5. rename handles to v1, v2, ... in binding order (only when that changes something).
// Termination: every candidate is smaller in (operations, configuration rank, CPUs, memory,
// hot-plug, operation complexity, handle names) taken lexicographically, with each op's
// ShrinkArgs assumed strictly simpler, so FsCheck's loop cannot cycle (FsCheck issue #675).
using System.Collections.Immutable;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators.Harness;

namespace PropertySuite.Generators;

public static class ScenarioShrinker
{
    /// <summary>Longest scenario for which every adjacent pair is tried for removal (n - 1
    /// extra candidates, cheap because such scenarios run fast).</summary>
    public const int MaxOpsForPairs = 16;

    /// <summary>Largest step count a merge produces (the parser's limit for `step cpuN K`).</summary>
    public const int MaxMergedSteps = 10_000;

    /// <summary>Smaller or simpler scenarios than <paramref name="s"/>, most aggressive first.</summary>
    /// <param name="failingStep">The 1-based step at which <paramref name="s"/> fails (0: at
    /// boot), when known; enables the cut after it.</param>
    public static IEnumerable<Scenario> Candidates(Scenario s, int? failingStep = null) => Candidates(s, () => failingStep);

    /// <summary>
    /// <see cref="Candidates(Scenario, int?)"/> with the failing step looked up only when the
    /// enumeration starts. FsCheck calls a shrinker on every candidate as it builds its shrink
    /// tree, before it runs the property on that candidate, and enumerates the result only
    /// if the candidate failed; by then the run that knows the failing step has happened.
    /// </summary>
    public static IEnumerable<Scenario> Candidates(Scenario s, Func<int?> failingStep)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(failingStep);
        return Enumerate(s, failingStep);
    }

    private static IEnumerable<Scenario> Enumerate(Scenario s, Func<int?> lookUpFailingStep)
    {
        int? failingStep = lookUpFailingStep();
        var ops = s.Ops;
        var bare = s with { Expect = null };
        if (failingStep is int step && step >= 0 && step < ops.Length)
            yield return bare with { Ops = ops[..step] };

        foreach (var shorter in SequenceShrinker.Candidates(ops, NoSimplification))
        {
            // A prefix that ends before the failing step is the same run stopped earlier: it
            // passed every check then, so running it again would only cost time. (Removing the
            // last chunk gives such a prefix at every chunk size.)
            if (failingStep is int f && shorter.Length < f && IsPrefix(shorter, ops)) continue;
            yield return bare with { Ops = [.. shorter] };
        }

        // Adjacent pairs at every offset, in short scenarios: halving goes from chunks of 3 to
        // single operations, so two operations that only matter together (an interrupt that
        // delays a task, and the step that delivers it) and do not sit on a chunk boundary
        // would otherwise stay.
        if (ops.Length <= MaxOpsForPairs)
            for (int i = 0; i + 2 <= ops.Length; i++)
                yield return bare with { Ops = ops.RemoveRange(i, 2) };

        // Adjacent counted steps of one CPU become one `step cpuN K` line: the same schedule, one
        // line fewer (the order of the CPU's steps relative to the others is unchanged).
        for (int i = 0; i + 1 < ops.Length; i++)
            if (ops[i] is StepOp { Until: StepUntil.Count } a && ops[i + 1] is StepOp { Until: StepUntil.Count } b && a.Cpu == b.Cpu && a.Count + b.Count <= MaxMergedSteps)
                yield return bare with { Ops = ops.RemoveAt(i + 1).SetItem(i, a with { Count = a.Count + b.Count }) };

        foreach (var c in ConfigurationCandidates(bare))
            yield return c;

        for (int i = 0; i < ops.Length; i++)
            if (RunAtFirstStep(ops, i) is { } merged)
                yield return bare with { Ops = merged };

        for (int i = 0; i < ops.Length; i++)
            foreach (var simpler in SimplerOps(ops, i))
                yield return bare with { Ops = ops.SetItem(i, simpler) };

        if (CanonicalHandles(bare) is { } renamed)
            yield return renamed;
    }

    /// <summary>
    /// FsCheck's greedy shrink loop without FsCheck (for the fuzz command, tools and
    /// benchmarks): repeatedly take the first candidate for which <paramref name="stillFails"/>
    /// holds, until none does or <paramref name="maxAttempts"/> candidates were run.
    /// </summary>
    /// <param name="stillFails">Runs a candidate; returns its failing step, or null when the
    /// candidate does not show the failure being shrunk. Must be deterministic.</param>
    public static Scenario Minimize(Scenario s, int failingStep, Func<Scenario, int?> stillFails, int maxAttempts, out int attempts, out int shrinks)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(stillFails);
        attempts = 0;
        shrinks = 0;
        var current = s;
        int step = failingStep;
        while (true)
        {
            bool improved = false;
            foreach (var c in Candidates(current, step))
            {
                if (attempts == maxAttempts) return current;
                attempts++;
                if (stillFails(c) is int st)
                {
                    current = c;
                    step = st;
                    shrinks++;
                    improved = true;
                    break;
                }
            }
            if (!improved) return current;
        }
    }

    private static IEnumerable<Op> NoSimplification(Op op) => [];

    private static bool IsPrefix(Op[] shorter, ImmutableArray<Op> ops)
    {
        for (int i = 0; i < shorter.Length; i++)
            if (!ReferenceEquals(shorter[i], ops[i])) return false;
        return true;
    }

    /// <summary>Fewer CPUs, less memory, no hot-plug, simpler configuration.</summary>
    public static IEnumerable<Scenario> ConfigurationCandidates(Scenario s)
    {
        var m = s.Machine;
        // Only the CPUs operations use, renumbered in order (cpu0 stays cpu0 when used): keeps
        // every interleaving and removes idle CPUs, e.g. cpu0 and cpu2 become cpu0 and cpu1.
        var used = s.Ops.Select(op => op.Cpu).Distinct().Order().ToList();
        if (used.Count < m.Cpus && used.Count > 0)
        {
            var to = used.Select((cpu, i) => (cpu, i)).ToDictionary(p => p.cpu, p => p.i);
            yield return s with
            {
                Machine = m with { Cpus = used.Count },
                Ops = [.. s.Ops.Select(op => to[op.Cpu] == op.Cpu ? op : op with { Cpu = to[op.Cpu] })],
            };
        }
        foreach (int n in new[] { 1, m.Cpus - 1 }.Distinct().Where(n => n >= 1 && n < m.Cpus))
        {
            var fewer = s with { Machine = m with { Cpus = n } };
            yield return fewer with { Ops = [.. s.Ops.Where(op => op.Cpu < n)] };
            if (s.Ops.Any(op => op.Cpu >= n))
                yield return fewer with { Ops = [.. s.Ops.Select(op => op.Cpu < n ? op : op with { Cpu = op.Cpu % n })] };
        }
        // One CPU fewer by dropping the work of a lower CPU (the highest is dropped above), the
        // CPUs above it renumbered down: a task on cpu0 that only set the stage for the bug on
        // cpu1 goes in one candidate, though its lines are not consecutive.
        if (m.Cpus > 1)
            for (int c = 0; c < m.Cpus - 1; c++)
                if (s.Ops.Any(op => op.Cpu == c))
                    yield return s with
                    {
                        Machine = m with { Cpus = m.Cpus - 1 },
                        Ops = [.. s.Ops.Where(op => op.Cpu != c).Select(op => op.Cpu > c ? op with { Cpu = op.Cpu - 1 } : op)],
                    };

        long min = ScenarioGenerator.MinMemory(s.Arch);
        if (m.MemoryBytes > min)
        {
            yield return s with { Machine = m with { MemoryBytes = min } };
            long half = m.MemoryBytes / 2 / s.Arch.SectionSize * s.Arch.SectionSize;
            if (half > min && ScenarioGenerator.IsValid(s.Arch, m with { MemoryBytes = half }))
                yield return s with { Machine = m with { MemoryBytes = half } };
        }
        if (m.HotplugBytes > 0)
            yield return s with { Machine = m with { HotplugBytes = 0 } };

        var variant = KernelVariants.ByName(s.VariantName);
        int rank = Rank(s.Arch);
        foreach (var arch in ArchConfig.All.Where(a => Rank(a) < rank && a.PageSize <= s.Arch.PageSize && ScenarioGenerator.Allows(variant, a)).OrderBy(Rank))
        {
            if (ScenarioGenerator.IsValid(arch, m)) yield return s with { Arch = arch };
        }
    }

    /// <summary>Simplicity of a configuration: smaller base pages first, then ArchConfig.All order
    /// (x86_64-4k-l4 is the simplest).</summary>
    public static int Rank(ArchConfig arch)
    {
        int index = 0;
        foreach (var a in ArchConfig.All)
        {
            if (a.Name == arch.Name) break;
            index++;
        }
        return (int)(arch.PageShift * 100) + index;
    }

    /// <summary>A started task run as a plain operation where its CPU was first stepped:
    /// `cpu1: start X ... step cpu1 [n]` becomes `... cpu1: X`, one line shorter. Where the task
    /// was only started and stepped, running it at once at that point is often the same
    /// interleaving. Null when ops[i] is not started or its CPU is never stepped after it.</summary>
    private static ImmutableArray<Op>? RunAtFirstStep(ImmutableArray<Op> ops, int i)
    {
        var op = ops[i];
        if (!op.Start || op is StepOp or IrqOp) return null;
        for (int j = i + 1; j < ops.Length; j++)
            if (ops[j] is StepOp step && step.Cpu == op.Cpu)
                return ops.SetItem(j, op with { Start = false }).RemoveAt(i);
        return null;
    }

    /// <summary>Simpler versions of ops[i].</summary>
    private static IEnumerable<Op> SimplerOps(ImmutableArray<Op> ops, int i)
    {
        var op = ops[i];
        if (op is IrqOp irq) yield return irq.Handler with { Cpu = irq.Cpu };
        foreach (var c in op.ShrinkCommon()) yield return c;
        if (op.Bind is { } h && !UsedAfter(ops, i, h)) yield return op with { Bind = null };
        foreach (var c in op.ShrinkArgs()) yield return c;
    }

    private static bool UsedAfter(ImmutableArray<Op> ops, int i, string handle)
    {
        for (int j = i + 1; j < ops.Length; j++)
            if (ops[j].Uses.Contains(handle)) return true;
        return false;
    }

    /// <summary>The scenario with its handles renamed to kind + 1, 2, ... in binding order, or
    /// null when they already are. Consistent renaming does not change what runs.</summary>
    public static Scenario? CanonicalHandles(Scenario s)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        var next = new Dictionary<char, int>();
        foreach (var op in s.Ops)
        {
            foreach (var h in op.Uses) Name(h);
            if (op.Bind is { } b) Name(b);
        }
        if (map.All(kv => kv.Key == kv.Value)) return null;
        return s with { Ops = [.. s.Ops.Select(Rename)] };

        void Name(string h)
        {
            if (map.ContainsKey(h)) return;
            int n = next.GetValueOrDefault(h[0]) + 1;
            next[h[0]] = n;
            map[h] = h[0] + n.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        // Through the repro language: handles are whole tokens of an operation's line, and
        // printing then parsing an operation gives it back (a property checks that), so this
        // renames every operation, including ones added later by other mechanisms.
        Op Rename(Op op)
        {
            var tokens = op.ToString().Split(' ');
            for (int t = 0; t < tokens.Length; t++)
                if (map.TryGetValue(tokens[t], out var to)) tokens[t] = to;
            return OpCatalog.ParseOp(new LineReader(string.Join(' ', tokens), 1), s.Machine.Cpus);
        }
    }
}
