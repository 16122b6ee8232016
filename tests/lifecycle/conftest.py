"""Shared by the retraining tests: a champion trained on an old world, labelled traffic from a
new one, and a folder with training entry points that succeed, crash, hang or train badly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelyard.settings import RetrainSettings, Settings

from .._retraining import TRAINER, serve_churn


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "trainer.py").write_text(TRAINER)
    return folder


def settings_for(base: Settings, workdir: Path, **model: Any) -> Settings:
    config = {"entry_point": "trainer:train", "workdir": str(workdir), "timeout_s": 60,
              "include_reference": False, "gate": {"min_rows": 100},
              "rollout": {"strategy": "canary", "steps": "10,50,100", "step_duration": "1m"},
              **model}
    lifecycle = base.lifecycle.model_copy(update={"models": {"churn": RetrainSettings(**config)}})
    return base.model_copy(update={"lifecycle": lifecycle})


@pytest.fixture
def served(settings: Settings) -> Settings:
    """A champion trained on the old world; 600 labelled predictions from the new one."""
    return serve_churn(settings)


@pytest.fixture
def configure(served: Settings, workdir: Path) -> Callable[..., Settings]:
    """The served settings with ``[lifecycle.models.churn]`` set as the keywords say."""
    return lambda **model: settings_for(served, workdir, **model)
