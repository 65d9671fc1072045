// Where struct-page contents live: per vmemmap frame, per slot. A struct page is never stored
// by PFN: the MMU translates its vmemmap address to a frame and slot, and this store holds what
// that frame contains, so that frames mapped twice (HVO's remap) make struct pages alias.
//
// Frames that nothing has written read as memmap_init left them (mm/mm_init.c): PG_reserved and
// refcount 1 below the end of boot reservations, all zero (free) above. A frame's contents are
// materialised on its first write, so a 64 TiB machine costs what is written.
using PropertySuite.Engine.Config;

namespace PropertySuite.Engine.Mm;

public sealed class StructPageStore(ArchConfig arch, PhysMem mem, SparseVmemmap vmemmap)
{
    private readonly Dictionary<long, VmemmapFrameContent> _frames = new();

    /// <summary>The stored contents of vmemmap frame <paramref name="frame"/>, materialised from
    /// the post-boot memmap on first use.</summary>
    public VmemmapFrameContent FrameContent(long frame)
    {
        if (_frames.TryGetValue(frame, out var c)) return c;
        c = PristineContent(frame);
        _frames[frame] = c;
        return c;
    }

    /// <summary>A frame's contents without materialising them (for observers): stored contents,
    /// or what the frame reads as if nothing wrote it.</summary>
    public VmemmapFrameContent PeekFrameContent(long frame) =>
        _frames.TryGetValue(frame, out var c) ? c : PristineContent(frame);

    /// <summary>Whether a frame's struct-page contents have been materialised (for tests).</summary>
    public bool HasFrameContent(long frame) => _frames.ContainsKey(frame);

    /// <summary>A struct page as stored in <paramref name="frame"/>, slot <paramref name="slot"/>,
    /// without materialising the frame's contents: reads cost nothing to keep.</summary>
    public StructPage ReadSlot(long frame, int slot)
    {
        if (_frames.TryGetValue(frame, out var c)) return c.Read(slot);
        return vmemmap.TryBootDescribedPfn(frame, out long firstPfn) && firstPfn + slot < mem.BootReservedEnd ? StructPage.BootReserved : default;
    }

    public void WriteSlot(long frame, int slot, in StructPage value) => FrameContent(frame).Write(slot, value);

    private VmemmapFrameContent PristineContent(long frame)
    {
        int slots = arch.StructPagesPerVmemmapPage;
        if (!vmemmap.TryBootDescribedPfn(frame, out long firstPfn)) return new VmemmapFrameContent(default);
        long reservedEnd = mem.BootReservedEnd;
        var content = new VmemmapFrameContent(firstPfn < reservedEnd ? StructPage.BootReserved : default);
        if (firstPfn < reservedEnd && firstPfn + slots > reservedEnd)
            for (long p = reservedEnd; p < firstPfn + slots; p++) content.Write((int)(p - firstPfn), default);
        return content;
    }

    /// <summary>copy_page() between two vmemmap frames' struct-page contents.</summary>
    public void CopyFrameContent(long to, long from) => _frames[to] = FrameContent(from).Clone();

    /// <summary>Drops the stored contents of a frame that leaves vmemmap (freed to the buddy).</summary>
    public void DropFrameContent(long frame) => _frames.Remove(frame);

    /// <summary>The slot of the struct page at vmemmap address <paramref name="page"/> in its frame.</summary>
    public int StructPageSlot(ulong page) => (int)((page & (ulong)(arch.PageSize - 1)) / ArchConfig.StructPageSize);
}
