// The repro language: a strict, line-oriented parser for scenarios.
//
//   propertysuite-repro 1          version line, always first
//   config x86_64-4k-l4            ArchConfig name
//   memory 1G                      boot memory (sections)
//   cpus 2
//   hotplug 0                      optional
//   variant default                KernelVariants name
//   # comments and blank lines anywhere after the version line
//   v1 = vmalloc 16K               operations: [cpuN:] [start] [handle =] verb args
//   cpu1: read v1 0
//   step cpu1                      step cpuN [count | to ACTION | until done]
//   expect TlbCoherentAfterFlush at 3      optional, last
//
// Nothing is looked up by reflection: verbs are resolved through the explicit OpCatalog table.
// Limits are checked before anything is allocated; every error names line, column and reason.
using System.Collections.Immutable;
using System.Globalization;
using PropertySuite.Engine.Config;

namespace PropertySuite.Engine.Scenario;

/// <summary>A repro file that cannot be read; Line and Column are 1-based.</summary>
public sealed class ReproParseException(int line, int column, string reason)
    : Exception($"line {line}, column {column}: {reason}")
{
    public int Line { get; } = line;
    public int Column { get; } = column;
    public string Reason { get; } = reason;
}

/// <summary>The tokens of one line, with their columns, and typed readers that fail with position.</summary>
public sealed class LineReader
{
    private readonly List<(string Text, int Col)> _tokens;
    private int _pos;

    public int LineNo { get; }

    public LineReader(string line, int lineNo)
    {
        LineNo = lineNo;
        _tokens = new();
        int i = 0;
        while (i < line.Length)
        {
            if (line[i] == ' ' || line[i] == '\t') { i++; continue; }
            if (line[i] == '#') break;
            int start = i;
            while (i < line.Length && line[i] != ' ' && line[i] != '\t') i++;
            _tokens.Add((line[start..i], start + 1));
        }
    }

    public bool AtEnd => _pos >= _tokens.Count;
    public int Column => _pos < _tokens.Count ? _tokens[_pos].Col : (_tokens.Count == 0 ? 1 : _tokens[^1].Col + _tokens[^1].Text.Length);
    public string? Peek(int ahead = 0) => _pos + ahead < _tokens.Count ? _tokens[_pos + ahead].Text : null;

    public ReproParseException Error(string reason) => new(LineNo, Column, reason);

    public string Word(string what)
    {
        if (AtEnd) throw Error($"expected {what}, found end of line");
        return _tokens[_pos++].Text;
    }

    public void Expect(string literal)
    {
        int col = Column;
        string w = Word($"'{literal}'");
        if (w != literal) throw new ReproParseException(LineNo, col, $"expected '{literal}', found '{w}'");
    }

    public void End()
    {
        if (!AtEnd) throw Error($"unexpected '{Peek()}' after the end of the statement");
    }

    public long Int(string what, long min, long max)
    {
        int col = Column;
        string w = Word(what);
        bool ok = w.StartsWith("0x", StringComparison.Ordinal)
            ? long.TryParse(w.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out long v)
            : long.TryParse(w, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out v);
        if (!ok) throw new ReproParseException(LineNo, col, $"{what}: '{w}' is not a number");
        if (v < min || v > max) throw new ReproParseException(LineNo, col, $"{what}: {w} is outside [{min}, {max}]");
        return v;
    }

    public long Size(string what, long min, long max)
    {
        int col = Column;
        string w = Word(what);
        if (!ArchConfig.TryParseSize(w, out long v)) throw new ReproParseException(LineNo, col, $"{what}: '{w}' is not a size (e.g. 4K, 2M, 1G)");
        if (v < min || v > max)
            throw new ReproParseException(LineNo, col, $"{what}: {w} is outside [{ArchConfig.FormatSize(min)}, {ArchConfig.FormatSize(max)}]");
        return v;
    }

    public int Cpu(int cpus)
    {
        int col = Column;
        string w = Word("a CPU (cpuN)");
        if (!TryCpu(w, out int c)) throw new ReproParseException(LineNo, col, $"'{w}' is not a CPU (cpuN)");
        if (c >= cpus) throw new ReproParseException(LineNo, col, $"{w}: the machine has {cpus} CPUs");
        return c;
    }

    public static bool TryCpu(string w, out int cpu)
    {
        cpu = -1;
        return w.Length > 3 && w.Length <= 6 && w.StartsWith("cpu", StringComparison.Ordinal) && w[3..].All(char.IsAsciiDigit)
            && int.TryParse(w.AsSpan(3), NumberStyles.None, CultureInfo.InvariantCulture, out cpu);
    }

    /// <summary>A handle: a lower-case letter followed by 1-6 digits, e.g. v3.</summary>
    public string Handle(char kind)
    {
        int col = Column;
        string w = Word($"a handle ({kind}N)");
        if (!IsHandle(w) || w[0] != kind) throw new ReproParseException(LineNo, col, $"'{w}' is not a handle of the form {kind}N");
        return w;
    }

    /// <summary>Longest kernel action name accepted after `step cpuN to`.</summary>
    public const int MaxActionLength = 64;

    /// <summary>A kernel action name (`step cpuN to ACTION`): see <see cref="IsActionName"/>.</summary>
    public string Action()
    {
        int col = Column;
        string w = Word("a kernel action name");
        if (!IsActionName(w))
            throw new ReproParseException(LineNo, col,
                $"'{w}' is not a kernel action name (a C identifier such as folio_try_get_rcu, optionally with one argument such as spin_lock(hugetlb_lock); at most {MaxActionLength} characters)");
        return w;
    }

