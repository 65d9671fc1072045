using System.Reflection;
using PropertySuite.Engine;

namespace PropertySuite.Properties.Hugetlb;

/// <summary>
/// The naming rule for the HugeTLB/HVO code: a model method tagged with a kernel
/// function is that function's name in PascalCase (leading underscores dropped), so grep works
/// both ways; and the functions of mm/hugetlb_vmemmap.c the model claims to follow are all there.
/// </summary>
[Trait("Category", "hugetlb")]
public class KernelVocabularyTests
{
    private static IEnumerable<(MethodInfo Method, KernelAttribute Tag)> Tagged() =>
        typeof(Kernel).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .SelectMany(m => m.GetCustomAttributes<KernelAttribute>().Select(a => (m, a)));

    private static string Pascal(string function) =>
        string.Concat(function.TrimStart('_').Split('_', StringSplitOptions.RemoveEmptyEntries)
            .Select(w => char.ToUpperInvariant(w[0]) + w[1..]));

    [Fact]
    public void EveryTaggedMethodIsNamedAfterItsKernelFunction()
    {
        var bad = Tagged().Where(x => Pascal(x.Tag.Function) != x.Method.Name)
            .Select(x => $"{x.Method.DeclaringType!.Name}.{x.Method.Name} tagged {x.Tag.Function}").ToList();
        Assert.True(bad.Count == 0, string.Join("\n", bad));
    }

    [Fact]
    public void TheHvoWalkerAndItsLeafActionsAreAllModelled()
    {
        var functions = Tagged().Where(x => x.Tag.File == "mm/hugetlb_vmemmap.c").Select(x => x.Tag.Function).ToHashSet();
        foreach (var f in new[] { "hugetlb_vmemmap_optimize_folio", "__hugetlb_vmemmap_optimize_folio", "hugetlb_vmemmap_optimize_folios",
                     "hugetlb_vmemmap_restore_folio", "hugetlb_vmemmap_split_folio", "vmemmap_remap_free", "vmemmap_remap_alloc",
                     "vmemmap_remap_split", "vmemmap_remap_range", "vmemmap_pmd_entry", "vmemmap_pte_entry", "vmemmap_split_pmd",
                     "vmemmap_remap_pte", "vmemmap_restore_pte", "reset_struct_pages", "alloc_vmemmap_page_list",
                     "free_vmemmap_page_list", "vmemmap_should_optimize_folio" })
            Assert.Contains(f, functions);
    }

    /// <summary>For every other kernel file the model follows, the functions it claims to model
    /// (a removal or a rename away from the kernel's name fails here).</summary>
    [Theory]
    [InlineData("mm/vmalloc.c", new[] { "vmap_range_noflush", "vunmap_range_noflush", "__vmalloc_node_range", "vfree" })]
    [InlineData("arch/arm64/mm/mmu.c", new[] { "__create_pgd_mapping", "split_pmd", "split_pud", "pgtable_range_aligned", "free_empty_tables" })]
    [InlineData("arch/arm64/mm/pageattr.c", new[] { "set_memory_ro", "set_memory_rw", "__change_memory_common" })]
    [InlineData("mm/sparse-vmemmap.c", new[] { "vmemmap_populate" })]
    [InlineData("arch/arm64/include/asm/tlbflush.h", new[] { "flush_tlb_kernel_range", "__flush_tlb_kernel_pgtable", "flush_tlb_range", "flush_tlb_mm", "flush_tlb_all" })]
    [InlineData("kernel/fork.c", new[] { "mm_alloc" })]
    public void EveryModelledFunctionOfAKernelFileIsThere(string file, string[] functions)
    {
        var tagged = Tagged().Where(x => x.Tag.File == file).Select(x => x.Tag.Function).ToHashSet();
        foreach (var f in functions) Assert.Contains(f, tagged);
    }
}
