// The named kernel variants a scenario can select (`variant NAME` in a repro file), with the
// invariants each buggy one is known to break. The first entry is today's correct kernel.
namespace PropertySuite.Engine.Config;

/// <summary>A named variant with what it is for.</summary>
/// <param name="Name">The name used in repro files and on the command line.</param>
/// <param name="Correct">Whether every invariant must hold under it.</param>
/// <param name="Breaks">Invariants a buggy variant is expected to break (the meta-tests' target).</param>
/// <param name="Description">One line: what differs and where it comes from.</param>
/// <param name="Variant">The switches.</param>
/// <param name="Arch">A configuration the variant needs (null: any), e.g. arm64 for BBM.</param>
/// <param name="MaxReproOps">For a buggy variant: the most operation lines its shrunk repro may
/// have (the meta-tests' bound on "short").</param>
public sealed record NamedVariant(string Name, bool Correct, IReadOnlyList<string> Breaks, string Description, KernelVariant Variant, string? Arch = null, int MaxReproOps = 8);

public static class KernelVariants
{
    private static NamedVariant Correct(string name, string description, KernelVariant v, string? arch = null) =>
        new(name, true, [], description, v with { Name = name }, arch);

    private static NamedVariant Buggy(string name, string[] breaks, string description, KernelVariant v, string? arch = null) =>
        new(name, false, breaks, description, v with { Name = name }, arch);

    private static readonly KernelVariant D = new();

    /// <summary>Every variant, in a fixed order; names are unique.</summary>
    public static IReadOnlyList<NamedVariant> All { get; } =
    [
        Correct("default", "today's kernel: HVO keeping one page (fresh head copy), bd225530a4c7 speculative get, synchronize_rcu around HVO", D),
        Correct("hvo-off", "hugetlb_free_vmemmap=off: no vmemmap optimization", D with { Hvo = HvoScheme.Off }),
        Correct("hvo-v5.14", "v5.14-v5.17 HVO: two vmemmap pages kept, 2..V-1 remapped onto page 1", D with { Hvo = HvoScheme.TwoPagesKept, HvoAllocatesHeadCopy = false }),
        Buggy("broken-free-table-keeps-parent", ["PageTableTreeWellFormed"],
            "meta-test only: free_empty_tables frees a table page but leaves the parent entry pointing at it",
            D with { BrokenFreeTableKeepsParentEntry = true }),
        Buggy("broken-vfree-leaks-page", ["FrameConservation"],
            "meta-test only: vfree does not free the last backing page of an area",
            D with { BrokenVfreeLeaksLastPage = true }),
        Buggy("broken-vunmap-skips-last-pte", ["NoLeafMapsFreeFrame"],
            "meta-test only: vunmap leaves the last PTE of an area mapped and the page is freed",
            D with { BrokenVunmapSkipsLastPte = true }),
        Buggy("broken-vunmap-skips-flush", ["TlbCoherentAfterFlush"],
            "meta-test only: vfree clears the PTEs and frees the pages without flush_tlb_kernel_range",
            D with { BrokenVunmapSkipsFlush = true }),
        Buggy("broken-synchronize-rcu-no-wait", ["RcuGracePeriodWaitsForReaders"],
            "meta-test only: synchronize_rcu returns without waiting for readers that began before it",
            D with { BrokenSynchronizeRcuNoWait = true }),
    ];

    /// <summary>Looks a variant up by name.</summary>
    /// <exception cref="ConfigException">Unknown name; the message lists the known names.</exception>
    public static NamedVariant ByName(string name) =>
        All.FirstOrDefault(v => v.Name == name)
        ?? throw new ConfigException($"unknown variant '{name}': known are {string.Join(", ", All.Select(v => v.Name))}");
}
