"""The models a server process holds: loading, warm-up, routing by name, alias or version.

A bare name is served by its ``champion`` alias when set, else by its newest version. Every
version is warmed up (run once on its input example) before it reports ready.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np
import pandas as pd

from modelyard import runtimes
from modelyard.errors import (
    AliasNotFound,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ModelyardError,
    VersionNotFound,
    first_line,
)
from modelyard.registry import ModelRef, PackageManifest, Registry, VersionInfo
from modelyard.registry.manifest import MODEL_DIR
from modelyard.registry.signature import placeholder, to_frame
from modelyard.serving.batching import Batcher, BatchStats, Ran
from modelyard.serving.cache import ResponseCache
from modelyard.serving.executor import InferencePool
from modelyard.serving.model import ModelBatch, Prepared, ServedModel
from modelyard.serving.observe import Observer
from modelyard.serving.types import RepositoryEntry
from modelyard.settings import ModelServingSettings, ServingSettings

READY, UNAVAILABLE, LOADING = "READY", "UNAVAILABLE", "LOADING"


@dataclass
class Slot:
    """One model version in this process, whatever its state."""

    name: str
    version: int
    config: ModelServingSettings
    state: str = LOADING
    reason: str = ""
    model: ServedModel | None = None
    batcher: Batcher | None = None
    cache: ResponseCache | None = None

    @property
    def key(self) -> str:
        return f"{self.name}:{self.version}"

    @cached_property
    def labels(self) -> tuple[str, str]:
        """``(model, version)`` as the serving metrics label its series."""
        return self.name, str(self.version)

    def require_ready(self) -> ServedModel:
        if self.state != READY or self.model is None:
            why = f": {self.reason}" if self.reason else ""
            raise ModelNotReady(f"model {self.key} is {self.state.lower()}{why}")
        return self.model


@dataclass
class _Entry:
    name: str
    versions: dict[int, Slot] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)


class ModelManager:
    def __init__(
        self,
        registry: Registry,
        settings: ServingSettings,
        pool: InferencePool,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.pool = pool
        # What every batcher reports to, all set by the data plane and read at each batch,
        # so they may be set after models are loaded: a batch's statistics (metrics), and
        # the batch the model answered (live monitoring: taken by the observer on the model
        # thread, else handed over by the loop; see batching).
        self.on_batch: Callable[[Slot, BatchStats], None] | None = None
        self.on_run: Ran | None = None
        self.observer: Observer | None = None
        self._models: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        # (model as written, version) → slot: the hot path skips parsing names and aliases.
        self._routes: dict[tuple[str, str | None], Slot] = {}

    # -- loading -------------------------------------------------------------------------

    def load_all(self) -> None:
        for info in self.registry.list_models():
            self.load_model(info.name)

    def load_model(self, name: str) -> list[Slot]:
        """(Re)load every live version of ``name`` from the registry; picks up new versions
        and moved aliases. Versions already loaded and unchanged are kept as they are."""
        model = self.registry.get_model(name)
        versions = self.registry.list_versions(name)
        entry = self._models.get(model.name) or _Entry(model.name)
        config = self.settings.for_model(model.name)
        slots: dict[int, Slot] = {}
        for info in versions:
            current = entry.versions.get(info.version)
            if current is not None and current.state == READY:
                slots[info.version] = current
                continue
            slots[info.version] = self._load_version(info, config)
        with self._lock:
            entry.versions = slots
            entry.aliases = dict(model.aliases)
            self._models[model.name] = entry
            self._routes = {}
        return list(slots.values())

    def unload_model(self, name: str) -> None:
        with self._lock:
            entry = self._models.get(name)
            if entry is None:
                raise ModelNotFound(f"model {name!r} is not loaded")
            for slot in entry.versions.values():
                slot.state, slot.reason = UNAVAILABLE, "unloaded"
                slot.model, slot.batcher, slot.cache = None, None, None

    def _load_version(self, info: VersionInfo, config: ModelServingSettings) -> Slot:
        slot = Slot(info.name, info.version, config)
        try:
            directory = self.registry.artifacts.open_dir(info.artifact_uri)
            manifest = PackageManifest.read(directory, expected_sha256=info.manifest_sha256)
            flavor = manifest.flavor
            if flavor.name == "onnx":
                options = {**flavor.options, "intra_op_num_threads": config.onnx_threads}
                flavor = flavor.model_copy(update={"options": options})
            runtime = runtimes.load_runtime(directory / MODEL_DIR, flavor)
            served = ServedModel(info.name, info.version, manifest, runtime)
            _warm_up(served)
        except ModelyardError as exc:
            slot.state, slot.reason = UNAVAILABLE, first_line(str(exc))
            return slot
        except Exception as exc:  # a model that cannot even run its own example
            slot.state = UNAVAILABLE
            slot.reason = f"warm-up failed: {first_line(str(exc)) or type(exc).__name__}"
            return slot
        slot.model = served
        if config.max_batch_size > 1 or not runtime.batch:
            slot.batcher = Batcher(
                served,
                self.pool,
                max_batch_size=config.max_batch_size if runtime.batch else 1,
                max_delay_s=config.max_delay_ms / 1000.0,
                max_queue=config.max_queue,
                on_batch=partial(self._batched, slot),
                on_run=self._ran,
                observer=self._observer,
            )
        if config.cache_entries:
            slot.cache = ResponseCache(config.cache_entries)
        slot.state = READY
        return slot

    def _ran(self, model: ServedModel, parts: list[Prepared], data: ModelBatch,
             outputs: dict[str, np.ndarray], finished: float) -> None:
        if self.on_run is not None:
            self.on_run(model, parts, data, outputs, finished)

    def _observer(self) -> Observer | None:
        return self.observer

    def _batched(self, slot: Slot, stats: BatchStats) -> None:
        if self.on_batch is not None:
            self.on_batch(slot, stats)

    # -- routing -------------------------------------------------------------------------

    def resolve(self, model: str, version: str | None = None) -> Slot:
        slot = self._routes.get((model, version))
        if slot is None:
            slot = self._resolve(model, version)
            if len(self._routes) < 10_000:  # names come from callers: keep the memo bounded
                self._routes[(model, version)] = slot
        return slot

    def _resolve(self, model: str, version: str | None) -> Slot:
        ref = ModelRef.parse(model)
        entry = self._models.get(ref.name)
        if entry is None:
            raise ModelNotFound(f"model {ref.name!r} is not served here")
        if version is not None:
            if not version.isdigit():
                raise InvalidInput(f"version {version!r} is not a whole number")
            number = int(version)
        elif ref.version is not None:
            number = ref.version
        elif ref.alias is not None:
            if ref.alias not in entry.aliases:
                raise AliasNotFound(f"model {ref.name!r} has no alias {ref.alias!r}")
            number = entry.aliases[ref.alias]
        elif "champion" in entry.aliases:
            number = entry.aliases["champion"]
        elif entry.versions:
            number = max(entry.versions)
        else:
            raise VersionNotFound(f"model {ref.name!r} has no versions")
        slot = entry.versions.get(number)
        if slot is None:
            raise VersionNotFound(f"model {ref.name!r} has no version {number}")
        return slot

    def names(self) -> list[str]:
        return sorted(self._models)

    def aliases(self, name: str) -> dict[str, int]:
        """The aliases of ``name`` as this process last loaded them."""
        entry = self._models.get(name)
        return {} if entry is None else dict(entry.aliases)

    def versions(self, name: str) -> list[Slot]:
        entry = self._models.get(name)
        return [] if entry is None else [entry.versions[v] for v in sorted(entry.versions)]

    def slots(self) -> list[Slot]:
        return [slot for name in self.names() for slot in self.versions(name)]

    def index(self) -> list[RepositoryEntry]:
        return [
            RepositoryEntry(s.name, str(s.version), s.state, s.reason) for s in self.slots()
        ]


def _warm_up(served: ServedModel) -> None:
    """Run the model once, on its input example when it has one, before it takes traffic."""
    signature = served.signature
    if not signature.columnar:
        served.run(placeholder(signature))
        return
    example = served.manifest.input_example
    source = pd.DataFrame.from_records(example) if example else placeholder(signature)
    frame = to_frame(source, signature)
    served.run(frame.to_numpy(dtype=served.matrix_dtype) if served.matrix_dtype else frame)
