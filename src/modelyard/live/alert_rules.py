"""Alert rules: what they may name (the metric-name contract), their YAML, and their layers.

The metric-name contract — what the monitor produces per model version and window
(``live.monitor.metric_values``), and what rules may name:

====================  ======================================================================
``dataset_drift``     1 when the share of drifted features reaches ``monitoring.drift_share``
``drift_share``       share of the features whose drift was detected (0 to 1)
``drift_score``       drift score per feature (``{feature: score}``; rules may pin ``feature``)
``prediction_drift``  1 when the predictions drifted, else 0
``quality_violations``  number of data-quality findings
``accuracy_realised`` accuracy from labels joined to the window's predictions
``accuracy_estimated``  label-free accuracy estimate (CBPE)
``accuracy_drop``     baseline accuracy minus the realised (else the estimated) accuracy
``latency_p99_s``     99th percentile of request latency, seconds
``error_rate``        share of requests answered with an error (0 to 1)
``rows``              rows observed in the window
====================  ======================================================================

Rules come from three layers, each overriding the one before by name: :func:`default_rules`,
the YAML file ``monitoring.rules_file`` (:func:`load_rules`), and the rules added through the
API or ``modelyard alerts add`` (:class:`RuleStore`). A spec ``{name: X, disabled: true}`` in
the file or the store switches rule ``X`` off.
"""

from __future__ import annotations

import logging
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, delete, insert, select, update

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry.refs import check_name
from modelyard.store import Database
from modelyard.store.tables import alert_rules

log = logging.getLogger("modelyard.alerts")

METRICS: dict[str, str] = {
    "dataset_drift": "1 when the share of drifted features reaches monitoring.drift_share",
    "drift_share": "share of the features whose drift was detected",
    "drift_score": "drift score of a feature",
    "prediction_drift": "1 when the predictions drifted",
    "quality_violations": "number of data-quality findings",
    "accuracy_realised": "accuracy from the labels received",
    "accuracy_estimated": "label-free accuracy estimate (CBPE)",
    "accuracy_drop": "baseline accuracy minus the realised (else estimated) accuracy",
    "latency_p99_s": "99th percentile of request latency in seconds",
    "error_rate": "share of requests answered with an error",
    "rows": "rows observed in the window",
}
PER_FEATURE = frozenset({"drift_score"})
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}
SEVERITIES = ("info", "warning", "critical")
STATES = ("firing", "pending", "resolved")

_RULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")  # a Prometheus alert name
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_RESERVED_LABELS = frozenset({"alertname", "severity", "model", "version", "feature"})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SPEC_KEYS = ("name", "metric", "op", "threshold", "for", "for_s", "severity", "labels",
              "model", "feature", "description", "disabled")


