using PropertySuite.Properties.Infra;
using FsCheck.Fluent;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Generators.Harness;
using PropertySuite.Invariants;

namespace PropertySuite.Properties.Harness;

/// <summary>
/// The repro language: printing then parsing gives back the same scenario, for generated
/// scenarios of every variant (with and without an expect line and comments); and every
/// malformed input is refused with its line, column and reason.
/// </summary>
[Trait("Category", "harness")]
public class ReproLanguageTests
{
    private const string Header = "propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nvariant default\n";

    /// <summary>Generated scenarios of any variant, some with an expectation, and with some
    /// `step` lines in the named forms (`to ACTION`, `until done`).</summary>
    private static FsCheck.Gen<Scenario> AnyScenario(Budget budget)
    {
        var variants = KernelVariants.All;
        var invariants = InvariantRegistry.All;
        return from vi in Gen.Choose(0, variants.Count - 1)
               from generated in ScenarioGenerator.Gen(ScenarioOptions.For(variants[vi].Name, budget))
               from named in Gen.Choose(0, int.MaxValue)
               let s = WithNamedSteps(generated, (ulong)named)
               from e in Gen.Choose(0, invariants.Count + 1)
               from step in Gen.Choose(0, s.Ops.Length)
               select e == 0 ? s : e == 1 ? s with { Expect = Expectation.None } : s with { Expect = new Expectation(invariants[e - 2].Name, step) };
    }

    /// <summary>Action names for `step cpuN to ACTION`: the engine's, with and without an
    /// argument, and names no step performs (which parse all the same).</summary>
    private static readonly string[] Actions =
        ["xa_load", "folio_try_get_rcu", "spin_lock(hugetlb_lock)", "spin_lock(init_mm.page_table_lock)", "READ_ONCE(page->flags)", "return", "no_such_action", "_x9"];

    /// <summary>Some counted `step` lines turned into named ones (a third each), and one
    /// appended when there is none.</summary>
    private static Scenario WithNamedSteps(Scenario s, ulong seed)
    {
        var rng = new Prng(seed);
        StepOp Named(int cpu) => rng.Chance(50) ? StepOp.UntilDone(cpu) : StepOp.To(cpu, rng.Pick(Actions));
        var ops = s.Ops.Select(op => op is StepOp st && rng.Next(3) > 0 ? (rng.Chance(50) ? Named(st.Cpu) : st) : op).ToList();
        if (!ops.Any(op => op is StepOp { Until: not StepUntil.Count })) ops.Add(Named(rng.Next(s.Machine.Cpus)));
        return s with { Ops = [.. ops] };
    }

    private static string? RoundTrips(Scenario s)
    {
        string text = s.ToString();
        var parsed = Repro.Parse(text);
        if (parsed.ToString() != text) return $"print(parse(print(s))) differs:\n{text}\n---\n{parsed}";
        if (parsed.Arch != s.Arch || parsed.Machine != s.Machine || parsed.VariantName != s.VariantName || parsed.Expect != s.Expect)
            return $"header or expectation differs after parsing:\n{text}";
        for (int i = 0; i < s.Ops.Length; i++)
            if (!parsed.Ops[i].Equals(s.Ops[i])) return $"operation {i + 1} parses to {parsed.Ops[i]} ({parsed.Ops[i].GetType().Name}), not {s.Ops[i]} ({s.Ops[i].GetType().Name})";
        var commented = Repro.Parse(ScenarioProperty.WithComments(s, ["a comment", "another # with a hash"]));
        if (commented.ToString() != text) return $"comments change the scenario:\n{text}";
        return null;
    }

    /// <summary>Scenarios for [PsProperty] arguments: <see cref="AnyScenario"/>, shrunk by the
    /// scenario shrinker.</summary>
    public static class Scenarios
    {
        public static FsCheck.Arbitrary<Scenario> Any() =>
            Arb.From(AnyScenario(Budget.FromEnvironment()), s => ScenarioShrinker.Candidates(s));
    }

    [PsProperty(Arbitrary = [typeof(Scenarios)])]
    public void PrintThenParseGivesBackTheScenario(Scenario s)
    {
        string? why = RoundTrips(s);
        Assert.True(why is null, why);
    }

    private static readonly string[] Vocabulary =
    [
        "vmalloc", "vfree", "read", "step", "irq", "start", "cpu0:", "cpu1:", "cpu7:", "to", "until", "done", "expect", "at", "none",
        "v1", "v9", "p1", "f1", "=", "4K", "2M", "0", "-1", "0x1f", "99999999999999999999", "4Q", "#", "spin_lock(x)", "(", ")",
        "hugetlb_pool", "synchronize_rcu", "FrameConservation", "config", "memory", "\t", "é", "",
    ];

