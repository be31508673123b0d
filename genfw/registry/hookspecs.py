"""The hooks a genfw plugin can implement, and the version of that plugin API.

API_VERSION is semver for what plugins see (these hooks, the Registrar, the names in `genfw.api`):
a minor bump adds, a major bump removes or changes. A hook on its way out keeps working for one
major version with ``@hookspec(warn_on_impl=DeprecationWarning(...))``: pluggy then warns when a
plugin implementing it is registered, and `genfw plugins` shows the warning on that plugin's row.
"""
import pluggy

API_VERSION = "1.1"  # 1.1: SmallMapConv2d, ChunkedBatchNorm2d, batch_chunks, batch_chunks_exact

hookspec = pluggy.HookspecMarker("genfw")
hookimpl = pluggy.HookimplMarker("genfw")


@hookspec
def register_components(registry):
    """Register components, kinds, presets and benchmarks with a registrar scoped to the plugin."""


@hookspec
def register_commands(cli):
    """Add click commands to the top-level `genfw` group."""
