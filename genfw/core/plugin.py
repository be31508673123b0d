"""The `core` plugin: paper-independent datasets, masks, losses, schedulers, landmarks, metrics."""
from genfw import hookimpl


@hookimpl
def register_components(registry):
    """Register the core's own components (each area module has a `register` function)."""
    import importlib

    for area in ("data", "masks", "losses", "schedulers", "weights", "landmarks", "metrics", "gan", "inpaint_metrics",
                 "fidelity", "adapters", "eval", "distributed"):
        try:
            module = importlib.import_module(f"genfw.core.{area}")
        except ModuleNotFoundError as exc:
            if exc.name == f"genfw.core.{area}":
                continue  # area not present in this build
            raise
        module.register(registry)
