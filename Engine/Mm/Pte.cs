// Page-table entry values: pte_t / pmd_t / pud_t as the model stores them.
//
// One 64-bit value per entry, like the kernel: kind (none, table, leaf), the output frame, the
// write permission, the execute permission (clear: NX / PXN, as PAGE_KERNEL is) and the arm64
// contiguous hint. The encoding is the model's own; only the
// meaning follows the architectures (a leaf at PMD/PUD level is a block / huge page).
namespace PropertySuite.Engine.Mm;

public enum PteKind : byte { None = 0, Table = 1, Leaf = 2 }

/// <summary>A page-table entry value. Immutable; compare with ==.</summary>
public readonly record struct Pte(ulong Raw)
{
    private const ulong KindMask = 0x3;
    private const ulong WriteBit = 1UL << 2;
    private const ulong ContBit = 1UL << 3;
    private const ulong ExecBit = 1UL << 4;
    private const int PfnShift = 8;

    public static readonly Pte None = new(0);

    /// <summary>pmd_populate_kernel / pud_populate: an entry pointing at a lower table.</summary>
    public static Pte MkTable(long tablePfn) => new(((ulong)tablePfn << PfnShift) | (ulong)PteKind.Table);

    /// <summary>pfn_pte / pfn_pmd with PAGE_KERNEL (writable) or PAGE_KERNEL_RO, executable only
    /// when <paramref name="exec"/> (PAGE_KERNEL_EXEC / PAGE_KERNEL_ROX).</summary>
    public static Pte MkLeaf(long pfn, bool writable, bool cont = false, bool exec = false) =>
        new(((ulong)pfn << PfnShift) | (ulong)PteKind.Leaf | (writable ? WriteBit : 0) | (cont ? ContBit : 0) | (exec ? ExecBit : 0));

    public PteKind Kind => (PteKind)(Raw & KindMask);
    public bool IsNone => Kind == PteKind.None;
    public bool IsTable => Kind == PteKind.Table;
    public bool IsLeaf => Kind == PteKind.Leaf;
    public long Pfn => (long)(Raw >> PfnShift);
    public bool Writable => (Raw & WriteBit) != 0;
    public bool Cont => (Raw & ContBit) != 0;
    /// <summary>Whether the CPU may execute through this leaf (no NX / PXN).</summary>
    public bool Exec => (Raw & ExecBit) != 0;

    public Pte WithWritable(bool writable) => new(writable ? Raw | WriteBit : Raw & ~WriteBit);
    public Pte WithExec(bool exec) => new(exec ? Raw | ExecBit : Raw & ~ExecBit);
    /// <summary>The same permissions and hints for another output frame (a split block's parts).</summary>
    public Pte WithPfn(long pfn) => new((Raw & ((1UL << PfnShift) - 1)) | ((ulong)pfn << PfnShift));

    public override string ToString() => Kind switch
    {
        PteKind.None => "none",
        PteKind.Table => $"table({Pfn:x})",
        _ => $"leaf({Pfn:x},{(Writable ? "RW" : "RO")}{(Exec ? ",X" : "")}{(Cont ? ",CONT" : "")})",
    };
}
