using PropertySuite.Engine;
using PropertySuite.Engine.Config;

namespace PropertySuite.Invariants;

/// <summary>
/// The vmemmap of every HugeTLB folio has the shape its HVO scheme defines, stated from the
/// architecture and the scheme, not from the engine's reserve count. A folio of size S has
/// V = S / PAGE_SIZE * sizeof(struct page) / PAGE_SIZE vmemmap pages (vmemmap_dedup.rst: 8 for a
/// 2M folio on 4K pages, 4096 for 1G). The scheme keeps R of them: 2 under the v5.14-v5.17
/// scheme (pages 0 and 1, tails remapped onto page 1), 1 since v5.18 (page 0, tails remapped onto
/// it; HUGETLB_VMEMMAP_RESERVE_PAGES); the kept pages hold the head and the first tail pages that
/// carry folio-wide fields, so R pages must hold at least page[0..2]. A folio can be optimized
/// only where the architecture selects ARCH_WANT_OPTIMIZE_HUGETLB_VMEMMAP (x86-64; arm64 only in
/// v6.1-v6.2), the scheme is on, and V > R (hugetlb_vmemmap_optimizable_size is 0 otherwise).
/// Optimized: pages 0..R-1 map distinct writable frames, and pages R..V-1 all map the frame of
/// page R-1 (the reuse page) read-only — vmemmap_remap_pte maps the tails PAGE_KERNEL_RO "to
/// catch illegal write operation to the tail pages"; writable only under the declared design of
/// writable tails (S001 option 1). Not optimized: V distinct writable frames. A folio whose
/// optimize or restore is still running is between shapes and is not checked. Sources:
/// Documentation/mm/vmemmap_dedup.rst; mm/hugetlb_vmemmap.c vmemmap_remap_pte,
/// vmemmap_restore_pte, hugetlb_vmemmap_optimizable_size; mm/hugetlb_vmemmap.h
/// HUGETLB_VMEMMAP_RESERVE_PAGES (and its v5.14 value, RESERVE_VMEMMAP_NR = 2).
/// </summary>
public sealed class HvoShape : IInvariant
{
    public string Name => nameof(HvoShape);
    public string Claim => "an optimized folio's vmemmap pages R..V-1 map its reuse page read-only and pages 0..R-1 distinct writable frames, with V from the folio size and R from the HVO scheme; a non-optimized folio's V pages map distinct writable frames";
    public string Source => "Documentation/mm/vmemmap_dedup.rst; mm/hugetlb_vmemmap.c vmemmap_remap_pte, vmemmap_restore_pte, hugetlb_vmemmap_optimizable_size";

    /// <summary>R: the vmemmap pages a scheme keeps per optimized folio; 0 for no optimization.</summary>
    public static int KeptPages(HvoScheme scheme) => scheme switch
    {
        HvoScheme.TwoPagesKept => 2, // v5.14-v5.17 RESERVE_VMEMMAP_NR
        HvoScheme.OnePageKept => 1,  // v5.18+ HUGETLB_VMEMMAP_RESERVE_PAGES
        _ => 0,
    };

    /// <summary>V: a folio's vmemmap pages, from the architecture alone.</summary>
    public static long VmemmapPages(ArchConfig arch, long folioSize) =>
        (folioSize >> arch.PageShift) * ArchConfig.StructPageSize >> arch.PageShift;

    public Violation? Check(IKernelView k)
    {
        var v = k.PeekView;
        var scheme = k.Variant.Hugetlb.Hvo;
        int r = KeptPages(scheme);
        bool archWants = k.Arch.Arch == Arch.X86_64 || k.Variant.Hugetlb.Arm64Hvo;
        bool tailsRw = k.Variant.Hugetlb.TailVmemmapWritable;
        if (r > 0 && r * k.Arch.StructPagesPerVmemmapPage < 3)
            return new(Name, $"scheme {scheme} keeps {r} vmemmap page(s) of {k.Arch.StructPagesPerVmemmapPage} struct pages: fewer than the head and the two tails with folio-wide fields");
        foreach (var f in k.Hugetlb.AllFoliosByPfn())
        {
            long nv = VmemmapPages(k.Arch, f.Hstate.Size);
            if (nv < 1 || f.VmemmapBusy || f.State == FolioState.Allocating) continue;
            ulong start = k.Hugetlb.FolioPage(f) & ~(ulong)(k.Arch.PageSize - 1);
            bool optimized = k.PageFlags.FolioTestHugetlbVmemmapOptimized(v, k.Hugetlb.FolioPage(f));
            if (optimized && (r == 0 || !archWants))
                return new(Name, $"{f} is optimized, but {(r == 0 ? $"the scheme is {scheme}" : $"{k.Arch.Name} does not select ARCH_WANT_OPTIMIZE_HUGETLB_VMEMMAP")}");
            if (optimized && nv <= r)
                return new(Name, $"{f} is optimized, but its {nv} vmemmap page(s) are not more than the {r} scheme {scheme} keeps: nothing to free");
            var frames = new long[nv];
            var rw = new bool[nv];
            for (long i = 0; i < nv; i++)
            {
                if (k.FrameOf(start + (ulong)(i * k.Arch.PageSize), out rw[i]) is not { } frame) return new(Name, $"{f}: vmemmap page {i} at {start + (ulong)(i * k.Arch.PageSize):x} is not mapped");
                frames[i] = frame;
            }
            if (optimized)
            {
                long reuse = frames[r - 1];
                for (long i = 0; i < r; i++)
                {
                    if (!rw[i]) return new(Name, $"{f} (optimized, {scheme}): kept vmemmap page {i} maps frame {frames[i]:x} read-only");
                    for (long j = 0; j < i; j++)
                        if (frames[j] == frames[i]) return new(Name, $"{f} (optimized, {scheme}): kept vmemmap pages {j} and {i} map the same frame {frames[i]:x}");
                }
                for (long i = r; i < nv; i++)
                {
                    if (frames[i] != reuse)
                        return new(Name, $"{f} (optimized, {scheme} keeps {r} of {nv}): vmemmap page {i} maps frame {frames[i]:x}, expected the reuse page {reuse:x} (page {r - 1})");
                    if (rw[i] != tailsRw)
                        return new(Name, $"{f} (optimized, {scheme}): tail vmemmap page {i} is {(rw[i] ? "writable" : "read-only")}; expected {(tailsRw ? "writable" : "read-only")}");
                }
            }
            else
            {
                var seen = new HashSet<long>();
                for (long i = 0; i < nv; i++)
                {
                    if (!rw[i]) return new(Name, $"{f} (not optimized): vmemmap page {i} maps frame {frames[i]:x} read-only");
                    if (!seen.Add(frames[i])) return new(Name, $"{f} (not optimized): vmemmap page {i} maps frame {frames[i]:x}, which another of its pages maps too");
                }
            }
        }
        return null;
    }
}
