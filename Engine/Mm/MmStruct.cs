// struct mm_struct (include/linux/mm_types.h), as far as the model needs it: a page table
// (mm->pgd), the lock that guards it (mm->page_table_lock) and an address-space identifier
// (mm->context.id on arm64, the PCID on x86) that tags the TLB entries of its user mappings.
// init_mm is the kernel's: its page table is swapper_pg_dir and its mappings are global (not
// tagged by any ASID), as kernel mappings are on x86-64 (_PAGE_GLOBAL) and arm64 (nG clear).
namespace PropertySuite.Engine.Mm;

public sealed class MmStruct : IMmView
{
    /// <summary>The ASID of init_mm; kernel (global) TLB entries carry it.</summary>
    public const int InitMmAsid = 0;

    public string Name { get; }
    /// <summary>mm->pgd: the root of this address space's page table.</summary>
    public PageTable Pgd { get; }
    /// <summary>mm->page_table_lock.</summary>
    public Smp.KernelLock PageTableLock { get; }
    /// <summary>The address-space identifier of the mm's non-global TLB entries.</summary>
    public int Asid { get; }

    public MmStruct(string name, PageTable pgd, int asid)
    {
        Name = name;
        Pgd = pgd;
        Asid = asid;
        PageTableLock = new Smp.KernelLock(name + ".page_table_lock");
    }

    IPageTableView IMmView.Pgd => Pgd;

    public override string ToString() => Name;
}
