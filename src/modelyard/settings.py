"""One ``Settings`` object for the whole tool.

Precedence, highest first: a CLI flag (passed as a keyword to :meth:`Settings.load`), an
environment variable (``MODELYARD_`` prefix, ``__`` between nested sections, e.g.
``MODELYARD_STORE__BUSY_TIMEOUT_S=10``), the config file, the default.

The config file is TOML: ``MODELYARD_CONFIG`` names it; otherwise ``modelyard.toml`` in the
current directory is read when it exists. Its keys are the field names, sections as tables::

    home = "/srv/modelyard"
    database_url = "postgresql+psycopg://modelyard@db/modelyard"

    [store]
    busy_timeout_s = 10
"""

from __future__ import annotations

import getpass
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from modelyard.errors import ConfigError

CONFIG_ENV = "MODELYARD_CONFIG"
DEFAULT_CONFIG_FILE = Path("modelyard.toml")


class _Section(BaseModel):
    """A table of the config file: a key it does not know is an error, not ignored (a
    misspelled ``aproval = true`` must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class StoreSettings(_Section):
    """How modelyard talks to its database."""

    connect_timeout_s: float = Field(5.0, gt=0, description="give up connecting after this long")
    busy_timeout_s: float = Field(
        30.0, gt=0, description="SQLite: wait this long for another writer to finish"
    )
    migrate_on_start: bool = Field(True, description="apply pending schema migrations on open")


class RegistrySettings(_Section):
    """How models are registered."""

    sample_rows: int = Field(
        1000, gt=0, description="reference rows used to check the model and infer its outputs"
    )
    example_rows: int = Field(5, gt=0, description="rows kept as the input example")


class ModelServingSettings(_Section):
    """How one model is served; ``serving.models.NAME`` overrides the defaults per model."""

    max_batch_size: int = Field(
        1, ge=1, description="rows per batch; 1 turns dynamic batching off"
    )
    max_delay_ms: float = Field(
        2.0, ge=0, description="longest a request waits for others, from the first queued"
    )
    max_queue: int = Field(1024, ge=1, description="requests waiting per version before 503")
    cache_entries: int = Field(0, ge=0, description="response cache size; 0 turns it off")
    onnx_threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads")
    outputs: list[str] | None = Field(
        None, description="outputs answered when a request names none; default: all"
    )


class ServingSettings(_Section):
    """The inference server."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    grpc_port: int = Field(8081, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="server processes sharing the ports")
    inference_threads: int = Field(2, ge=1, description="threads running models per process")
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0, description="larger requests get 413")
    max_tensor_elements: int = Field(
        64 * 1024 * 1024, gt=0, description="largest tensor a request may declare"
    )
    drain_timeout_s: float = Field(30.0, ge=0, description="SIGTERM waits this long for work")
    cpu_scheduling: Literal["batch", "normal"] = Field(
        "batch",
        description="Linux scheduling policy of the server's threads. 'batch' (SCHED_BATCH): a "
        "thread that is woken (the model thread by the event loop, the loop by the model "
        "thread's answer) waits for the running one to block instead of preempting it and "
        "then waiting for the GIL it holds; 'normal': the OS default, for a server that shares "
        "its cores with latency-critical processes",
    )
    defaults: ModelServingSettings = Field(default_factory=ModelServingSettings)
    models: dict[str, ModelServingSettings] = Field(default_factory=dict)

    def for_model(self, name: str) -> ModelServingSettings:
        return self.models.get(name, self.defaults)


class NotifierSettings(_Section):
    """Where alert notifications go; each is retried until delivered."""

    webhook_urls: list[str] = Field(default_factory=list, description="POST JSON to each")
    alertmanager_url: str | None = Field(
        None, description="Alertmanager base URL; alerts go to its v2 API (/api/v2/alerts)"
    )
    log: bool = Field(True, description="also write each notification to the server log")
    timeout_s: float = Field(5.0, gt=0, description="per delivery attempt")
    max_attempts: int = Field(10, ge=1, description="then the notification is given up")
    retention_days: float = Field(
        30.0, gt=0, description="delivered and given-up notifications are kept this long"
    )


class MonitoringSettings(_Section):
    """Live monitoring of served traffic (DESIGN.md §4 and §5)."""

    enabled: bool = Field(True, description="observe requests into window profiles")
    window_s: float = Field(60.0, gt=0, description="length of a monitoring window")
    log_sample_rate: float = Field(
        1.0, ge=0, le=1, description="share of requests written to the prediction log"
    )
    log_sink: Literal["database", "parquet"] = Field(
        "database", description="the prediction log goes to the store or to Parquet files"
    )
    log_retention_days: float = Field(30.0, gt=0, description="older log records are removed")
    journal_max_bytes: int = Field(
        256 * 1024 * 1024, gt=0,
        description="local spool for records the database could not take; full → drop, counted",
    )
    alpha: float = Field(0.01, gt=0, lt=1, description="false-alarm rate per feature and window")
    drift_share: float = Field(0.5, gt=0, le=1, description="share of drifted features = drift")
    rules_file: Path | None = Field(None, description="alert rules in YAML, added to defaults")
    notifiers: NotifierSettings = Field(default_factory=NotifierSettings)


