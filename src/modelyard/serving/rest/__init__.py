"""The REST adapter: Open Inference Protocol, Triton's repository extension, KServe V1."""

from modelyard.serving.rest.app import RestApp

__all__ = ["RestApp"]
