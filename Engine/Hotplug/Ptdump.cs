// mm/ptdump.c ptdump_walk_pgd as a walker task: the generic page-table walk (walk_page_range_debug)
// over init_mm, one table per step, holding every table on its path from the root (the walk's
// stack of pointers) until it has visited the table's last entry. Since "mm/ptdump: take the
// memory hotplug lock inside ptdump_walk_pgd()" (2025; arm64 did it in ptdump_debugfs since 2020)
// the walk runs under get_online_mems(), so hot-remove (mem_hotplug_begin) cannot free a table
// under it; HotplugOptions.PtdumpWithoutGetOnlineMems walks without it.
//
// The walk covers the address range its caller gives (the kernel's st->range, walked range by
// range with walk_page_range_debug): all of the kernel's half of the address space by default,
// as arm64's ptdump_check_wx and the debugfs files do, or one range, such as the linear map or
// the vmemmap of a physical range. A table is entered only through an entry that overlaps the
// range, as walk_pgd_range skips the entries outside [start, end).
//
// Departures from the kernel: nothing is printed (PtDump.cs renders page tables for snapshots);
// the walk also takes mmap_write_lock(&init_mm) in the kernel, which the model does not have;
// a caller gives one range (the kernel's callers pass a list of them).
using PropertySuite.Engine.Mm;
using PropertySuite.Engine.Smp;

namespace PropertySuite.Engine.Hotplug;

public sealed partial class MemoryHotplug
{
    /// <summary>ptdump_walk_pgd over all of init_mm.</summary>
    public IEnumerable<StepStatus> PtdumpWalkPgd(ExecContext ctx) => PtdumpWalkPgd(ctx, InitMm.Root.BaseVa, ulong.MaxValue);

    /// <summary>ptdump_walk_pgd over init_mm's entries that overlap [first, last] (an inclusive
    /// last address, so that a range can end at the top of the address space).</summary>
    [Kernel("mm/ptdump.c", "ptdump_walk_pgd")]
    public IEnumerable<StepStatus> PtdumpWalkPgd(ExecContext ctx, ulong first, ulong last)
    {
        bool locked = !_options.PtdumpWithoutGetOnlineMems;
        if (locked) foreach (var s in GetOnlineMems(ctx)) yield return s;
        var root = InitMm.Root;
        Walkers.Hold(ctx.Task, "ptdump_walk_pgd", InitMm, root);
        var stack = new List<(PtTable Table, int Next)> { (root, 0) };
        yield return StepStatus.After("pgd_offset");
        while (stack.Count > 0)
        {
            var (t, next) = stack[^1];
            // The next table entry of t at or after `next` that overlaps the range (t may
            // meanwhile have been freed: the walk reads it anyway, which is the use-after-free
            // the lock prevents).
            int j = -1;
            if (t.Level != Config.PtLevel.Pte)
                foreach (int idx in t.TableEntryIndices)
                {
                    if (idx < next) continue;
                    ulong va = InitMm.EntryVa(t, idx);
                    if (va > last) break;
                    if (va + (InitMm.EntrySize(t) - 1) < first) continue;
                    j = idx;
                    break;
                }
            if (j < 0)
            {
                stack.RemoveAt(stack.Count - 1);
                Walkers.Release(ctx.Task, t);
                continue;
            }
            stack[^1] = (t, j + 1);
            if (!InitMm.TryGetChild(t, t.Entries[j], out var child)) continue;
            Walkers.Hold(ctx.Task, "ptdump_walk_pgd", InitMm, child);
            if (child.Level > Config.PtLevel.Pte) stack.Add((child, 0));
            yield return StepStatus.After(child.Level switch { Config.PtLevel.Pte => "ptdump_pte_entry", Config.PtLevel.Pmd => "ptdump_pmd_entry", Config.PtLevel.Pud => "ptdump_pud_entry", _ => "ptdump_p4d_entry" });
            if (child.Level == Config.PtLevel.Pte) Walkers.Release(ctx.Task, child);
        }
        if (locked) PutOnlineMems(ctx);
        yield return StepStatus.After("ptdump_walk_pgd");
    }
}
