"""cvlib: the small, tested PyTorch package behind the computer-vision course notebooks.

Submodules are imported on first use (``cvlib.ops``, ``cvlib.metrics``, ...), so that
``import cvlib`` is instant and never touches the network.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "data", "ops", "models", "losses", "metrics", "explain",
    "train", "recipes", "weights", "viz", "widgets", "runtime", "exercises",
)
__all__ = list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"cvlib.{name}")
    raise AttributeError(f"module 'cvlib' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBMODULES])
