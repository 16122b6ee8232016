"""Prometheus metrics of one server process: base units, histograms, no request ids in labels.

Labelled children are cached per (model, version, protocol) so a request pays for a dict
lookup, not for ``labels()``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelyard.serving.batching import BatchStats

_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelyard_requests_total",
            "Inference requests answered, by outcome (ok, client_error, model_error, unavailable, "
            "timeout, error).",
            ["model", "version", "protocol", "outcome"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "modelyard_request_duration_seconds",
            "Time from a decoded request to its encoded answer.",
            ["model", "version", "protocol"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "modelyard_queue_duration_seconds",
            "Time a request waited in its model's batch queue.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "modelyard_inference_duration_seconds",
            "Time one batch spent in the model.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "modelyard_batch_size_rows",
            "Rows per batch run by a model.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=r,
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
        self._child(self.requests, model, version, protocol, outcome).inc()
        self._child(self.request_seconds, model, version, protocol).observe(seconds)

    def observe_batch(self, model: str, version: str, stats: BatchStats) -> None:
        queue = self._child(self.queue_seconds, model, version)
        for waited in stats.queue_seconds:
            queue.observe(waited)
        self._child(self.inference_seconds, model, version).observe(stats.run_seconds)
        self._child(self.batch_rows, model, version).observe(stats.size_rows)

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
