// mm/vmalloc.c (v6.6): the vm_struct (VmArea) with its flags, and the read-only views
// invariants get of it and of vmalloc (IVmAreaView, IVmallocView). The per-page protection and
// unmapped record is the model's: the kernel keeps none, the page table is its only copy.

using PropertySuite.Engine.Config;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Mm;

/// <summary>vm_struct flags (include/linux/vmalloc.h).</summary>
[Flags]
public enum VmFlags
{
    None = 0,
    VmIoremap = 1 << 0,
    VmAlloc = 1 << 1,
    VmMap = 1 << 2,
    VmUninitialized = 1 << 5,
    VmNoGuard = 1 << 6,
    VmFlushResetPerms = 1 << 8,
    /// <summary>vmap: the area takes over the caller's page array, and vfree frees the pages.</summary>
    VmMapPutPages = 1 << 9,
    /// <summary>Opt in to PMD-sized mappings (since 559089e0a93d).</summary>
    VmAllowHugeVmap = 1 << 10,
    /// <summary>Opt out of PMD-sized mappings (v5.13-v5.17 policy).</summary>
    VmNoHugeVmap = 1 << 11,
}

/// <summary>What an invariant may read of one vm area.</summary>
public interface IVmAreaView
{
    /// <summary>First address (vm_struct.addr).</summary>
    ulong Addr { get; }
    /// <summary>Mapped size, without the guard page (get_vm_area_size).</summary>
    ulong Size { get; }
    /// <summary>The guard page's size: PAGE_SIZE, or 0 with VM_NO_GUARD.</summary>
    ulong GuardSize { get; }
    VmFlags Flags { get; }
    /// <summary>Whether the mapping is PAGE_KERNEL (writable) rather than read-only.</summary>
    bool Writable { get; }
    /// <summary>vm_area_page_order: the order of each backing allocation.</summary>
    int PageOrder { get; }
    /// <summary>Whether page <paramref name="i"/> should be mapped writable: the area's protection,
    /// then each change set_memory_* made to its mapping (the model's record; the kernel keeps
    /// none, the page table is its only copy).</summary>
    bool PageWritable(long i);
    /// <summary>Whether page <paramref name="i"/> should be mapped executable (as PageWritable).</summary>
    bool PageExec(long i);
    /// <summary>Whether a set_memory_* on the area returned an error: the caller has been told that
    /// the mapping and its direct-map alias may be half changed (x86 changes the vmalloc leaf
    /// before it splits the alias), and must not rely on them (the module loader frees the area).</summary>
    bool SetMemoryFailed { get; }
    /// <summary>The order-0 backing pages, one per PAGE_SIZE of Size (vm_struct.pages).</summary>
    IReadOnlyList<long> Pages { get; }
    /// <summary>Whether the area's owner took page <paramref name="i"/> out of the mapping with
    /// vunmap_range / vunmap_range_noflush (the model's record of the call; the kernel keeps none).</summary>
    bool PageUnmapped(long i);
    /// <summary>How many pages the owner has vunmap_range'd.</summary>
    long UnmappedCount { get; }
    /// <summary>For an ioremap area (VM_IOREMAP): the first frame of the physically contiguous
    /// range it maps, page i mapping IoremapPfn + i; null for an area backed by pages[].</summary>
    long? IoremapPfn { get; }
    /// <summary>Whether the task that creates the area is still mapping it (the model's record:
    /// between the steps of vmap_pages_range or ioremap_page_range, another CPU sees the area
    /// with part of its pages mapped, as it would in the kernel).</summary>
    bool Populating { get; }
}

