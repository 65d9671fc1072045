using PropertySuite.Engine;
using PropertySuite.Engine.Config;

namespace PropertySuite.Invariants;

/// <summary>
/// Read through vmemmap with the kernel's own helpers, every HugeTLB folio looks like one
/// compound page: its head reads PageHead, and every tail — including the fake heads that HVO's
/// aliasing creates at each multiple of PAGE_SIZE / sizeof(struct page) — reads PageTail, not
/// PageHead, and compound_head() resolves it to the real head. This is what the kernel's selftest
/// tools/testing/selftests/mm/hugepage-vmemmap.c checks from user space through /proc/kpageflags
/// (head: KPF_HEAD, tails: KPF_TAIL). Source: include/linux/page-flags.h page_fixed_fake_head,
/// _compound_head, PageHead; Documentation/mm/vmemmap_dedup.rst
/// Enforced by HVO remapping only whole pages of identical tails, by the hugetlb_optimize_vmemmap
/// static key that enables the fake-head check, and by reset_struct_pages on restore.
/// Folios still being allocated (before prep_compound_page has run) are not checked.
/// </summary>
public sealed class CompoundHeadResolvesRealHead : IInvariant
{
    public string Name => nameof(CompoundHeadResolvesRealHead);
    public string Claim => "through vmemmap every folio's head reads PageHead and every tail (fake heads included) reads PageTail with compound_head = the real head";
    public string Source => "include/linux/page-flags.h; tools/testing/selftests/mm/hugepage-vmemmap.c; vmemmap_dedup.rst";

    public Violation? Check(IKernelView k)
    {
        var v = k.PeekView;
        int s = k.Arch.StructPagesPerVmemmapPage;
        foreach (var f in k.Hugetlb.AllFoliosByPfn())
        {
            if (f.State == FolioState.Allocating) continue;
            ulong head = k.Hugetlb.FolioPage(f);
            if (!k.PageFlags.PageHead(v, head))
                return new(Name, $"{f}: the head struct page at {head:x} does not read PageHead ({v.Read(head)})");
            // A vmemmap page wholly inside the folio and without the head gives the same answers
            // wherever it is mapped: check each frame once.
            var checkedFrames = new HashSet<long>();
            long end = f.HeadPfn + f.NrPages;
            for (long pageFirst = f.HeadPfn - f.HeadPfn % s; pageFirst < end; pageFirst += s)
            {
                long from = Math.Max(pageFirst, f.HeadPfn + 1), to = Math.Min(end, pageFirst + s);
                if (from >= to) continue;
                long? frame = k.FrameOf(k.Arch.PfnToPage(pageFirst), out _);
                bool whole = pageFirst > f.HeadPfn && pageFirst + s <= end;
                if (whole && frame is { } seen && !checkedFrames.Add(seen)) continue;
                bool uniform = frame is { } mapped && k.PeekFrameContent(mapped).IsUniform;
                for (long p = from; p < to; p++)
                {
                    // In a uniform page every slot but the first reads the same (only slot 0 can be a fake head).
                    if (uniform && p > pageFirst + 1 && p > from) break;
                    if (Bad(k, v, head, p) is { } why) return new(Name, $"{f}: subpage {p - f.HeadPfn} (pfn {p:x}, struct page {k.Arch.PfnToPage(p):x}) {why}");
                }
            }
        }
        return null;
    }

    private static string? Bad(IKernelView k, VmemmapView v, ulong head, long pfn)
    {
        ulong page = k.Arch.PfnToPage(pfn);
        if (k.PageFlags.PageHead(v, page)) return $"reads PageHead ({v.Read(page)}; hugetlb_optimize_vmemmap_key {k.PageFlags.HugetlbOptimizeVmemmapKey})";
        if (!k.PageFlags.PageTail(v, page)) return $"is not PageTail ({v.Read(page)})";
        ulong ch = k.PageFlags.CompoundHead(v, page);
        if (ch != head) return $"compound_head is {ch:x}, not the head {head:x}";
        return null;
    }
}
