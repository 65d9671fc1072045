// include/linux/page_ref.h page_ref_add_unless and the speculative-get paths built on it
// (folio_try_get_rcu, get_page_unless_zero), as step functions.
//
// The primitive has two kernel-visible steps, because the fix of bd225530a4c7 depends on what
// happens between them: (1) read the refcount (and, with the fix, check for a fake head) inside
// rcu_read_lock; (2) the atomic add-unless, then rcu_read_unlock. HVO's synchronize_rcu cannot
// complete while a CPU is between (1) and (2), so the mapping a CPU checked is the mapping it
// writes through.
//
// The atomic: x86 atomic_add_unless is a cmpxchg loop that issues no store when the value
// equals u. arm64 with LSE uses a CAS, which needs write permission even when the comparison
// fails (Will Deacon, Nov 2024): on a read-only mapping it faults either way.
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.PageCache;

/// <summary>Result holder for a multi-step primitive (iterators cannot return values).</summary>
public sealed class RefResult
{
    public bool Got { get; set; }
}

public static class PageRef
{
    /// <summary>page_ref_add_unless(page, nr, u) as steps; sets <paramref name="result"/>.Got.</summary>
    public static IEnumerable<StepStatus> PageRefAddUnless(Kernel k, ExecContext ctx, ulong page, int nr, int u, RefResult result, string who)
    {
        result.Got = false;
        var flavour = k.Variant.PageRef.SpeculativeGet;
        bool fixedFlavour = flavour == SpeculativeGet.Bd225530;
        if (fixedFlavour) k.Rcu.RcuReadLock(ctx);

        // Step 1: the read (and, fixed: !page_is_fake_head(page) && page_ref_count(page) != u).
        bool proceed = k.Mmu.ReadStructPage(ctx, page, out var sp);
        if (proceed && fixedFlavour)
            proceed = !k.PageFlags.PageIsFakeHead(k.PageFlags.View(ctx), page) && sp.Refcount != u;
        yield return StepStatus.After("page_ref_count");

        // Step 2: atomic_add_unless(&page->_refcount, nr, u).
        if (proceed)
            result.Got = AtomicAddUnless(k, ctx, page, nr, u, who);
        if (fixedFlavour) k.Rcu.RcuReadUnlock(ctx);
        if (result.Got)
        {
            ulong head = k.PageFlags.CompoundHead(k.PageFlags.PeekView, page); // evidence: what the pointer was at this moment
            k.Filemap.RefAdds.Add(new RefAdd(k.Log.StepCount, ctx.CpuId, page, head, who));
            k.SpeculativeRefs.Take(ctx, k.Arch.PageToPfn(page), who, k.Log.StepCount);
            if (flavour == SpeculativeGet.DropOnMismatch && head != page)
            {
                // Muchun Song (S001): the genuine head differs: drop the reference (on the
                // genuine head, which is what the alias incremented) and fail.
                k.Filemap.FolioPut(ctx, head, who + " (drop on mismatch)");
                result.Got = false;
                k.Log.Note("spec.drop_on_mismatch");
            }
        }
        yield return StepStatus.After(who);
    }

    /// <summary>The atomic itself, one instruction: see the file header for x86 vs arm64.</summary>
    private static bool AtomicAddUnless(Kernel k, ExecContext ctx, ulong page, int nr, int u, string who)
    {
        bool casNeedsWrite = k.Arch.Arch == Arch.Arm64;
        if (!k.Mmu.Translate(ctx, page, write: true, out long frame, out bool writable)) return false;
        var content = k.StructPages.FrameContent(frame);
        int slot = k.StructPages.StructPageSlot(page);
        var sp = content.Read(slot);
        if (sp.Refcount == u && !casNeedsWrite) return false;
        if (!writable)
        {
            k.Log.RecordFault(FaultKind.WriteToReadOnly, ctx, page,
                $"{who}: atomic_add_unless on the refcount of struct page {page:x} (pfn {k.Arch.PageToPfn(page):x}) through read-only vmemmap frame {frame:x}");
            return false;
        }
        if (sp.Refcount == u) return false;
        sp.Refcount += nr;
        content.Write(slot, sp);
        return true;
    }
}
