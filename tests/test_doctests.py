"""The examples in docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "modelyard.types",
    "modelyard.registry.refs",
    "modelyard.registry.signature",
    "modelyard.runtimes.python",
    "modelyard.monitoring.sketches",
    "modelyard.monitoring.profile",
    "modelyard.monitoring.drift",
    "modelyard.monitoring.calibration",
    "modelyard.monitoring.columns",
    "modelyard.monitoring.report",
    "modelyard.monitoring.html",
    "modelyard.live.windows",
    "modelyard.live.monitor",
    "modelyard.live.history",
    "modelyard.monitoring.performance",
    "modelyard.monitoring.cbpe",
    "modelyard.monitoring.multivariate",
    "modelyard.monitoring.quality",
    "modelyard.monitoring.skew",
    "modelyard.live.alert_rules",
    "modelyard.live.notifiers",
    "modelyard.live.prometheus_rules",
    "modelyard.live.journal",
    "modelyard.live.predlog",
    "modelyard.live.feedback",
    "modelyard.monitoring.nulls",
    "modelyard.monitoring.weighted",
    "modelyard.rollout.policy",
    "modelyard.rollout.stats",
    "modelyard.rollout.analysis",
    "modelyard.lifecycle.gate",
    "modelyard.lifecycle.triggers",
    "modelyard",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
