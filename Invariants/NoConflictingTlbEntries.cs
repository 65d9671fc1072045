using PropertySuite.Engine;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Invariants;

/// <summary>
/// No CPU's TLB holds two leaf entries that both translate one address in one address space (a
/// global entry counts in every address space; an ASID-tagged one in its own), whatever their
/// sizes, contiguous-bit runs included:
/// - arm64: two such entries are a TLB conflict (Arm ARM D8.16.1, "TLB conflict abort"; the
///   result of a lookup is UNPREDICTABLE), whatever their output or permissions. This is what
///   break-before-make prevents when a block becomes a table, a table becomes a block, or the
///   contiguous bit changes: the old entry is invalidated before the new one can be cached.
///   Only a CPU with FEAT_BBM level 2 that does not report conflict aborts (BBML2_NOABORT, the
///   kernel's allow-list of 5aa4b625762e) may hold two sizes of one translation, and then only
///   when both give the same output address and permissions.
/// - every architecture: two such entries never disagree in output address or permissions,
///   since an access may use either (Intel SDM 4.10.2.3: after a page-size change without
///   invalidation "a reference to a linear address may use any of these translations"). A
///   collapse or split that keeps the frames and the permissions is harmless on x86; one that
///   remaps does not leave both.
/// Stated on the TLBs alone, not on the page tables or on pending flushes: a pair is wrong at
/// every instant, also while the path that caused it is still running.
/// Source: Arm ARM D8.16 (break-before-make, TLB conflict); arch/arm64/include/asm/cpufeature.h
/// system_supports_bbml2_noabort; Intel SDM vol. 3A 4.10.2.3; arch/x86/mm/pat/set_memory.c
/// __split_large_page (flush_tlb_all after a split, AMD erratum 383).
/// </summary>
public sealed class NoConflictingTlbEntries : IInvariant
{
    public string Name => nameof(NoConflictingTlbEntries);
    public string Claim => "no CPU's TLB holds two leaf entries translating one address (arm64: at all, unless BBML2_NOABORT and identical; every arch: never with different output or permissions)";
    public string Source => "Arm ARM D8.16 TLB conflict; Intel SDM 4.10.2.3; 5aa4b625762e (BBML2_NOABORT)";

    public Violation? Check(IKernelView k)
    {
        bool arm64 = k.Arch.Arch == Arch.Arm64;
        bool noAbort = arm64 && k.Variant.Arm64.VmemmapUpdate == VmemmapUpdate.Bbml2;
        foreach (var cpu in k.Cpus)
        {
            if (cpu.Tlb.Count < 2) continue;
            var entries = cpu.Tlb.Entries.ToArray(); // ordered by VA
            for (int i = 0; i < entries.Length; i++)
            {
                var a = entries[i];
                for (int j = i + 1; j < entries.Length && entries[j].Va < a.Va + a.Size; j++)
                {
                    var b = entries[j];
                    if (a.Asid != b.Asid && a.Asid != TlbEntry.Global && b.Asid != TlbEntry.Global) continue;
                    if (Conflict(k, a, b, arm64, noAbort) is { } why)
                        return new(Name, $"cpu{cpu.Id} TLB holds {a} and {b}, both translating {Math.Max(a.Va, b.Va):x}: {why}");
                }
            }
        }
        return null;
    }

    /// <summary>Why two overlapping entries of one address space may not coexist, or null.</summary>
    private static string? Conflict(IKernelView k, TlbEntry a, TlbEntry b, bool arm64, bool noAbort)
    {
        ulong va = Math.Max(a.Va, b.Va);
        long pa = a.PfnFor(va, k.Arch.PageShift), pb = b.PfnFor(va, k.Arch.PageShift);
        if (pa != pb) return $"different output (pfn {pa:x} and {pb:x})";
        if (a.Writable != b.Writable) return "different permissions";
        if (arm64 && !(noAbort && a.Size != b.Size))
            return "a TLB conflict on arm64 (two entries for one address; break-before-make must invalidate the old one first)";
        return null;
    }
}