    /// <summary>Parser safety: any lines of repro words, numbers and junk after a valid header
    /// either parse, or are refused with a ReproParseException whose line is one of them and
    /// whose column is on it; nothing else is thrown.</summary>
    [PsProperty]
    public void AnyLinesParseOrAreRefusedWithTheirLineAndColumn(int[][] lines)
    {
        var text = new System.Text.StringBuilder(Header);
        foreach (var line in lines ?? [])
            text.Append(string.Join(' ', (line ?? []).Select(i => Vocabulary[(int)((uint)i % Vocabulary.Length)]))).Append('\n');
        try
        {
            Repro.Parse(text.ToString());
        }
        catch (ReproParseException e)
        {
            int headerLines = Header.Count(c => c == '\n');
            Assert.InRange(e.Line, headerLines + 1, headerLines + Math.Max(1, lines?.Length ?? 0) + 1);
            Assert.True(e.Column >= 1, $"column {e.Column} of line {e.Line}");
            Assert.False(string.IsNullOrWhiteSpace(e.Reason));
        }
    }

    [Fact]
    public void CoreOperationsPrintExactlyAsWritten()
    {
        string body = """
            v1 = vmalloc 5000
            cpu1: start read v1 12K
            step cpu1 3
            irq cpu1 read_page 0x1f
            vfree v1
            free_empty_tables
            fail_alloc 3 2
            cpu1: rcu_reader 4
            synchronize_rcu
            expect NoDeadlock at 4

            """;
        var s = Repro.Parse(Header + body);
        Assert.Equal(Header + body, s.ToString());
        Assert.Equal(new Expectation("NoDeadlock", 4), s.Expect);
        Assert.Equal(new IrqOp(new ReadStructPageOp(0x1f)) { Cpu = 1 }, s.Ops[3]);
        Assert.Equal(new ReadOp("v1", 12 << 10) { Cpu = 1, Start = true }, s.Ops[1]);
    }

    [Fact]
    public void StepFormsPrintExactlyAsWritten()
    {
        string body = """
            cpu1: start spec_lookup p1 64
            step cpu1
            step cpu1 3
            step cpu1 to folio_try_get_rcu
            step cpu0 to spin_lock(init_mm.page_table_lock)
            step cpu1 to READ_ONCE(page->flags)
            step cpu1 to no_such_action
            step cpu1 until done

            """;
        var s = Repro.Parse(Header + body);
        Assert.Equal(Header + body, s.ToString());
        Assert.Equal(new StepOp(3) { Cpu = 1 }, s.Ops[2]);
        Assert.Equal(StepOp.To(1, "folio_try_get_rcu"), s.Ops[3]);
        Assert.Equal(StepOp.To(0, "spin_lock(init_mm.page_table_lock)"), s.Ops[4]);
        Assert.Equal(StepOp.UntilDone(1), s.Ops[7]);
        Assert.Equal("step cpu1 until done", StepOp.UntilDone(1).ToString());
        Assert.Equal("step cpu0 to xa_load", StepOp.To(0, "xa_load").ToString());
    }

