"""The request series are plain numbers until scraped; what a scrape shows must be exact."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from modelyard.serving.metrics import ServingMetrics


def test_request_counts_and_latency_buckets_are_exact() -> None:
    metrics = ServingMetrics()
    for seconds in (0.00005, 0.0001, 0.0003, 0.004, 20.0):  # 0.0001 sits on a bound: le holds
        metrics.observe_request("mlp", "1", "rest", "ok", seconds)
    metrics.observe_request("mlp", "1", "rest", "client_error", 0.002)
    metrics.observe_request("mlp", "2", "grpc", "ok", 0.001)
    families = {f.name: f for f in text_string_to_metric_families(
        metrics.exposition().decode())}
    counts = {(s.labels["version"], s.labels["protocol"], s.labels["outcome"]): s.value
              for s in families["modelyard_requests"].samples}
    assert counts == {("1", "rest", "ok"): 5, ("1", "rest", "client_error"): 1,
                      ("2", "grpc", "ok"): 1}
    one = {s.labels["le"]: s.value
           for s in families["modelyard_request_duration_seconds"].samples
           if s.name.endswith("_bucket") and s.labels["version"] == "1"}
    assert one["0.0001"] == 2
    assert one["0.00025"] == 2
    assert one["0.0025"] == 4
    assert one["0.005"] == 5
    assert one["10.0"] == 5
    assert one["+Inf"] == 6
    total = [s.value for s in families["modelyard_request_duration_seconds"].samples
             if s.name.endswith("_sum") and s.labels["version"] == "1"]
    assert total == [sum((0.00005, 0.0001, 0.0003, 0.004, 20.0, 0.002))]


def test_batch_histograms_count_rows_and_waits() -> None:
    from modelyard.serving.batching import BatchStats

    metrics = ServingMetrics()
    metrics.observe_batch("hgb", "3", BatchStats(4, 2, [0.0004, 0.003], 0.002))
    metrics.observe_batch("hgb", "3", BatchStats(1, 1, [0.0], 0.0001))
    samples = [s for f in text_string_to_metric_families(metrics.exposition().decode())
               for s in f.samples]

    def value(name: str, **labels: str) -> float:
        [found] = [s.value for s in samples if s.name == name
                   and all(s.labels.get(k) == v for k, v in labels.items())]
        return found

    assert value("modelyard_batch_size_rows_bucket", le="1.0") == 1
    assert value("modelyard_batch_size_rows_bucket", le="4.0") == 2
    assert value("modelyard_batch_size_rows_sum") == 5
    assert value("modelyard_queue_duration_seconds_count") == 3
    assert value("modelyard_queue_duration_seconds_bucket", le="0.0005") == 2
    assert value("modelyard_inference_duration_seconds_bucket", le="0.0001") == 1