def stamp(at: datetime) -> str:
    """A time as the store writes it (ISO-8601 UTC with microseconds, as the registry does)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration(value: Any, where: str = "duration") -> float:
    """Seconds from ``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` or a number of seconds.

    >>> parse_duration("5m"), parse_duration("1h30m"), parse_duration(45), parse_duration("0")
    (300.0, 5400.0, 45.0, 0.0)
    """
    if isinstance(value, bool):
        raise InvalidInput(f"{where} must be a duration such as 30s, 5m or 1h, not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        spelled = str(value).strip()
        try:
            seconds = float(spelled)
        except ValueError:
            parts = _DURATION.findall(spelled)
            if not parts or "".join(a + u for a, u in parts) != spelled:
                raise InvalidInput(
                    f"{where} must be a duration such as 30s, 5m or 1h, not {value!r}"
                ) from None
            seconds = sum(float(amount) * _UNITS_S[unit] for amount, unit in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(f"{where} must be a duration of zero or more, not {value!r}")
    return round(seconds, 3)


def format_duration(seconds: float) -> str:
    """A duration as Prometheus writes it.

    >>> format_duration(300), format_duration(5400), format_duration(0.25), format_duration(0)
    ('5m', '1h30m', '250ms', '0s')
    """
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    out = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        amount, millis = divmod(millis, size)
        if amount:
            out.append(f"{amount}{unit}")
    return "".join(out)


@dataclass(frozen=True)
class AlertRule:
    """A condition on one window metric of a model version, held for ``for_s`` seconds.

    ``model`` limits the rule to one model (None: every model); ``feature`` pins a per-feature
    metric (``drift_score``) to one feature, else the rule holds when any feature's does.

    >>> rule = AlertRule("LatencyHigh", "latency_p99_s", ">", 0.5, for_s=300)
    >>> rule.read({"latency_p99_s": 0.7}), rule.read({"latency_p99_s": 0.2}), rule.read({})
    ((True, 0.7, []), (False, 0.2, []), (None, None, []))
    >>> AlertRule("Drift", "drift_score", ">", 0.2).read({"drift_score": {"age": 0.4, "x": 0.1}})
    (True, 0.4, ['age'])
    """

    name: str
    metric: str
    op: str
    threshold: float
    for_s: float = 0.0
    severity: str = "warning"
    labels: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    feature: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        where = f"alert rule {self.name!r}"
        if not isinstance(self.name, str) or not _RULE_NAME.fullmatch(self.name):
            raise InvalidInput(
                f"alert rule name {self.name!r} is not allowed: start with a letter or '_', "
                "then letters, digits or '_' (a Prometheus alert name), at most 128 characters"
            )
        if self.metric not in METRICS:
            raise InvalidInput(f"{where}: unknown metric {self.metric!r}; "
                               f"known: {', '.join(METRICS)}")
        if self.op not in OPERATORS:
            raise InvalidInput(f"{where}: op must be one of {' '.join(OPERATORS)}, "
                               f"not {self.op!r}")
        if (isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float)
                or not math.isfinite(self.threshold)):
            raise InvalidInput(f"{where}: threshold must be a finite number, "
                               f"not {self.threshold!r}")
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "for_s", parse_duration(self.for_s, f"{where}: for"))
        if self.severity not in SEVERITIES:
            raise InvalidInput(f"{where}: severity must be one of {', '.join(SEVERITIES)}, "
                               f"not {self.severity!r}")
        for key, value in self.labels.items():
            if not isinstance(key, str) or not _LABEL.fullmatch(key) or key.startswith("__"):
                raise InvalidInput(f"{where}: label name {key!r} is not allowed: letters, "
                                   "digits and '_', not starting with a digit or '__'")
            if key in _RESERVED_LABELS:
                raise InvalidInput(f"{where}: label {key!r} is set by modelyard; "
                                   "choose another name")
            if not isinstance(value, str):
                raise InvalidInput(f"{where}: label {key!r} must be text, not {value!r}")
        if self.model is not None:
            check_name(self.model)
        if self.feature is not None and self.metric not in PER_FEATURE:
            raise InvalidInput(f"{where}: feature applies only to "
                               f"{', '.join(sorted(PER_FEATURE))}, not {self.metric}")

    def holds(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.threshold)

    def read(self, values: Mapping[str, Any]) -> tuple[bool | None, float | None, list[str]]:
        """Whether the condition holds on a window's values (None: the metric is missing),
        the value it was judged on, and the features that breach (per-feature metrics)."""
        found: Any = values.get(self.metric)
        if self.metric not in PER_FEATURE:
            if not _finite(found):
                return None, None, []
            return self.holds(float(found)), float(found), []
        scores = ({str(k): float(v) for k, v in found.items() if _finite(v)}
                  if isinstance(found, Mapping) else {})
        if self.feature is not None:
            scores = {k: v for k, v in scores.items() if k == self.feature}
        if not scores:
            return None, None, []
        breaching = sorted(k for k, v in scores.items() if self.holds(v))
        pool = [scores[k] for k in breaching] or list(scores.values())
        value = min(pool) if self.op in ("<", "<=") else max(pool)
        return bool(breaching), value, breaching

    def summary(self) -> str:
        target = f"{self.metric}[{self.feature}]" if self.feature else self.metric
        held = f" for {format_duration(self.for_s)}" if self.for_s else ""
        return f"{target} {self.op} {self.threshold:g}{held}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "op": self.op,
                "threshold": self.threshold, "for": format_duration(self.for_s),
                "severity": self.severity, "labels": dict(self.labels), "model": self.model,
                "feature": self.feature, "description": self.description}

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> AlertRule:
        """A rule from its spec (YAML, JSON, the store); errors name the rule and the field,
        after ``where`` (a file and position) when given."""
        try:
            return cls._from_spec(_spec(data, "alert rule"))
        except InvalidInput as error:
            if where is None:
                raise
            raise InvalidInput(f"{where}: {error}") from None

    @classmethod
    def _from_spec(cls, spec: dict[str, Any]) -> AlertRule:
        if spec.get("disabled"):
            raise InvalidInput("alert rule: a disabled rule has no condition")
        missing = [key for key in ("name", "metric", "op", "threshold") if key not in spec]
        if missing:
            raise InvalidInput(f"alert rule: missing {', '.join(missing)}")
        where = f"alert rule {spec['name']!r}"
        labels = spec.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise InvalidInput(f"{where}: labels must be a mapping of names to text")
        threshold = spec["threshold"]
        if isinstance(threshold, str):
            try:
                threshold = float(threshold)
            except ValueError:
                raise InvalidInput(f"{where}: threshold must be a number, "
                                   f"not {threshold!r}") from None
        return cls(
            name=str(spec["name"]), metric=str(spec["metric"]), op=str(spec["op"]),
            threshold=threshold,
            for_s=parse_duration(spec.get("for", spec.get("for_s", 0)), f"{where}: for"),
            severity=str(spec.get("severity", "warning")),
            labels={str(k): v if isinstance(v, str) else str(v) for k, v in labels.items()},
            model=None if spec.get("model") is None else str(spec["model"]),
            feature=None if spec.get("feature") is None else str(spec["feature"]),
            description=str(spec.get("description") or ""),
        )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _spec(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{where} must be a mapping of fields, not {type(data).__name__}")
    unknown = [str(key) for key in data if key not in _SPEC_KEYS]
    if unknown:
        raise InvalidInput(f"{where}: unknown field {unknown[0]!r}; known: "
                           f"{', '.join(k for k in _SPEC_KEYS if k != 'for_s')}")
    if "for" in data and "for_s" in data:
        raise InvalidInput(f"{where}: give for or for_s, not both")
    return dict(data)


def default_rules() -> list[AlertRule]:
    """The rules every model gets unless a rule of the same name overrides or disables them.

    >>> [rule.name for rule in default_rules()]
    ['DatasetDrift', 'AccuracyDrop', 'LatencyP99High', 'ErrorRateHigh']
    """
    return [
        AlertRule("DatasetDrift", "dataset_drift", "==", 1, severity="warning",
                  description="the share of drifted features reached the configured share"),
        AlertRule("AccuracyDrop", "accuracy_drop", ">", 0.05, severity="critical",
                  description="accuracy (realised, else estimated) fell more than 5 points "
                              "below the baseline"),
        AlertRule("LatencyP99High", "latency_p99_s", ">", 0.5, for_s=300, severity="warning",
                  description="p99 request latency above 500 ms for 5 minutes"),
        AlertRule("ErrorRateHigh", "error_rate", ">", 0.05, for_s=300, severity="critical",
                  description="more than 5% of requests failed for 5 minutes"),
    ]


@dataclass(frozen=True)
class RuleSet:
    """Rules from one source, and the names it switches off."""

    rules: list[AlertRule] = field(default_factory=list)
    disabled: frozenset[str] = frozenset()


def parse_rules(data: Any, where: str) -> RuleSet:
    """``{"rules": [spec, …]}`` or ``[spec, …]``; ``{name: X, disabled: true}`` turns X off."""
    if data is None:
        return RuleSet()
    if isinstance(data, Mapping):
        extra = [str(key) for key in data if key != "rules"]
        if extra:
            raise InvalidInput(f"{where}: unknown key {extra[0]!r}; expected rules: [...]")
        data = data.get("rules") or []
    if not isinstance(data, list):
        raise InvalidInput(f"{where}: rules must be a list of rules")
    rules: dict[str, AlertRule] = {}
    disabled: set[str] = set()
    for i, entry in enumerate(data):
        spec = _spec(entry, f"{where}: rule {i + 1}")
        if spec.get("disabled"):
            if set(spec) - {"name", "disabled"} or not isinstance(spec.get("name"), str):
                raise InvalidInput(f"{where}: rule {i + 1}: a disabled rule takes only a name")
            disabled.add(spec["name"])
            continue
        rule = AlertRule.from_dict(spec, f"{where}: rule {i + 1}")
        if rule.name in rules or rule.name in disabled:
            raise InvalidInput(f"{where}: rule {rule.name!r} appears twice")
        rules[rule.name] = rule
    return RuleSet(list(rules.values()), frozenset(disabled))


def load_rules(path: Path | str) -> RuleSet:
    """Alert rules from a YAML file.

    ::

        rules:
          - name: ChurnDrift
            metric: drift_share
            op: ">"
            threshold: 0.3
            for: 10m
            severity: critical
            model: churn
            labels: {team: growth}
          - {name: LatencyP99High, disabled: true}
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInput(f"cannot read alert rules {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InvalidInput(f"alert rules {path} are not valid YAML: {problem}{at}") from None
    return parse_rules(data, str(path))


@dataclass(frozen=True)
class RuleEntry:
    rule: AlertRule
    source: str  # "default", "file" or "store"


class RuleStore:
    """The effective rules: defaults, overridden by the rules file, overridden by the store."""

    def __init__(self, database: Database, rules_file: Path | str | None = None,
                 *, defaults: bool = True) -> None:
        self.database = database
        self._base: dict[str, RuleEntry] = {}
        for rule in default_rules() if defaults else []:
            self._base[rule.name] = RuleEntry(rule, "default")
        if rules_file is not None:
            found = load_rules(rules_file)
            for name in found.disabled:
                self._base.pop(name, None)
            for rule in found.rules:
                self._base[rule.name] = RuleEntry(rule, "file")

    def _stored(self, conn: Connection) -> dict[str, dict[str, Any]]:
        query = select(alert_rules.c.name, alert_rules.c.spec).order_by(alert_rules.c.name)
        return {row.name: dict(row.spec) for row in conn.execute(query)}

    def entries(self) -> list[RuleEntry]:
        """Every rule in force, with where it comes from."""
        with self.database.read() as conn:
            stored = self._stored(conn)
        merged = dict(self._base)
        for name, spec in stored.items():
            if spec.get("disabled"):
                merged.pop(name, None)
                continue
            try:
                merged[name] = RuleEntry(AlertRule.from_dict(spec), "store")
            except InvalidInput as error:  # e.g. stored by a modelyard that knew more metrics
                log.warning("alerts: skipping the stored rule %s: %s", name, error)
        return list(merged.values())

    def rules(self, model: str | None = None) -> list[AlertRule]:
        """The rules in force, or those that apply to ``model``."""
        return [entry.rule for entry in self.entries()
                if model is None or entry.rule.model in (None, model)]

    def add(self, rule: AlertRule, *, replace: bool = False) -> str | None:
        """Store a rule; returns the source of a rule of that name it overrides, if any."""
        now = stamp(datetime.now(UTC))
        with self.database.write() as conn:
            found = conn.execute(select(alert_rules.c.spec).where(
                alert_rules.c.name == rule.name).with_for_update()).scalar_one_or_none()
            if found is not None and not found.get("disabled") and not replace:
                raise Conflict(f"alert rule {rule.name!r} exists; remove it first")
            if found is None:
                conn.execute(insert(alert_rules).values(
                    name=rule.name, spec=rule.to_dict(), created_at=now, updated_at=now))
            else:
                conn.execute(update(alert_rules).where(alert_rules.c.name == rule.name)
                             .values(spec=rule.to_dict(), updated_at=now))
        base = self._base.get(rule.name)
        return "store" if found is not None and not found.get("disabled") else (
            base.source if base is not None else None)

    def remove(self, name: str) -> str:
        """Remove a stored rule, or switch off a default or file rule; says what it did."""
        now = stamp(datetime.now(UTC))
        base = self._base.get(name)
        with self.database.write() as conn:
            found = conn.execute(select(alert_rules.c.spec).where(
                alert_rules.c.name == name).with_for_update()).scalar_one_or_none()
            if found is not None and not found.get("disabled"):
                conn.execute(delete(alert_rules).where(alert_rules.c.name == name))
                if base is None:
                    return f"removed alert rule {name}"
                return f"removed alert rule {name}; the {base.source} rule {name} applies again"
            if base is None or found is not None:
                raise NotFound(f"no alert rule named {name!r}")
            conn.execute(insert(alert_rules).values(
                name=name, spec={"name": name, "disabled": True}, created_at=now,
                updated_at=now))
        return f"disabled the {base.source} alert rule {name}"
