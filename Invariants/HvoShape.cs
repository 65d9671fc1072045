using PropertySuite.Engine;

namespace PropertySuite.Invariants;

/// <summary>
/// The vmemmap of every HugeTLB folio has one of two shapes. Not optimized: its V vmemmap pages
/// map V distinct frames, all writable. Optimized (R pages kept: 1 since v5.18, 2 in v5.14): pages
/// 0..R−1 map distinct writable frames, and pages R..V−1 map the frame of page R−1 (the reuse
/// page) read-only — writable only under the TailVmemmapWritable design. A folio whose optimize or
/// restore is still running is between shapes and is not checked. Source: mm/hugetlb_vmemmap.c
/// vmemmap_remap_pte ("Remap the tail pages as read-only to catch illegal write operation to the
/// tail pages") and vmemmap_restore_pte; Documentation/mm/vmemmap_dedup.rst.
/// Enforced by the walk over [reuse, end) that rewrites every entry of the range.
/// </summary>
public sealed class HvoShape : IInvariant
{
    public string Name => nameof(HvoShape);
    public string Claim => "an optimized folio's vmemmap pages R..V-1 map its reuse page read-only and pages 0..R-1 distinct writable frames; a non-optimized folio's V pages map distinct writable frames";
    public string Source => "mm/hugetlb_vmemmap.c vmemmap_remap_pte, vmemmap_restore_pte; vmemmap_dedup.rst";

    public Violation? Check(IKernelView k)
    {
        var v = k.PeekView;
        int r = k.Hugetlb.ReservePages;
        bool tailsRw = k.Variant.Hugetlb.TailVmemmapWritable;
        foreach (var f in k.Hugetlb.AllFoliosByPfn())
        {
            long nv = f.Hstate.VmemmapPages;
            if (nv < 1 || f.VmemmapBusy || f.State == FolioState.Allocating) continue;
            ulong start = k.Hugetlb.FolioPage(f) & ~(ulong)(k.Arch.PageSize - 1);
            bool optimized = k.PageFlags.FolioTestHugetlbVmemmapOptimized(v, k.Hugetlb.FolioPage(f));
            var frames = new long[nv];
            var rw = new bool[nv];
            for (long i = 0; i < nv; i++)
            {
                frames[i] = k.WalkToFrame(start + (ulong)(i * k.Arch.PageSize), out rw[i]);
                if (frames[i] < 0) return new(Name, $"{f}: vmemmap page {i} at {start + (ulong)(i * k.Arch.PageSize):x} is not mapped");
            }
            if (optimized)
            {
                long reuse = frames[r - 1];
                for (long i = 0; i < r; i++)
                {
                    if (!rw[i]) return new(Name, $"{f} (optimized): kept vmemmap page {i} maps frame {frames[i]:x} read-only");
                    for (long j = 0; j < i; j++)
                        if (frames[j] == frames[i]) return new(Name, $"{f} (optimized): kept vmemmap pages {j} and {i} map the same frame {frames[i]:x}");
                }
                for (long i = r; i < nv; i++)
                {
                    if (frames[i] != reuse)
                        return new(Name, $"{f} (optimized): vmemmap page {i} maps frame {frames[i]:x}, expected the reuse page {reuse:x} (page {r - 1})");
                    if (rw[i] != tailsRw)
                        return new(Name, $"{f} (optimized): tail vmemmap page {i} is {(rw[i] ? "writable" : "read-only")}; expected {(tailsRw ? "writable" : "read-only")}");
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
