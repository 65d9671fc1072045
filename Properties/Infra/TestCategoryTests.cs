using System.Reflection;

namespace PropertySuite.Properties.Infra;

/// <summary>
/// Every test class names its area as a Category trait, so that one area runs alone
/// (`dotnet test --filter Category=hugetlb`, as the kernel's `run_vmtests.sh -t hugetlb`).
/// The areas are the directories of Properties/; docs/testing.md lists them.
/// </summary>
[Trait("Category", "infra")]
public class TestCategoryTests
{
    public static readonly IReadOnlyList<string> Areas = ["cli", "core", "engine", "geometry", "harness", "hgm", "hotplug", "hugetlb", "infra", "races", "vmalloc"];

    [Fact]
    public void EveryTestClassHasOneAreaCategory()
    {
        var classes = typeof(TestCategoryTests).Assembly.GetTypes()
            .Where(t => t.GetMethods().Any(m => m.GetCustomAttributes<FactAttribute>().Any()))
            .ToList();
        Assert.NotEmpty(classes);
        foreach (var c in classes)
        {
            var areas = c.GetCustomAttributesData()
                .Where(a => a.AttributeType == typeof(TraitAttribute) && (string?)a.ConstructorArguments[0].Value == "Category")
                .Select(a => (string?)a.ConstructorArguments[1].Value)
                .Where(v => v is not null && Areas.Contains(v))
                .ToList();
            Assert.True(areas.Count == 1,
                $"{c.FullName} has {areas.Count} area categories; put [Trait(\"Category\", AREA)] on the class with one of {string.Join(", ", Areas)} (its directory)");
        }
    }
}
