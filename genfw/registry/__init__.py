"""Registry, hookspecs and plugin manager."""
from genfw.registry.hookspecs import hookimpl
from genfw.registry.manager import PluginInfo, Registrar, load_plugins, loaded
from genfw.registry.registry import NETWORK_KINDS, Entry, Registry


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry with every enabled plugin's components."""
    return loaded(reload=reload).registry


__all__ = ["hookimpl", "Registrar", "PluginInfo", "Registry", "Entry", "NETWORK_KINDS",
           "get_registry", "load_plugins", "loaded"]
