using PropertySuite.Engine.PageCache;

namespace PropertySuite.Engine;

public sealed partial class Kernel
{
    private Filemap? _filemap;

    /// <summary>The page cache, created on first use (it registers its frame accountant then;
    /// before that it holds no frames).</summary>
    public Filemap Filemap => _filemap ??= new Filemap(this);

    /// <summary>The page cache if any operation has used it, for observers that must not create it.</summary>
    public Filemap? FilemapIfUsed => _filemap;
}
