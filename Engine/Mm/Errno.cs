namespace PropertySuite.Engine.Mm;

/// <summary>Kernel error numbers the model returns as values (never as exceptions).</summary>
public enum Errno { Ok = 0, EPERM = 1, ENOENT = 2, EAGAIN = 11, ENOMEM = 12, EFAULT = 14, EBUSY = 16, EEXIST = 17, EINVAL = 22, ERANGE = 34, ENOTSUPP = 524 }

/// <summary>
/// An internal inconsistency of the model itself (the model's BUG_ON). Carries the evidence in
/// its message. Kernel-level failures are <see cref="Errno"/> values or recorded faults instead.
/// </summary>
public sealed class ModelBugException(string message) : Exception(message);

/// <summary>Who owns a physical frame. Every present frame has exactly one owner.</summary>
public enum FrameOwner : byte
{
    /// <summary>Not present: a hole, or a removed / not-yet-added section.</summary>
    Absent = 0,
    /// <summary>In the buddy allocator.</summary>
    Free,
    /// <summary>Kernel image, memblock reservations, other kernel data.</summary>
    Kernel,
    /// <summary>A page-table page of init_mm or of a user mm.</summary>
    PageTable,
    /// <summary>Backs vmemmap (struct pages).</summary>
    Vmemmap,
    /// <summary>Part of a HugeTLB folio (pool or in use).</summary>
    HugetlbFolio,
    /// <summary>Backs a vmalloc area.</summary>
    Vmalloc,
    /// <summary>A page-cache folio.</summary>
    PageCache,
    /// <summary>Allocated and held by a task that has not yet installed or freed it.</summary>
    InFlight,
    /// <summary>Present but not in the buddy: a hot-added memory block that is not (or no
    /// longer) online, or ZONE_DEVICE memory added by memremap_pages (Engine/Hotplug).</summary>
    Offline,
}
