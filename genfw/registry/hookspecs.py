"""The hooks a genfw plugin can implement."""
import pluggy

hookspec = pluggy.HookspecMarker("genfw")
hookimpl = pluggy.HookimplMarker("genfw")


@hookspec
def register_components(registry):
    """Register components, kinds, presets and benchmarks with a registrar scoped to the plugin."""


@hookspec
def register_commands(cli):
    """Add click commands to the top-level `genfw` group."""
