"""Prometheus metrics of one server process: base units, histograms, no request ids in labels.

Labelled children are cached per (model, version, protocol) so a request pays for a dict
lookup, not for ``labels()``; the series every request or batch updates are plain numbers
(:class:`LoopCounter`, :class:`LoopHistogram`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from modelyard.serving.batching import BatchStats

_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _LoopMetric(Collector):
    """A labelled Prometheus series kept as plain numbers and turned into a metric family
    only when scraped.

    prometheus_client's labelled children take a lock for every update and find a bucket
    with a Python loop: ~1 µs each, and a request updates several. These series are updated
    on the event loop's thread only (REST, gRPC and the batchers share it), so plain numbers
    need no lock; a scrape copies them under the GIL.
    """

    def __init__(self, name: str, documentation: str, labels: list[str],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        registry.register(self)


class LoopCounter(_LoopMetric):
    def __init__(self, name: str, documentation: str, labels: list[str],
                 registry: CollectorRegistry) -> None:
        super().__init__(name, documentation, labels, registry)
        self._counts: dict[tuple[str, ...], int] = {}

    def inc(self, key: tuple[str, ...]) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name.removesuffix("_total"), self.documentation,
                                     labels=self.labels)
        for key, count in list(self._counts.items()):
            family.add_metric(list(key), count)
        yield family


class LoopHistogram(_LoopMetric):
    def __init__(self, name: str, documentation: str, labels: list[str],
                 buckets: tuple[float, ...], registry: CollectorRegistry) -> None:
        super().__init__(name, documentation, labels, registry)
        self._bounds = tuple(float(bound) for bound in buckets)
        self._names = [*(repr(bound) for bound in self._bounds), "+Inf"]
        # per label set: the count in each bucket (the last is +Inf), then the sum
        self._series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, key: tuple[str, ...], value: float) -> None:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = [0] * (len(self._bounds) + 1) + [0.0]
        series[bisect_left(self._bounds, value)] += 1
        series[-1] += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, series in list(self._series.items()):
            values = list(series)
            cumulative = accumulate(values[:-1])
            family.add_metric(list(key), list(zip(self._names, cumulative, strict=True)),
                              values[-1])
        yield family


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = LoopCounter(
            "modelyard_requests_total",
            "Inference requests answered, by outcome (ok, client_error, model_error, "
            "unavailable, timeout, error).",
            ["model", "version", "protocol", "outcome"], r,
        )
        self.request_seconds = LoopHistogram(
            "modelyard_request_duration_seconds",
            "Time from a decoded request to its encoded answer.",
            ["model", "version", "protocol"], _LATENCY_BUCKETS, r,
        )
        self.queue_seconds = LoopHistogram(
            "modelyard_queue_duration_seconds",
            "Time a request waited for its model: in its batch queue, or for a model thread "
            "when batching is off.",
            ["model", "version"], _LATENCY_BUCKETS, r,
        )
        self.inference_seconds = LoopHistogram(
            "modelyard_inference_duration_seconds",
            "Time one batch (batching off: one request) spent in the model.",
            ["model", "version"], _LATENCY_BUCKETS, r,
        )
        self.batch_rows = LoopHistogram(
            "modelyard_batch_size_rows",
            "Rows per batch run by a model (batching off: per request).",
            ["model", "version"], _BATCH_BUCKETS, r,
        )
        self.queue_depth = Gauge(
            "modelyard_queue_depth",
            "Requests waiting in a model's batch queue.",
            ["model", "version"],
            registry=r,
        )
        self.loaded_models = Gauge(
            "modelyard_loaded_models", "Model versions loaded and ready.", registry=r
        )
        self.cache_hits = Counter(
            "modelyard_cache_hits_total", "Responses served from the cache.",
            ["model", "version"], registry=r,
        )
        self.monitor_value = Gauge(
            "modelyard_monitor_value",
            "The monitor's latest window per model version: dataset_drift (0/1), drift_share, "
            "prediction_drift (0/1), quality_violations, error_rate, latency_p99_s, rows, "
            "accuracy_realised, accuracy_estimated, accuracy_drop.",
            ["model", "version", "metric"], registry=r,
        )
        self.monitor_drift_score = Gauge(
            "modelyard_monitor_drift_score",
            "Drift score of each feature in the monitor's latest window (its threshold is "
            "modelyard_monitor_drift_threshold).",
            ["model", "version", "feature"], registry=r,
        )
        self.monitor_drift_threshold = Gauge(
            "modelyard_monitor_drift_threshold",
            "The calibrated drift threshold of each feature in the latest window.",
            ["model", "version", "feature"], registry=r,
        )
        self.monitoring_records = Counter(
            "modelyard_monitoring_records_total",
            "Observed requests by fate: observed, dropped (buffer full), logged, spooled "
            "(database unavailable), log_dropped (journal full).",
            ["fate"], registry=r,
        )
        self.rollout_weight = Gauge(
            "modelyard_rollout_candidate_weight_percent",
            "The candidate's share of traffic in each active rollout, as this process routes it "
            "(0 while a blue-green candidate warms and for a shadow).",
            ["model", "baseline", "candidate", "strategy"], registry=r,
        )
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(
        self, model: str, version: str, protocol: str, outcome: str, seconds: float
    ) -> None:
        self.requests.inc((model, version, protocol, outcome))
        self.request_seconds.observe((model, version, protocol), seconds)

    def observe_batch(self, model: str, version: str, stats: BatchStats) -> None:
        key = (model, version)
        for waited in stats.queue_seconds:
            self.queue_seconds.observe(key, waited)
        self.inference_seconds.observe(key, stats.run_seconds)
        self.batch_rows.observe(key, stats.size_rows)

    def observe_run(self, key: tuple[str, str], rows: int, waited: float, took: float) -> None:
        """One request run alone (batching off) of the model version ``key`` (model,
        version): its wait for a model thread, its time in the model and its rows, in the
        series a batcher reports per batch."""
        self.queue_seconds.observe(key, waited)
        self.inference_seconds.observe(key, took)
        self.batch_rows.observe(key, rows)

    def track_queue(self, model: str, version: str, depth: Any) -> None:
        """Report a queue's depth by calling ``depth()`` at scrape time."""
        self.queue_depth.labels(model, version).set_function(depth)

    def cache_hit(self, model: str, version: str) -> None:
        self._child(self.cache_hits, model, version).inc()

    def set_monitoring(self, results: list[dict[str, Any]], values: Any) -> None:
        """Publish the monitor's latest window per model version; ``values(result)`` gives
        the scalar metrics (``live.monitor.metric_values``)."""
        for result in results:
            model, version = str(result["model"]), str(result["version"])
            for metric, value in values(result).items():
                if isinstance(value, int | float):
                    self.monitor_value.labels(model, version, metric).set(float(value))
            for column in result.get("columns", []):
                if column.get("role") != "feature" or column.get("score") is None:
                    continue
                self.monitor_drift_score.labels(model, version, column["name"]).set(
                    column["score"])
                if column.get("threshold") is not None:
                    self.monitor_drift_threshold.labels(model, version, column["name"]).set(
                        column["threshold"])

    def set_rollouts(self, rollouts: list[tuple[str, int, int, str, float]]) -> None:
        """The active rollouts as (model, baseline, candidate, strategy, weight); ended ones
        disappear from the exposition."""
        self.rollout_weight.clear()
        for model, baseline, candidate, strategy, weight in rollouts:
            self.rollout_weight.labels(model, str(baseline), str(candidate), strategy).set(weight)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
