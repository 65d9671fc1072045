// [PsProperty]: FsCheck.Xunit's [Property] with the suite's budget. A property that is one
// method with generated arguments is written with it; the runner of our own (PbtRunner) stays
// where FsCheck.Xunit cannot serve (see its header).
//
//   PS_TESTS   → MaxTest
//   PS_REPLAY  → Replay (a printed seed,gamma or seed,gamma,size)
//   PS_SEED    → the base seed; by default FNV-1a of the property's name (PbtRunner.StableHash),
//                so a plain `dotnet test` is derandomized as the PbtRunner properties are
//   PS_SHARD   → shard i/N starts from Shard.SeedFor(base, 0) of its slice
//
// FsCheck.Xunit reads MaxTest and Replay from the attribute instance, so the constructor sets
// them. A failure keeps FsCheck's own message (the shrunk arguments, "Falsifiable, after N
// tests ... (seed,gamma)") and gets two more lines: the attribute form `Replay = "seed,gamma"`
// to paste into the attribute, and the environment form `PS_REPLAY=seed,gamma dotnet test
// --filter ...` that re-runs exactly this property from a shell. They are appended by a test
// case that wraps the message bus (PsPropertyDiscoverer below).
using System.Runtime.CompilerServices;
using PropertySuite.Generators.Harness;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace PropertySuite.Properties.Infra;

[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
[XunitTestCaseDiscoverer("PropertySuite.Properties.Infra.PsPropertyDiscoverer", "PropertySuite.Properties")]
public sealed class PsPropertyAttribute : FsCheck.Xunit.PropertyAttribute
{
    /// <param name="method">Filled in by the compiler: the test method's name.</param>
    /// <param name="file">Filled in by the compiler: the file that declares it (its class, by convention).</param>
    public PsPropertyAttribute([CallerMemberName] string method = "", [CallerFilePath] string file = "")
    {
        Name = $"{Path.GetFileNameWithoutExtension(file.Replace('\\', '/').Split('/')[^1])}.{method}";
        (MaxTest, Start) = Settings(Name, Budget.FromEnvironment());
        Replay = Start.ToString();
    }

    /// <summary>MaxTest and the start of the FsCheck run of property <paramref name="name"/> under a budget.</summary>
    public static (int MaxTest, ReplayToken Start) Settings(string name, Budget budget)
    {
        ArgumentNullException.ThrowIfNull(budget);
        return (budget.Tests, budget.Replay ?? new ReplayToken(budget.Shard.SeedFor(PbtRunner.BaseSeed(name, budget), 0), PbtRunner.GoldenGamma));
    }

    /// <summary><c>Class.Method</c>: the seed derives from it and the printed filter selects it.</summary>
    public string Name { get; }

    /// <summary>Where the FsCheck run starts (what Replay is set to).</summary>
    public ReplayToken Start { get; }

    /// <summary>The lines a failure adds to FsCheck's message.</summary>
    public string ReplayNote() =>
        $"Replay this run: [PsProperty(Replay = \"{Start}\")] on the method, or from a shell:\n"
        + $"  {PbtRunner.ReplayCommandForFilter($"FullyQualifiedName~{Name}", Start.ToString(), MaxTest)}\n"
        + "(FsCheck's seed of the failing case above, given as PS_REPLAY=seed,gamma,size, replays that case alone.)";
}

/// <summary>Discovers [PsProperty] methods as FsCheck.Xunit does, as <see cref="PsPropertyTestCase"/>s.</summary>
public sealed class PsPropertyDiscoverer(IMessageSink diagnosticMessageSink) : IXunitTestCaseDiscoverer
{
    public IEnumerable<IXunitTestCase> Discover(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo factAttribute)
    {
        yield return new PsPropertyTestCase(diagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(), discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod);
    }
}

/// <summary>FsCheck.Xunit's test case, with the replay note appended to a failure's message.</summary>
public sealed class PsPropertyTestCase : FsCheck.Xunit.PropertyTestCase
{
    [Obsolete("Called by the de-serializer; should only be called by deriving classes for de-serialization purposes")]
    public PsPropertyTestCase()
    {
    }

    public PsPropertyTestCase(IMessageSink sink, TestMethodDisplay display, TestMethodDisplayOptions options, ITestMethod method)
        : base(sink, display, options, method, null)
    {
    }

    public override Task<RunSummary> RunAsync(IMessageSink diagnosticMessageSink, IMessageBus messageBus, object[] constructorArguments,
        ExceptionAggregator aggregator, CancellationTokenSource cancellationTokenSource)
    {
        var attribute = TestMethod.Method.GetCustomAttributes(typeof(PsPropertyAttribute)).Single();
        var note = ((PsPropertyAttribute)((IReflectionAttributeInfo)attribute).Attribute).ReplayNote();
        return base.RunAsync(diagnosticMessageSink, new NoteOnFailureBus(messageBus, note), constructorArguments, aggregator, cancellationTokenSource);
    }

    private sealed class NoteOnFailureBus(IMessageBus inner, string note) : IMessageBus
    {
        public bool QueueMessage(IMessageSinkMessage message)
        {
            if (message is ITestFailed f && f.Messages.Length > 0)
            {
                var messages = (string[])f.Messages.Clone();
                messages[0] = messages[0].TrimEnd('\n') + "\n" + note;
                message = new TestFailed(f.Test, f.ExecutionTime, f.Output, f.ExceptionTypes, messages, f.StackTraces, f.ExceptionParentIndices);
            }
            return inner.QueueMessage(message);
        }

        // The runner that made the inner bus disposes it.
        public void Dispose()
        {
        }
    }
}