class TriggerSettings(_Section):
    """What starts a retrain of one model besides ``modelyard retrain``."""

    alerts: list[str] = Field(
        default_factory=lambda: ["DatasetDrift", "AccuracyDrop"],
        description="alert rules whose firing starts a retrain; add LatencyP99High or "
        "ErrorRateHigh to retrain on an SLA breach",
    )
    schedule: str | None = Field(
        None, description="cron expression (UTC), e.g. '0 3 * * 1' for Mondays at 03:00"
    )
    cooldown_s: float = Field(
        3600.0, ge=0, description="after a run ends, triggers wait this long before the next"
    )


class RetrainSettings(_Section):
    """How one model is retrained; ``lifecycle.models.NAME`` in the config file."""

    entry_point: str | list[str] = Field(
        ..., description="'package.module:function' or a command (see lifecycle.training)"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="passed to the entry point")
    workdir: Path | None = Field(
        None, description="where the entry point runs and is importable; default: the "
        "current directory"
    )
    timeout_s: float = Field(3600.0, gt=0, description="a training run is stopped after this")
    data_days: float = Field(
        30.0, gt=0, description="train on predictions of the last N days joined with labels"
    )
    include_reference: bool = Field(
        True, description="append the champion's reference data to the logged rows"
    )
    holdout_share: float = Field(
        0.3, gt=0, lt=1, description="the newest share of labelled rows, kept out of "
        "training for the gate"
    )
    gate: dict[str, Any] = Field(
        default_factory=dict,
        description="metrics, min_improvement, max_regression, min_rows (lifecycle.gate)",
    )
    rollout: dict[str, Any] = Field(
        default_factory=lambda: {"strategy": "canary"},
        description="the rollout a passing candidate starts: strategy, steps, "
        "step_duration, analysis, sticky (as modelyard rollout start)",
    )
    approval: bool = Field(
        False, description="a passing candidate waits for `modelyard approve` before its rollout"
    )
    trust_pickle: bool = Field(
        False, description="register a pickled (joblib) model the entry point writes"
    )
    triggers: TriggerSettings = Field(default_factory=TriggerSettings)


class LifecycleSettings(_Section):
    """Triggers, retraining runs and their evaluation gate (DESIGN.md §1 step 5)."""

    enabled: bool = Field(True, description="the server's primary worker watches triggers")
    poll_s: float = Field(5.0, gt=0, description="how often triggers are checked")
    runs_dir: Path | None = Field(
        None, description="training runs' data, models and logs; default: HOME/runs"
    )
    models: dict[str, RetrainSettings] = Field(default_factory=dict)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MODELYARD_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(Path(".modelyard"), description="folder of the embedded defaults")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite at HOME/modelyard.db"
    )
    artifacts_uri: str | None = Field(
        None, description="fsspec URL of the artifact root; default: HOME/artifacts"
    )
    actor: str | None = Field(None, description="who changes are recorded as; default: OS user")
    store: StoreSettings = Field(default_factory=StoreSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _config_file_source(settings_cls)

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Settings from flags (``overrides``; ``None`` means not given), env, file, defaults."""
        given = {key: value for key, value in overrides.items() if value is not None}
        try:
            return cls(**given)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "settings"
            raise ConfigError(f"invalid setting {where}: {first['msg']}") from None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'modelyard.db').resolve()}"

    @property
    def resolved_artifacts_uri(self) -> str:
        if self.artifacts_uri:
            return self.artifacts_uri
        return str((self.home / "artifacts").resolve())

    @property
    def cache_dir(self) -> Path:
        """Where work worth keeping between runs lives, e.g. drift null tables (``cache/nulls``)."""
        return self.home / "cache"

    @property
    def resolved_runs_dir(self) -> Path:
        return self.lifecycle.runs_dir or self.home / "runs"

    @property
    def resolved_actor(self) -> str:
        if self.actor:
            return self.actor
        try:
            return getpass.getuser()
        except (KeyError, OSError):  # no passwd entry, e.g. in some containers
            return f"uid:{os.getuid()}"


def _config_file_source(settings_cls: type[BaseSettings]) -> PydanticBaseSettingsSource:
    named = os.environ.get(CONFIG_ENV)
    path = Path(named) if named else DEFAULT_CONFIG_FILE
    if not path.is_file():
        if named:
            raise ConfigError(f"config file {path} (from {CONFIG_ENV}) does not exist")
        return InitSettingsSource(settings_cls, init_kwargs={})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return InitSettingsSource(settings_cls, init_kwargs=data)
