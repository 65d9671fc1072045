using System.Globalization;

namespace PropertySuite.Bench;

/// <summary>A plain text table: a header row and rows, columns padded to their widest cell;
/// columns whose cells are numbers are right-aligned.</summary>
public sealed class TextTable(params string[] header)
{
    private readonly List<string[]> _rows = new();

    public void Add(params object[] cells) =>
        _rows.Add(cells.Select(c => c switch
        {
            double d => d.ToString(d >= 100 ? "N0" : d >= 1 ? "N2" : "N3", CultureInfo.InvariantCulture),
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => c?.ToString() ?? "",
        }).ToArray());

    public void Write(TextWriter o)
    {
        var all = new List<string[]> { header };
        all.AddRange(_rows);
        int n = all.Max(r => r.Length);
        var width = Enumerable.Range(0, n).Select(i => all.Max(r => i < r.Length ? r[i].Length : 0)).ToArray();
        var numeric = Enumerable.Range(0, n).Select(i => _rows.Count > 0 && _rows.All(r => i >= r.Length || IsNumber(r[i]))).ToArray();
        foreach (var (row, index) in all.Select((r, i) => (r, i)))
        {
            var cells = Enumerable.Range(0, n).Select(i =>
            {
                string c = i < row.Length ? row[i] : "";
                return numeric[i] ? c.PadLeft(width[i]) : c.PadRight(width[i]);
            });
            o.WriteLine(string.Join("  ", cells).TrimEnd());
            if (index == 0) o.WriteLine(string.Join("  ", width.Select(w => new string('-', w))));
        }
    }

    private static bool IsNumber(string s) =>
        s.Length > 0 && double.TryParse(s.Replace(",", ""), NumberStyles.Float, CultureInfo.InvariantCulture, out _);
}
