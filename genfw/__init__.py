"""genfw: a plugin-based framework for generative image models in PyTorch."""
from genfw.core.algorithm import Algorithm, CapabilityError, Context, Phase
from genfw.core.config import structure, unstructure
from genfw.core.errors import ConfigError, GenfwError
from genfw.core.nn import AuxLoss, ChunkedBatchNorm2d, SmallMapConv2d, batch_chunks, batch_chunks_exact
from genfw.registry import Entry, Registrar, Registry, get_registry, hookimpl

__version__ = "0.1.0"

__all__ = [
    "__version__", "hookimpl", "Algorithm", "CapabilityError", "Context", "Phase", "AuxLoss", "SmallMapConv2d",
    "ChunkedBatchNorm2d", "batch_chunks", "batch_chunks_exact", "Registry", "Registrar",
    "Entry", "get_registry", "structure", "unstructure", "GenfwError", "ConfigError",
]
