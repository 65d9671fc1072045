// Page-table entry values: pte_t / pmd_t / pud_t as the model stores them.
//
// One 64-bit value per entry, like the kernel: kind (none, table, leaf), the output frame, the
// write permission and the arm64 contiguous hint. The encoding is the model's own; only the
// meaning follows the architectures (a leaf at PMD/PUD level is a block / huge page).
namespace PropertySuite.Engine.Mm;

public enum PteKind : byte { None = 0, Table = 1, Leaf = 2 }

/// <summary>A page-table entry value. Immutable; compare with ==.</summary>
public readonly record struct Pte(ulong Raw)
{
    private const ulong KindMask = 0x3;
    private const ulong WriteBit = 1UL << 2;
    private const ulong ContBit = 1UL << 3;
    private const int PfnShift = 8;

    public static readonly Pte None = new(0);

    /// <summary>pmd_populate_kernel / pud_populate: an entry pointing at a lower table.</summary>
    public static Pte MkTable(long tablePfn) => new(((ulong)tablePfn << PfnShift) | (ulong)PteKind.Table);

    /// <summary>pfn_pte / pfn_pmd with PAGE_KERNEL (writable) or PAGE_KERNEL_RO.</summary>
    public static Pte MkLeaf(long pfn, bool writable, bool cont = false) =>
        new(((ulong)pfn << PfnShift) | (ulong)PteKind.Leaf | (writable ? WriteBit : 0) | (cont ? ContBit : 0));

    public PteKind Kind => (PteKind)(Raw & KindMask);
    public bool IsNone => Kind == PteKind.None;
    public bool IsTable => Kind == PteKind.Table;
    public bool IsLeaf => Kind == PteKind.Leaf;
    public long Pfn => (long)(Raw >> PfnShift);
    public bool Writable => (Raw & WriteBit) != 0;
    public bool Cont => (Raw & ContBit) != 0;

    public Pte WithWritable(bool writable) => new(writable ? Raw | WriteBit : Raw & ~WriteBit);

    public override string ToString() => Kind switch
    {
        PteKind.None => "none",
        PteKind.Table => $"table({Pfn:x})",
        _ => $"leaf({Pfn:x},{(Writable ? "RW" : "RO")}{(Cont ? ",CONT" : "")})",
    };
}
