"""The Python API: register and load models; open the registry a Settings object points at."""

from modelyard.api.predictor import Predictor, load
from modelyard.api.registration import register
from modelyard.api.workspace import open_registry

__all__ = ["Predictor", "load", "open_registry", "register"]