/// <summary>What an invariant may read of vmalloc.</summary>
public interface IVmallocView
{
    /// <summary>Live vm areas by address.</summary>
    IReadOnlyList<IVmAreaView> LiveAreas { get; }
    /// <summary>Busy vmap areas that have no vm_struct yet or any more.</summary>
    IReadOnlyList<VmapArea> BusyVmapAreas { get; }
    /// <summary>Ranges freed and unmapped, whose TLB flush purge_vmap_area_lazy has not issued yet.</summary>
    IReadOnlyList<VmapArea> LazyRanges { get; }
    VmallocOptions Options { get; }
    /// <summary>[addr, addr + size + guard) of every live area created, freed or changed (flags,
    /// backing pages, protection record) in the current step, in address order.</summary>
    IReadOnlyList<(ulong Start, ulong End)> AreasChangedThisStep { get; }
}

/// <summary>A vm_struct: a reserved VA range and its backing pages.</summary>
public sealed class VmArea : IVmAreaView
{
    private const byte ProtWrite = 1, ProtExec = 2, ProtUnmapped = 4;
    private readonly byte[] _prot;
    private readonly int _pageShift;

    internal VmArea(VmapArea va, ulong size, ulong guard, VmFlags flags, bool writable, int pageOrder, int pageShift)
    {
        Va = va;
        Size = size;
        GuardSize = guard;
        Flags = flags;
        Writable = writable;
        PageOrder = pageOrder;
        _pageShift = pageShift;
        _prot = new byte[size >> pageShift];
        if (writable) Array.Fill(_prot, ProtWrite);
    }

    public bool PageWritable(long i) => (_prot[i] & ProtWrite) != 0;
    public bool PageExec(long i) => (_prot[i] & ProtExec) != 0;
    public bool PageUnmapped(long i) => (_prot[i] & ProtUnmapped) != 0;
    public long UnmappedCount { get; private set; }
    public long? IoremapPfn { get; internal set; }
    public bool Populating { get; internal set; }

    /// <summary>Records that the owner asked vunmap_range to unmap [va, va + size) of this area.</summary>
    internal void RecordUnmapped(ulong va, ulong size)
    {
        long first = (long)((va - Addr) >> _pageShift), n = (long)(size >> _pageShift);
        for (long i = Math.Max(first, 0); i < first + n && i < _prot.Length; i++)
        {
            if ((_prot[i] & ProtUnmapped) == 0) UnmappedCount++;
            _prot[i] |= ProtUnmapped;
        }
        ProtVersion++;
    }

    /// <summary>Counts the changes to the protection / unmapped record (VmAreaChanges compares it).</summary>
    internal long ProtVersion { get; private set; }

    /// <summary>Whether any page of [va, va + size) has been vunmap_range'd by the owner.</summary>
    public bool AnyUnmapped(ulong va, ulong size)
    {
        long first = (long)((va - Addr) >> _pageShift), n = (long)(size >> _pageShift);
        for (long i = Math.Max(first, 0); i < first + n && i < _prot.Length; i++)
            if ((_prot[i] & ProtUnmapped) != 0) return true;
        return false;
    }
    public bool SetMemoryFailed { get; internal set; }

    /// <summary>Records what set_memory_* made of the leaf [va, va + size) of this area.</summary>
    internal void RecordProt(ulong va, ulong size, bool writable, bool exec)
    {
        byte p = (byte)((writable ? ProtWrite : 0) | (exec ? ProtExec : 0));
        long first = (long)((va - Addr) >> _pageShift), n = (long)(size >> _pageShift);
        for (long i = first; i < first + n && i < _prot.Length; i++) _prot[i] = (byte)(p | (_prot[i] & ProtUnmapped));
        ProtVersion++;
    }

    internal VmapArea Va { get; }
    public ulong Addr => Va.VaStart;
    public ulong Size { get; }
    public ulong GuardSize { get; }
    public VmFlags Flags { get; internal set; }
    public bool Writable { get; }
    public int PageOrder { get; }
    internal List<long> PageList { get; } = new();
    public IReadOnlyList<long> Pages => PageList;
    public override string ToString() => $"vm_area [{Addr:x}, {Addr + Size:x}) {PageList.Count} pages order {PageOrder}";
}
