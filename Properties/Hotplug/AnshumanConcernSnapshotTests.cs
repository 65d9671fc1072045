// Anshuman Khandual's concern (S000), run: "Massive HugeTLB alloc/use/free test cycle using memory
// just adjacent to a memory hotplug area, which is always added and removed periodically". One
// churn script per configuration: a block is added and onlined next to boot memory, a HugeTLB
// pool fills boot memory and spills into the block, folios are allocated, freed and dissolved
// (with HVO where the configuration has it), two ZONE_DEVICE sub-sections come and go in the
// other block, and the block is offlined (dissolving its free folios) and removed, twice. The
// outcome is the first invariant it breaks, or "holds", for the correct kernel and for each of
// Muchun Song's three conditions broken on purpose:
//   1. HugeTLB pages are naturally aligned             broken by hugetlb-folio-misaligned
//   2. (read here as) the hot-plug unit is at least     broken by arm64-vmemmap-pmd-for-subsections
//      what one vmemmap leaf describes (a section,      (a sub-section's memmap in its section's
//      128M on arm64 4K: "otherwise PMD based huge      PMD block)
//      page entries could not be created for vmemmap")
//   3. HugeTLB size >= the vmemmap leaf mapping size    broken by hvo-remaps-pmd-without-split
//      (HVO splits the PMD before it remaps)
// A variant that is for one configuration only shows "n/a" elsewhere. The correct kernel must
// hold everywhere; a broken condition shows a shared leaf (NoSharedLeafEntries or
// SectionsHavePrivateLeaves) where the configuration can show it at all (HVO on arm64 needs
// arm64-hvo-stop-machine; without HVO a misaligned folio shares only writable leaves).
using System.Text;
using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Generators;
using PropertySuite.Invariants;
using PropertySuite.Properties.Infra;

namespace PropertySuite.Properties.Hotplug;

[Trait("Category", "hotplug")]
public class AnshumanConcernSnapshotTests
{
    private static readonly (string Variant, string What)[] Variants =
    [
        ("default", "today's kernel"),
        ("arm64-hvo-stop-machine", "arm64 with HVO"),
        ("hugetlb-folio-misaligned", "condition 1 broken"),
        ("arm64-vmemmap-pmd-for-subsections", "condition 2 broken"),
        ("hvo-remaps-pmd-without-split", "condition 3 broken"),
    ];

    /// <summary>The churn script of one configuration. The pool first grows to just below what
    /// boot memory holds (folios, and with HVO their head copies, up to the top of boot memory,
    /// right next to the block), then by a few more after the block is back (those spill into
    /// it, and offlining has to dissolve them).</summary>
    internal static string Churn(ArchConfig arch, string variant)
    {
        long sec = arch.SectionSize, boot = 2 * sec < (256L << 20) ? 256L << 20 : 2 * sec;
        var k = Engine.Kernel.Boot(arch, new MachineConfig(boot, 2, 2 * sec));
        // The largest HugeTLB size that fits twice in a section.
        long size = k.Hugetlb.Hstates.Select(h => h.Size).Where(z => z <= sec / 2).Max();
        long pages = size >> arch.PageShift;
        long below = Math.Min(124, k.Mem.Buddy.NrFreePages * 9 / 10 / (pages + 2)); // nr_hugepages of a line is at most 128
        string b0 = $"0x{boot:x} {ArchConfig.FormatSize(sec)}", s = ArchConfig.FormatSize(size);
        string d0 = $"0x{boot + sec:x} 2M", d1 = $"0x{boot + sec + (2L << 20):x} 2M";
        return $"propertysuite-repro 1\nconfig {arch.Name}\nmemory {ArchConfig.FormatSize(boot)}\ncpus 2\nhotplug {ArchConfig.FormatSize(2 * sec)}\nvariant {variant}\n"
            + $"add_memory {b0}\nonline_pages {b0}\nhugetlb_pool {s} {below}\nf1 = hugetlb_alloc {s}\nf2 = hugetlb_alloc {s}\n"
            + $"hugetlb_free f1\ndissolve f1\nmemremap_pages {d0}\nmemremap_pages {d1}\noffline_pages {b0}\nremove_memory {b0}\n"
            + $"memunmap_pages {d0}\nadd_memory {b0}\nonline_pages {b0}\nhugetlb_pool {s} {below + 4}\nhugetlb_free f2\ndissolve f2\n"
            + $"offline_pages {b0}\nremove_memory {b0}\nmemunmap_pages {d1}\n";
    }

    [Fact]
    public void OutcomePerConfigurationAndCondition()
    {
        var sb = new StringBuilder("# Anshuman Khandual's concern (S000): HugeTLB churn next to a block added and removed periodically\n");
        sb.Append("# rows: configuration; columns: ").Append(string.Join("; ", Variants.Select(v => $"{v.Variant} ({v.What})"))).Append('\n');
        foreach (var arch in ArchConfig.All)
        {
            sb.Append(arch.Name).Append('\n');
            foreach (var (name, _) in Variants)
            {
                var v = KernelVariants.ByName(name);
                string outcome;
                if (!ScenarioGenerator.Allows(v, arch)) outcome = $"n/a (a variant for {v.Arch})";
                else
                {
                    var r = ScenarioRunner.Run(Repro.Parse(Churn(arch, name)));
                    outcome = r.Violation is null
                        ? $"holds ({r.Reached.GetValueOrDefault("memory_hotplug.remove_memory.Ok")} of 2 removes, {r.Reached.GetValueOrDefault("memory_hotplug.offline_pages.EBUSY")} offline EBUSY, {r.Reached.GetValueOrDefault("hugetlb.dissolved")} folios dissolved)"
                        : $"{r.FailedInvariant} at step {r.Step}";
                    if (v.Correct) Assert.True(r.Violation is null, $"{name} on {arch.Name}: {r}");
                }
                sb.Append($"  {name,-36} {outcome}\n");
            }
        }
        Snapshot.Verify("anshuman-concern", sb.ToString());
    }
}
