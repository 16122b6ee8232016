"""modelyard: register, serve, monitor and roll out machine-learning models in one tool.

>>> import modelyard
>>> modelyard.register  # doctest: +ELLIPSIS
<function register at ...>
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.api import Predictor, load, open_registry, register
    from modelyard.client import Client
    from modelyard.settings import Settings

try:
    __version__ = version("modelyard")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Client", "Predictor", "Settings", "__version__", "load", "open_registry", "register"
]

_LAZY = {
    "Client": "modelyard.client",
    "Predictor": "modelyard.api",
    "load": "modelyard.api",
    "open_registry": "modelyard.api",
    "register": "modelyard.api",
    "Settings": "modelyard.settings",
}


def __getattr__(name: str) -> Any:
    # Imported on first use so that `modelyard --help` does not load scikit-learn.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
