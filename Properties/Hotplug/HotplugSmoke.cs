using PropertySuite.Engine.Config;
using PropertySuite.Engine.Scenario;
using PropertySuite.Invariants;
using Xunit.Abstractions;

namespace PropertySuite.Properties.Hotplug;

public class HotplugSmoke(ITestOutputHelper output)
{
    [Theory]
    [MemberData(nameof(Configs))]
    public void Smoke(string config)
    {
        var arch = ArchConfig.ByName(config);
        long boot = 1L << 30, sec = arch.SectionSize;
        string a = $"0x{boot:x}";
        string repro = $"propertysuite-repro 1\nconfig {config}\nmemory 1G\ncpus 2\nhotplug {ArchConfig.FormatSize(2 * sec)}\nvariant default\n"
            + $"add_memory {a} {ArchConfig.FormatSize(sec)}\nonline_pages {a} {ArchConfig.FormatSize(sec)}\noffline_pages {a} {ArchConfig.FormatSize(sec)}\nremove_memory {a} {ArchConfig.FormatSize(sec)}\nadd_memory {a} {ArchConfig.FormatSize(sec)}\nptdump\nremove_memory {a} {ArchConfig.FormatSize(sec)}\n";
        var r = ScenarioRunner.Run(Repro.Parse(repro));
        output.WriteLine(r.ToString());
        Assert.True(r.Violation is null, r.ToString());
    }

    public static TheoryData<string> Configs => new(ArchConfig.All.Select(c => c.Name));
}
