// Which vm areas changed in the current step: the incremental forms of the vmalloc invariants
// (VmallocMappingsExact, HugeVmapLeafOnlyWhereAllowed) judge only the areas and page-table
// ranges a step touched, and this is how they learn which areas those are. The record is taken
// from the areas themselves, not from the paths that change them: at the start of a step each
// live area's state (identity, size, flags, backing-page count, physical range, protection
// record, whether its creating task is still mapping it) is noted, and the areas whose state differs at the end — created, freed, or changed —
// are the step's changes. A path that changes an area without going through a named function
// is still seen, so a breakage cannot hide from the incremental check by skipping a hook.
namespace PropertySuite.Engine.Mm;

internal sealed class VmAreaChanges(Func<IEnumerable<VmArea>> areas)
{
    private readonly record struct Noted(VmArea Area, ulong Size, VmFlags Flags, long? IoremapPfn, bool SetMemoryFailed, int Pages, long ProtVersion, bool Populating)
    {
        public static Noted Of(VmArea a) => new(a, a.Size, a.Flags, a.IoremapPfn, a.SetMemoryFailed, a.Pages.Count, a.ProtVersion, a.Populating);

        public (ulong Start, ulong End) Range => (Area.Addr, Area.Addr + Area.Size + Area.GuardSize);
    }

    private readonly List<Noted> _atStepStart = new();
    private readonly List<(ulong Start, ulong End)> _changed = new();
    private bool _computed;

    /// <summary>A step begins: note every live area's state.</summary>
    public void BeginStep()
    {
        _atStepStart.Clear();
        foreach (var a in areas()) _atStepStart.Add(Noted.Of(a));
        _computed = false;
    }

    /// <summary>The ranges [addr, addr + size + guard) of every area created, freed or changed
    /// since the step began (a changed area whose size changed: both ranges), in address order.</summary>
    public IReadOnlyList<(ulong Start, ulong End)> ChangedThisStep
    {
        get
        {
            if (_computed) return _changed;
            _changed.Clear();
            int i = 0;
            foreach (var a in areas())
            {
                var now = Noted.Of(a);
                // Both lists are in address order: areas noted below this one are gone.
                while (i < _atStepStart.Count && _atStepStart[i].Area.Addr < a.Addr) _changed.Add(_atStepStart[i++].Range);
                if (i < _atStepStart.Count && _atStepStart[i].Area.Addr == a.Addr)
                {
                    if (_atStepStart[i] != now) { _changed.Add(_atStepStart[i].Range); _changed.Add(now.Range); }
                    i++;
                }
                else _changed.Add(now.Range);
            }
            while (i < _atStepStart.Count) _changed.Add(_atStepStart[i++].Range);
            _changed.Sort();
            _computed = true;
            return _changed;
        }
    }
}