    /// <summary>A C identifier, optionally followed by one parenthesized argument of identifier
    /// characters and `.`, `&amp;`, `*`, `-`, `>` (e.g. spin_lock(init_mm.page_table_lock),
    /// READ_ONCE(page->flags)). Any such name parses; one that no step performs never matches.</summary>
    public static bool IsActionName(string w)
    {
        if (w.Length == 0 || w.Length > MaxActionLength || !(char.IsAsciiLetter(w[0]) || w[0] == '_')) return false;
        int i = 1;
        while (i < w.Length && (char.IsAsciiLetterOrDigit(w[i]) || w[i] == '_')) i++;
        if (i == w.Length) return true;
        if (w[i] != '(' || w[^1] != ')' || i + 2 >= w.Length) return false;
        foreach (char ch in w.AsSpan(i + 1, w.Length - i - 2))
            if (!(char.IsAsciiLetterOrDigit(ch) || ch is '_' or '.' or '&' or '*' or '-' or '>')) return false;
        return true;
    }

    public static bool IsHandle(string w) => w.Length >= 2 && w.Length <= 7 && char.IsAsciiLetterLower(w[0]) && w[1..].All(char.IsAsciiDigit);
}

public static class Repro
{
    /// <summary>Largest repro file accepted, in bytes.</summary>
    public const int MaxBytes = 1 << 20;
    public const int MaxLineLength = 512;
    public const int MaxOps = 100_000;
    /// <summary>Largest machine a repro may ask for: what the model holds (MachineConfig).</summary>
    public const long MaxMemory = MachineConfig.MaxMemoryBytes;

    /// <summary>Parses a complete repro text.</summary>
    /// <exception cref="ReproParseException">With line, column and reason.</exception>
    public static Scenario Parse(string text)
    {
        if (text.Length > MaxBytes) throw new ReproParseException(1, 1, $"file is {text.Length} characters; the limit is {MaxBytes}");
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        if (lines.Length > MaxOps + 64) throw new ReproParseException(MaxOps + 64, 1, $"more than {MaxOps} operations");
        for (int i = 0; i < lines.Length; i++)
            if (lines[i].Length > MaxLineLength) throw new ReproParseException(i + 1, MaxLineLength + 1, $"line longer than {MaxLineLength} characters");

        int n = 0;
        LineReader Next()
        {
            while (n < lines.Length)
            {
                var r = new LineReader(lines[n], n + 1);
                n++;
                if (!r.AtEnd) return r;
            }
            throw new ReproParseException(lines.Length, 1, "unexpected end of file");
        }

        var first = Next();
        if (first.LineNo != 1 || first.Peek() != Scenario.Magic)
            throw new ReproParseException(1, 1, $"the first line must be '{Scenario.Magic} {Scenario.LanguageVersion}'");
        first.Word("magic");
        int versionCol = first.Column;
        long version = first.Int("version", 0, int.MaxValue);
        if (version != Scenario.LanguageVersion)
            throw new ReproParseException(1, versionCol, $"repro language version {version} is not supported (this build reads {Scenario.LanguageVersion})");
        first.End();

        var h = Next();
        h.Expect("config");
        int col = h.Column;
        ArchConfig arch;
        try { arch = ArchConfig.ByName(h.Word("a config name")); }
        catch (ConfigException e) { throw new ReproParseException(h.LineNo, col, e.Message); }
        h.End();

        h = Next();
        h.Expect("memory");
        col = h.Column;
        long memory = h.Size("memory", arch.SectionSize, MaxMemory);
        h.End();
        int memLine = h.LineNo;

        h = Next();
        h.Expect("cpus");
        int cpus = (int)h.Int("cpus", 1, MachineConfig.MaxCpus);
        h.End();

        h = Next();
        long hotplug = 0;
        if (h.Peek() == "hotplug")
        {
            h.Word("hotplug");
            hotplug = h.Size("hotplug", 0, MaxMemory);
            h.End();
            h = Next();
        }
        var machine = new MachineConfig(memory, cpus, hotplug);
        try { machine.Validate(arch); }
        catch (ConfigException e) { throw new ReproParseException(memLine, col, e.Message); }

        h.Expect("variant");
        col = h.Column;
        string variant = h.Word("a variant name");
        try { KernelVariants.ByName(variant); }
        catch (ConfigException e) { throw new ReproParseException(h.LineNo, col, e.Message); }
        h.End();

        var ops = ImmutableArray.CreateBuilder<Op>();
        Expectation? expect = null;
        while (n < lines.Length)
        {
            var r = new LineReader(lines[n], n + 1);
            n++;
            if (r.AtEnd) continue;
            if (expect is not null) throw r.Error("nothing may follow the 'expect' line");
            if (r.Peek() == "expect")
            {
                expect = ParseExpect(r);
                continue;
            }
            if (ops.Count >= MaxOps) throw r.Error($"more than {MaxOps} operations");
            ops.Add(OpCatalog.ParseOp(r, cpus));
        }
        return new Scenario(arch, machine, variant, ops.ToImmutable(), expect);
    }

    private static Expectation ParseExpect(LineReader r)
    {
        r.Word("expect");
        int col = r.Column;
        string what = r.Word("an invariant name or 'none'");
        if (what == "none")
        {
            r.End();
            return Expectation.None;
        }
        if (!what.All(char.IsAsciiLetterOrDigit)) throw new ReproParseException(r.LineNo, col, $"'{what}' is not an invariant name");
        r.Expect("at");
        int step = (int)r.Int("step", 0, MaxOps);
        r.End();
        return new Expectation(what, step);
    }
}
