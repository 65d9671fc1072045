using PropertySuite.Engine;
using PropertySuite.Engine.Hgm;
using PropertySuite.Engine.Mm;

namespace PropertySuite.Invariants;

/// <summary>
/// Every user page-table entry that maps HugeTLB memory has the shape of a hugetlb_pte: it lies
/// inside one hugetlb VMA, its size is one the VMA may use (the hstate size, or with
/// VM_HUGETLB_HGM one of for_each_hgm_shift's sizes down to PAGE_SIZE), it is aligned to its size
/// (the radix tree's levels guarantee address alignment and non-overlap; the physical side is
/// checked here), and it maps exactly the subpages of the page-cache folio that its address and
/// the VMA's vm_pgoff imply (linear_page_index). Source: the HGM series (hugetlb_pte,
/// hugetlb_hgm_walk's "always pick the first PTE", for_each_hgm_shift), mm/hugetlb.c
/// make_huge_pte, include/linux/pagemap.h linear_page_index.
/// </summary>
/// <remarks>Checks the leaves stored in the current step, and after every step that no leaf lies
/// in a gap between VMAs or straddles a VMA's end (a walk of the gaps and of one address per
/// boundary, so the cost follows the step's changes and the number of VMAs, not the mapped
/// folios).</remarks>
public sealed class HugetlbPteShape : IInvariant
{
    public string Name => nameof(HugetlbPteShape);
    public string Claim => "every user leaf mapping HugeTLB memory lies in its hugetlb VMA, has an allowed size, and maps the folio subpages its address and vm_pgoff imply";
    public string Source => "HGM series hugetlb_pte, hugetlb_hgm_walk, for_each_hgm_shift; mm/hugetlb.c make_huge_pte; include/linux/pagemap.h linear_page_index";

    public Violation? Check(IKernelView k)
    {
        foreach (var e in k.StepEvents)
        {
            if (e.Kind != KernelEventKind.EntryStore || e.Mm == "init_mm" || !e.New.IsLeaf) continue;
            if (k.Hgm.MmByName(e.Mm!) is not { } hm) continue;
            // Judge the entry as it is now (a later store of the step may have replaced it).
            var w = hm.Mm.Pgd.Walk(e.Start);
            if (!w.IsLeaf || hm.Mm.Pgd.EntryVa(w.Table, w.Index) != e.Start || hm.Mm.Pgd.EntrySize(w.Table) != e.End - e.Start) continue;
            if (JudgeLeaf(k, hm, e.Start, e.End - e.Start, w.Entry) is { } v) return v;
        }
        foreach (var hm in k.Hgm.Mms)
        {
            var pgd = hm.Mm.Pgd;
            ulong at = 0;
            foreach (var vma in hm.Vmas)
            {
                if (Gap(k, hm, at, vma.VmStart) is { } g) return g;
                var last = pgd.Walk(vma.VmEnd - 1);
                if (last.IsLeaf && pgd.EntryVa(last.Table, last.Index) + pgd.EntrySize(last.Table) > vma.VmEnd)
                    return new(Name, $"{hm.Mm.Name} {last.Level} leaf [{pgd.EntryVa(last.Table, last.Index):x}, {pgd.EntryVa(last.Table, last.Index) + pgd.EntrySize(last.Table):x}) runs past the end of {vma}");
                at = vma.VmEnd;
            }
            if (Gap(k, hm, at, k.Hgm.UserTop) is { } g2) return g2;
        }
        return null;
    }

    private Violation? Gap(IKernelView k, HugetlbMm hm, ulong start, ulong end)
    {
        if (start >= end) return null;
        foreach (var w in hm.Mm.Pgd.Leaves(start, end))
        {
            ulong va = hm.Mm.Pgd.EntryVa(w.Table, w.Index);
            return new(Name, $"{hm.Mm.Name} {w.Level} leaf at {va:x} ({w.Entry}) lies {(va < start ? "partly " : "")}outside every VMA (gap [{start:x}, {end:x}))");
        }
        return null;
    }

    private Violation? JudgeLeaf(IKernelView k, HugetlbMm hm, ulong va, ulong size, Pte e)
    {
        var v = hm.VmaLookup(va);
        string where = $"{hm.Mm.Name} leaf [{va:x}, {va + size:x}) {e}";
        if (v is null || !v.IsVmHugetlbPage || v.VmFile is null) return new(Name, $"{where} lies in no hugetlb VMA");
        if (va + size > v.VmEnd) return new(Name, $"{where} runs past the end of {v}");
        var file = v.VmFile;
        var h = file.Hstate;
        bool allowed = size == (ulong)h.Size || (v.HgmEnabled && k.Arch.Arch == Engine.Config.Arch.X86_64 && AllowedHgmSize(k, h, size));
        if (!allowed) return new(Name, $"{where}: size {Engine.Config.ArchConfig.FormatSize((long)size)} is not allowed in {v} (hstate {h.Name}{(v.HgmEnabled ? ", HGM" : ", no HGM")})");
        long pages = v.VmPgoff + (long)((va - v.VmStart) >> k.Arch.PageShift);
        long index = pages / h.PagesPerHugePage, subpage = pages % h.PagesPerHugePage;
        if (!file.PageCache.TryGetValue(index, out var f)) return null; // UserLeafMapsLiveFolio's claim
        long want = f.HeadPfn + subpage;
        if (e.Pfn != want)
            return new(Name, $"{where} maps pfn {e.Pfn:x}, but its address is page {index} subpage {subpage} of {file}, pfn {want:x} ({f})");
        if ((e.Pfn - f.HeadPfn) % (long)(size >> k.Arch.PageShift) != 0)
            return new(Name, $"{where}: pfn {e.Pfn:x} is not aligned to its size within {f}");
        return null;
    }

    private static bool AllowedHgmSize(IKernelView k, Hstate h, ulong size)
    {
        if (size == (ulong)k.Arch.PageSize) return true;
        foreach (var x in k.Hugetlb.Hstates)
            if ((ulong)x.Size == size && x.Size <= h.Size) return true;
        return false;
    }
}
