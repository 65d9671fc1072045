// Who holds a reference on a struct page (include/linux/page_ref.h, include/linux/mm.h): each
// mechanism that keeps a page alive declares the references it holds, from its own records
// (the page cache's xarray, a vm_struct's pages array, a task's taken reference), never from
// _refcount. RefcountAudit sums the declarations per frame and compares the sum with the
// counter; the declarations are what the kernel's own reasoning about a refcount is made of
// ("the page cache holds one reference per page it contains", "vmalloc owns its pages").
//
// Holders here: the page cache of order-0 files (Filemap), speculative references taken by
// page_ref_add_unless and not yet dropped (this file's SpeculativeRefs: the task that took one
// holds it until it puts it), and vmalloc areas (one reference per backing page, or per
// compound head with __GFP_COMP backing). Not declared: HugeTLB folios (their references are
// the fault's, the mappings' and the hugetlbfs page cache's; RefcountCoversMappings bounds them
// from below), page-table pages (the model does not count references on them), vmemmap and
// kernel pages (no refcount the modelled kernel code reads).
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.PageCache;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine;

/// <summary>One mechanism's references on struct pages, from its own records.</summary>
public interface IRefHolder
{
    /// <summary>Who holds them, for evidence ("page cache", "vmalloc areas").</summary>
    string Who { get; }

    /// <summary>The owner of the frames this holder keeps alive (PageCache, Vmalloc), or Absent
    /// for references on frames of any owner (a task's speculative reference). A frame is audited
    /// where its owner's holder declares it: then every reference on it is one of the declared.</summary>
    FrameOwner Owner { get; }

    /// <summary>Reports every reference held: (pfn of the struct page, references). Called after
    /// every step that changed frames, so it builds no text.</summary>
    void Declare(Action<long, int> add);

    /// <summary>The references held on <paramref name="pfn"/>'s struct page: what
    /// <see cref="Declare"/> reports for it, answered for one frame (the audit's per-step form).</summary>
    int RefsOn(long pfn);

    /// <summary>Why this holder holds references on <paramref name="pfn"/>: one line per
    /// reference, as evidence (called only when a count disagrees).</summary>
    IEnumerable<string> Why(long pfn);

    /// <summary>Frames whose references from this holder may have changed in the current step
    /// (taken, dropped, or the holder gone).</summary>
    IEnumerable<long> ChangedThisStep { get; }
}

/// <summary>One reference a task took through page_ref_add_unless and has not put yet.</summary>
public sealed record HeldRef(KernelTask Task, int Cpu, long Pfn, string Who, long Step)
{
    public override string ToString() => $"{Who} by cpu{Cpu} {Task.Name} (taken at step {Step}{(Task.Done ? ", task ended" : "")})";
}

/// <summary>The references speculative paths (folio_try_get_rcu, get_page_unless_zero) hold:
/// recorded when the atomic add succeeds, released when the same task puts the page. A task that
/// ended still holding one leaked it: it is no longer a holder, but the record stays as evidence.</summary>
public sealed class SpeculativeRefs : IRefHolder
{
    private readonly List<HeldRef> _held = new();
    private readonly List<long> _changed = new();

    public string Who => "speculative references of running tasks";

    public FrameOwner Owner => FrameOwner.Absent;

    public IReadOnlyList<HeldRef> Held => _held;

    public IEnumerable<long> ChangedThisStep
    {
        get
        {
            foreach (long p in _changed) yield return p;
            foreach (var h in _held) if (h.Task.Done) yield return h.Pfn; // leaked: judged until the run ends
        }
    }

    internal void BeginStep() => _changed.Clear();

    /// <summary>The atomic add of <paramref name="ctx"/>'s task succeeded on the struct page of <paramref name="pfn"/>.</summary>
    internal void Take(ExecContext ctx, long pfn, string who, long step)
    {
        _held.Add(new HeldRef(ctx.Task, ctx.CpuId, pfn, who, step));
        _changed.Add(pfn);
    }

    /// <summary>A put by <paramref name="ctx"/>'s task on <paramref name="pfn"/>: releases its
    /// reference there, if it holds one (a put of the page cache's own reference holds none).</summary>
    internal bool Release(ExecContext ctx, long pfn)
    {
        int i = _held.FindIndex(h => h.Task == ctx.Task && h.Pfn == pfn);
        if (i < 0) return false;
        _held.RemoveAt(i);
        _changed.Add(pfn);
        return true;
    }

