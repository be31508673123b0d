"""Hook implementations of the `lis` plugin."""
from genfw import hookimpl


@hookimpl
def register_components(registry):
    """Layers, the LIS stack and wrapper, reference networks, algorithms, presets, benchmark."""
    from genfw.plugins.lis import algorithms, bench, layers, module, networks, presets

    for part in (layers, module, networks, algorithms, presets, bench):
        part.register(registry)