    [Theory]
    // step forms
    [InlineData(Header + "step cpu1 to\n", 6, 13, "expected a kernel action name, found end of line")]
    [InlineData(Header + "step cpu1 to 3x\n", 6, 14, "'3x' is not a kernel action name")]
    [InlineData(Header + "step cpu1 to spin_lock(\n", 6, 14, "'spin_lock(' is not a kernel action name")]
    [InlineData(Header + "step cpu1 to f(a)(b)\n", 6, 14, "'f(a)(b)' is not a kernel action name")]
    [InlineData(Header + "step cpu1 to xa_load now\n", 6, 22, "unexpected 'now' after the end of the statement")]
    [InlineData(Header + "step cpu1 until\n", 6, 16, "expected 'done', found end of line")]
    [InlineData(Header + "step cpu1 until finished\n", 6, 17, "expected 'done', found 'finished'")]
    [InlineData(Header + "step cpu1 until done 3\n", 6, 22, "unexpected '3'")]
    [InlineData(Header + "step cpu1 soon\n", 6, 11, "'soon' is not a step count, 'to ACTION' or 'until done'")]
    [InlineData(Header + "step cpu1 3 to xa_load\n", 6, 13, "unexpected 'to'")]
    [InlineData(Header + "step to xa_load\n", 6, 6, "'to' is not a CPU (cpuN)")]
    // unknown words
    [InlineData(Header + "v1 = vmallok 8K\n", 6, 6, "unknown operation 'vmallok'")]
    [InlineData("propertysuite-repro 1\nconfig x86_64-8k-l4\nmemory 256M\ncpus 2\nvariant default\n", 2, 8, "unknown config 'x86_64-8k-l4'")]
    [InlineData("propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 2\nvariant nosuch\n", 5, 9, "unknown variant 'nosuch'")]
    [InlineData(Header + "expect none at 3\n", 6, 13, "unexpected 'at'")]
    [InlineData(Header + "x1 = vmalloc 8K\n", 6, 6, "'vmalloc' binds vN handles, not x1")]
    [InlineData(Header + "v1 = vfree v2\n", 6, 6, "'vfree' produces nothing to bind to v1")]
    // bad numbers
    [InlineData(Header + "fail_alloc 1x 1\n", 6, 12, "after: '1x' is not a number")]
    [InlineData(Header + "rcu_reader 10001\n", 6, 12, "steps: 10001 is outside [0, 10000]")]
    [InlineData(Header + "read_page 0xzz\n", 6, 11, "pfn: '0xzz' is not a number")]
    [InlineData(Header + "step cpu1 0\n", 6, 11, "step count: 0 is outside [1, 10000]")]
    [InlineData(Header + "expect NoDeadlock at soon\n", 6, 22, "step: 'soon' is not a number")]
    // bad and impossible sizes
    [InlineData(Header + "v1 = vmalloc 8Q\n", 6, 14, "size: '8Q' is not a size")]
    [InlineData(Header + "v1 = vmalloc 65G\n", 6, 14, "size: 65G is outside [1, 64G]")]
    [InlineData(Header + "v1 = vmalloc 0\n", 6, 14, "size: 0 is outside [1, 64G]")]
    [InlineData("propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 200M\ncpus 2\nvariant default\n", 3, 8, "memory 200M: must be a positive multiple of the 128M memory section")]
    [InlineData("propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 65T\ncpus 2\nvariant default\n", 3, 8, "memory: 65T is outside [128M, 64T]")]
    [InlineData("propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 128M\ncpus 2\nvariant default\n", 3, 8, "boot needs at least two sections or 256M")]
    [InlineData("propertysuite-repro 1\nconfig arm64-64k-l3\nmemory 256M\ncpus 2\nvariant default\n", 3, 8, "memory: 256M is outside [512M, 64T]")]
    [InlineData("propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\nhotplug 1M\ncpus 2\nvariant default\n", 4, 1, "expected 'cpus', found 'hotplug'")]
    // CPUs out of range
    [InlineData(Header + "cpu2: synchronize_rcu\n", 6, 1, "cpu2: the machine has 2 CPUs")]
    [InlineData(Header + "step cpu7\n", 6, 6, "cpu7: the machine has 2 CPUs")]
    [InlineData(Header + "irq cpu9 read_page 0\n", 6, 5, "cpu9: the machine has 2 CPUs")]
    [InlineData("propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\ncpus 65\nvariant default\n", 4, 6, "cpus: 65 is outside [1, 64]")]
    [InlineData(Header + "cpu1: step cpu1\n", 6, 7, "'step' names its CPU as an argument")]
    [InlineData(Header + "irq cpu1 start read_page 0\n", 6, 27, "an interrupt handler is a plain operation")]
    // versions
    [InlineData("propertysuite-repro 2\nconfig x86_64-4k-l4\n", 1, 21, "repro language version 2 is not supported (this build reads 1)")]
    [InlineData("config x86_64-4k-l4\nmemory 256M\n", 1, 1, "the first line must be 'propertysuite-repro 1'")]
    [InlineData("# a comment first\npropertysuite-repro 1\n", 1, 1, "the first line must be 'propertysuite-repro 1'")]
    // trailing tokens and structure
    [InlineData(Header + "vfree v1 extra\n", 6, 10, "unexpected 'extra' after the end of the statement")]
    [InlineData(Header + "synchronize_rcu now\n", 6, 17, "unexpected 'now'")]
    [InlineData("propertysuite-repro 1 2\n", 1, 23, "unexpected '2'")]
    [InlineData(Header + "expect none\nsynchronize_rcu\n", 7, 1, "nothing may follow the 'expect' line")]
    [InlineData("propertysuite-repro 1\nconfig x86_64-4k-l4\nmemory 256M\n", 4, 1, "unexpected end of file")]
    public void MalformedInputIsRefusedWithLineColumnAndReason(string text, int line, int column, string reason)
    {
        var e = Assert.Throws<ReproParseException>(() => Repro.Parse(text));
        Assert.Equal((line, column), (e.Line, e.Column));
        Assert.Contains(reason, e.Reason, StringComparison.Ordinal);
        Assert.StartsWith($"line {line}, column {column}: ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OversizedFileIsRefusedBeforeItIsRead()
    {
        string text = Header + new string('#', Repro.MaxBytes);
        var e = Assert.Throws<ReproParseException>(() => Repro.Parse(text));
        Assert.Equal((1, 1), (e.Line, e.Column));
        Assert.Contains($"the limit is {Repro.MaxBytes}", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void OverlongLineIsRefused()
    {
        string text = Header + "# " + new string('x', Repro.MaxLineLength) + "\n";
        var e = Assert.Throws<ReproParseException>(() => Repro.Parse(text));
        Assert.Equal((6, Repro.MaxLineLength + 1), (e.Line, e.Column));
        Assert.Contains($"longer than {Repro.MaxLineLength}", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void TooManyOperationsAreRefused()
    {
        string text = Header + string.Concat(Enumerable.Repeat("step cpu0\n", Repro.MaxOps + 1));
        var e = Assert.Throws<ReproParseException>(() => Repro.Parse(text));
        Assert.Contains($"more than {Repro.MaxOps} operations", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void CommentsAndBlankLinesAreIgnoredAfterTheVersionLine()
    {
        var s = Repro.Parse("propertysuite-repro 1\n\n# why\nconfig x86_64-4k-l4   # the simplest\nmemory 256M\ncpus 2\nvariant default\n\nv1 = vmalloc 8K # one area\n");
        Assert.Equal(Header + "v1 = vmalloc 8K\n", s.ToString());
    }
}