    public void Declare(Action<long, int> add)
    {
        foreach (var h in _held)
            if (!h.Task.Done) add(h.Pfn, 1);
    }

    public int RefsOn(long pfn)
    {
        int n = 0;
        foreach (var h in _held)
            if (!h.Task.Done && h.Pfn == pfn) n++;
        return n;
    }

    public IEnumerable<string> Why(long pfn)
    {
        foreach (var h in _held)
            if (!h.Task.Done && h.Pfn == pfn) yield return h.ToString();
    }
}

/// <summary>The page cache of order-0 files: one reference per page it contains
/// (filemap_add_folio takes it, __filemap_remove_folio's caller drops it).</summary>
internal sealed class PageCacheRefs(Kernel k) : IRefHolder
{
    public string Who => "page cache";

    public FrameOwner Owner => FrameOwner.PageCache;

    public IEnumerable<long> ChangedThisStep => k.FilemapIfUsed?.CacheChangedThisStep ?? [];

    public void Declare(Action<long, int> add)
    {
        if (k.FilemapIfUsed is not { } fm) return;
        foreach (var f in fm.Files)
            foreach (var (_, page) in f.IPages)
                add(k.Arch.PageToPfn(page), 1);
    }

    public int RefsOn(long pfn)
    {
        if (k.FilemapIfUsed is not { } fm) return 0;
        ulong page = k.Arch.PfnToPage(pfn);
        int n = 0;
        foreach (var f in fm.Files) n += f.IPages.SlotsHolding(page);
        return n;
    }

    public IEnumerable<string> Why(long pfn)
    {
        if (k.FilemapIfUsed is not { } fm) yield break;
        foreach (var f in fm.Files)
            foreach (var (index, page) in f.IPages)
                if (k.Arch.PageToPfn(page) == pfn) yield return $"{f} index {index}";
    }
}

/// <summary>vmalloc: a vm_struct holds each backing page it allocated (split_page: one reference
/// per page; __GFP_COMP backing: one on each compound head), until vfree frees them.</summary>
internal sealed class VmallocRefs(Kernel k) : IRefHolder
{
    public string Who => "vmalloc areas";

    public FrameOwner Owner => FrameOwner.Vmalloc;

    // Area changes move frames between owners (Vmalloc <-> Free), which the audit reads itself.
    public IEnumerable<long> ChangedThisStep => [];

    public void Declare(Action<long, int> add) => ForEachHeld((pfn, _, _) => add(pfn, 1));

    // RefsOn's index of the areas' references, rebuilt when the set of live areas (a new list on
    // every vmalloc / vfree) or the number of backing pages they list changes.
    private Dictionary<long, int>? _index;
    private IReadOnlyList<IVmAreaView>? _indexedAreas;
    private long _indexedPages = -1;

    public int RefsOn(long pfn)
    {
        var areas = ((IVmallocView)k.Vmalloc).LiveAreas;
        long pages = 0;
        foreach (var a in areas) pages += a.Pages.Count;
        if (_index is null || !ReferenceEquals(areas, _indexedAreas) || pages != _indexedPages)
        {
            var index = new Dictionary<long, int>();
            Declare((p, refs) => index[p] = index.GetValueOrDefault(p) + refs);
            (_index, _indexedAreas, _indexedPages) = (index, areas, pages);
        }
        return _index.GetValueOrDefault(pfn);
    }

    public IEnumerable<string> Why(long pfn)
    {
        var why = new List<string>();
        ForEachHeld((p, a, i) => { if (p == pfn) why.Add($"vm area at {a.Addr:x} page {i}"); });
        return why;
    }

    /// <summary>Each reference: the backing page (or compound head), its area, its index there.</summary>
    private void ForEachHeld(Action<long, IVmAreaView, int> visit)
    {
        bool compound = ((IVmallocView)k.Vmalloc).Options.CompoundBacking;
        foreach (var a in ((IVmallocView)k.Vmalloc).LiveAreas)
        {
            int per = compound ? 1 << a.PageOrder : 1;
            for (int i = 0; i < a.Pages.Count; i += per) visit(a.Pages[i], a, i);
        }
    }
}
