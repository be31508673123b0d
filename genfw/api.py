"""genfw's versioned plugin API: the names a plugin may rely on, and the version they carry.

A plugin states the range it was written against in its entry-point module::

    GENFW_API = ">=1.0,<2"      # PEP 440 specifier, checked before its hooks are registered

A plugin whose range excludes ``API_VERSION`` is reported ``incompatible`` by `genfw plugins`
and skipped; the other plugins load. A plugin without ``GENFW_API`` is loaded (shown as api "?").
"""
from genfw.core.algorithm import Algorithm, CapabilityError, Context, Phase
from genfw.core.config import structure, unstructure
from genfw.core.errors import ConfigError, GenfwError
from genfw.core.nn import AuxLoss, ChunkedBatchNorm2d, SmallMapConv2d, batch_chunks, batch_chunks_exact
from genfw.registry import Entry, Registrar, Registry, get_registry, hookimpl
from genfw.registry.hookspecs import API_VERSION

__all__ = ["API_VERSION", "hookimpl", "Algorithm", "CapabilityError", "Context", "Phase", "AuxLoss",
           "SmallMapConv2d", "ChunkedBatchNorm2d", "batch_chunks", "batch_chunks_exact",
           "Registry", "Registrar", "Entry", "get_registry", "structure", "unstructure", "GenfwError",
           "ConfigError"]
