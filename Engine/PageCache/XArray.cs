// A file's i_pages (include/linux/xarray.h): index → struct page pointer, in index order. The
// model adds one thing the kernel does not keep: for each struct page, how many slots hold it
// (the reverse of the mapping), so that RefcountAudit can ask "how many references does the page
// cache hold on this page" in constant time after a step instead of walking every file. It is
// kept by the same stores that change the slots, and the audit's full scan (which walks the
// slots themselves) is compared with it after every step in TeethOracleTests.
using System.Collections;

namespace PropertySuite.Engine.PageCache;

public sealed class XArray : IEnumerable<KeyValuePair<long, ulong>>
{
    private readonly SortedDictionary<long, ulong> _slots = new();
    private readonly Dictionary<ulong, int> _holding = new();

    public int Count => _slots.Count;
    public IEnumerable<long> Keys => _slots.Keys;
    public IEnumerable<ulong> Values => _slots.Values;

    /// <summary>xa_load / xa_store.</summary>
    public ulong this[long index]
    {
        get => _slots[index];
        set
        {
            if (_slots.TryGetValue(index, out ulong old)) Unhold(old);
            _slots[index] = value;
            _holding[value] = _holding.GetValueOrDefault(value) + 1;
        }
    }

    public bool TryGetValue(long index, out ulong page) => _slots.TryGetValue(index, out page);

    /// <summary>xa_erase.</summary>
    public bool Remove(long index)
    {
        if (!_slots.Remove(index, out ulong old)) return false;
        Unhold(old);
        return true;
    }

    /// <summary>How many slots hold <paramref name="page"/>.</summary>
    public int SlotsHolding(ulong page) => _holding.GetValueOrDefault(page);

    private void Unhold(ulong page)
    {
        int n = _holding[page] - 1;
        if (n == 0) _holding.Remove(page);
        else _holding[page] = n;
    }

    public IEnumerator<KeyValuePair<long, ulong>> GetEnumerator() => _slots.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
