"""The serving core: protocol-neutral data plane, model manager, batching, cache, metrics.

Adapters live in ``serving/rest`` and ``serving/grpc``; both call one :class:`DataPlane`.
"""

from __future__ import annotations

from modelyard.registry import Registry
from modelyard.serving.dataplane import DataPlane
from modelyard.serving.executor import InferencePool
from modelyard.serving.manager import ModelManager
from modelyard.serving.metrics import ServingMetrics
from modelyard.settings import ServingSettings

__all__ = ["DataPlane", "InferencePool", "ModelManager", "ServingMetrics", "build_dataplane"]


def build_dataplane(
    registry: Registry, settings: ServingSettings, pool: InferencePool, load: bool = True
) -> DataPlane:
    """A data plane over every model in ``registry``, loaded and warmed up (unless ``load``
    is false)."""
    metrics = ServingMetrics()
    manager = ModelManager(registry, settings, pool)
    if load:
        manager.load_all()
    dataplane = DataPlane(manager, settings, metrics)
    metrics.loaded_models.set_function(
        lambda: sum(1 for slot in manager.slots() if slot.state == "READY")
    )
    return dataplane
