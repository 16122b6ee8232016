"""Alert rules as a Prometheus rule file, over the series ``GET /metrics`` exports.

For teams whose Prometheus already pages them, ``modelyard alerts rules --export prometheus``
writes the same rules for Prometheus to evaluate (``promtool check rules`` passes):

- window metrics → ``modelyard_monitor_value{model, version, metric}``, the monitor's latest
  window per model version;
- ``drift_score`` → ``modelyard_monitor_drift_score{model, version, feature}`` (a rule without a
  feature holds when any feature's score does);
- ``latency_p99_s`` → ``histogram_quantile(0.99, …)`` over ``modelyard_request_duration_seconds``;
- ``error_rate`` → the share of ``modelyard_requests_total`` whose ``outcome`` is not ``ok``.

Latency and error rate are computed by Prometheus over ``rate_window`` (5m) rather than over the
monitor's windows, so they can differ a little from what ``modelyard alerts list`` shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml

from modelyard.live.alert_rules import PER_FEATURE, AlertRule, default_rules, format_duration

VALUE = "modelyard_monitor_value"
DRIFT_SCORE = "modelyard_monitor_drift_score"
REQUEST_SECONDS = "modelyard_request_duration_seconds"
REQUESTS = "modelyard_requests_total"


def _selector(**matchers: str) -> str:
    """A PromQL label selector; values are quoted as PromQL strings (JSON escapes suit them)."""
    parts = []
    for key, value in matchers.items():
        negated = key.endswith("__not")
        name = key.removesuffix("__not")
        parts.append(f"{name}{'!=' if negated else '='}{json.dumps(value, ensure_ascii=False)}")
    return "{" + ",".join(parts) + "}"


def expression(rule: AlertRule, rate_window: str = "5m") -> str:
    """The PromQL expression of a rule.

    >>> rule = AlertRule("ChurnDrift", "drift_share", ">", 0.3, model="churn")
    >>> expression(rule)
    'modelyard_monitor_value{metric="drift_share",model="churn"} > 0.3'
    >>> expression(AlertRule("Slow", "latency_p99_s", ">", 0.5))  # doctest: +NORMALIZE_WHITESPACE
    'histogram_quantile(0.99, sum by (le, model, version)
      (rate(modelyard_request_duration_seconds_bucket[5m]))) > 0.5'
    """
    model = {"model": rule.model} if rule.model is not None else {}
    threshold = repr(rule.threshold)
    if rule.metric == "latency_p99_s":
        buckets = f"{REQUEST_SECONDS}_bucket{_selector(**model) if model else ''}"
        return (f"histogram_quantile(0.99, sum by (le, model, version) "
                f"(rate({buckets}[{rate_window}]))) {rule.op} {threshold}")
    if rule.metric == "error_rate":
        every = f"{REQUESTS}{_selector(**model) if model else ''}"
        failed = f"{REQUESTS}{_selector(outcome__not='ok', **model)}"
        total = f"sum by (model, version) (rate({every}[{rate_window}]))"
        errors = f"sum by (model, version) (rate({failed}[{rate_window}]))"
        # with no failed request the error series is absent: count it as 0, not as no data
        return f"({errors} or {total} * 0) / {total} {rule.op} {threshold}"
    if rule.metric in PER_FEATURE:
        feature = {"feature": rule.feature} if rule.feature is not None else {}
        scores = f"{DRIFT_SCORE}{_selector(**feature, **model) if feature or model else ''}"
        if rule.feature is not None:
            return f"{scores} {rule.op} {threshold}"
        if rule.op in (">", ">="):
            return f"max by (model, version) ({scores}) {rule.op} {threshold}"
        if rule.op in ("<", "<="):
            return f"min by (model, version) ({scores}) {rule.op} {threshold}"
        return f"count by (model, version) ({scores} {rule.op} {threshold}) > 0"
    return f"{VALUE}{_selector(metric=rule.metric, **model)} {rule.op} {threshold}"


def _literal(text: str) -> str:
    """Text that Prometheus's templating shows as is."""
    return text.replace("{{", '{{ "{{" }}')


def to_prometheus(rules: Iterable[AlertRule], group: str = "modelyard",
                  rate_window: str = "5m") -> dict[str, Any]:
    """The rule file as data: ``{"groups": [{"name": group, "rules": [...]}]}``."""
    out = []
    for rule in rules:
        entry: dict[str, Any] = {"alert": rule.name, "expr": expression(rule, rate_window)}
        if rule.for_s:
            entry["for"] = format_duration(rule.for_s)
        labels = {"severity": rule.severity, **rule.labels}
        if rule.feature is not None:
            labels["feature"] = rule.feature
        entry["labels"] = labels
        entry["annotations"] = {
            "summary": f"{rule.name} on {{{{ $labels.model }}}}:{{{{ $labels.version }}}}: "
                       f"{_literal(rule.metric)} is {{{{ $value | humanize }}}} "
                       f"({_literal(rule.summary())})",
            "description": _literal(rule.description or rule.summary()),
        }
        out.append(entry)
    return {"groups": [{"name": group, "rules": out}]}


def render(rules: Iterable[AlertRule] | None = None, group: str = "modelyard",
           rate_window: str = "5m") -> str:
    """The rule file as YAML (the default rules when ``rules`` is None)."""
    data = to_prometheus(default_rules() if rules is None else rules, group, rate_window)
    header = "# Prometheus alerting rules exported by modelyard (modelyard alerts rules).\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)
