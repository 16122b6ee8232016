"""The checks that end a canary step: continue to the next weight, wait, or roll back.

A :class:`Check` compares one metric of the candidate over the step, alone or against the
champion's over the same step, with a threshold. :func:`evaluate` gives its :class:`Verdict`
(pass, fail, or inconclusive while the metric is missing or rests on fewer than ``min_samples``
samples) and :func:`decide` combines the verdicts: any fail rolls back, else any inconclusive
waits, else the rollout continues. The rule is deliberately asymmetric: one failing check is
enough to stop, and every check must have seen enough traffic to go on.

Metrics follow the live monitor's names (:mod:`modelyard.live.alert_rules`); with
``relative: true`` the value compared is the candidate's against the champion's:

======================  ==============================================  ========================
metric                  value for one version over the step             relative value
======================  ==============================================  ========================
``error_rate``          share of requests answered with an error (0-1)  candidate - champion
``latency_p99_s``       99th percentile of request latency, seconds     candidate / champion
``prediction_drift``    1 when the candidate's predictions drifted      (already relative)
                        from the champion's over the step, else 0
``quality_violations``  number of data-quality findings                 candidate - champion
``accuracy_estimated``  label-free accuracy estimate (CBPE, 0-1)        candidate - champion
``accuracy_realised``   accuracy on the labels received (0-1)           candidate - champion
======================  ==============================================  ========================

Latency is compared as a ratio because it scales (1.5x the champion's is a slowdown at 20 ms or
at 2 s); rates and counts as differences, in their own units (0.01 is one percentage point).
``prediction_drift`` compares the candidate with the champion by itself, so it takes no
``relative``.

``samples`` is what the metric rests on for the candidate: requests for error rate and latency,
rows for drift, quality and estimated accuracy, labelled rows for realised accuracy.
Values are rounded to 12 significant digits before the comparison, so that
``0.031 - 0.021 <= 0.01`` holds as it reads.
"""

from __future__ import annotations

import difflib
import math
import numbers
import operator
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from modelyard.errors import InvalidInput

METRICS: Final = ("error_rate", "latency_p99_s", "prediction_drift", "quality_violations",
                  "accuracy_estimated", "accuracy_realised")
RATIO_METRICS: Final = frozenset({"latency_p99_s"})
ABSOLUTE_METRICS: Final = frozenset({"prediction_drift"})
COMPARISONS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
OUTCOMES: Final = ("pass", "fail", "inconclusive")
ACTIONS: Final = ("continue", "wait", "rollback")
_FIELDS: Final = ("name", "metric", "comparison", "threshold", "relative", "min_samples")
_REQUIRED: Final = ("name", "metric", "comparison", "threshold")


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"


def _problem(field: str, value: object) -> str | None:
    """What is wrong with one field of a check, or None."""
    if field == "name" and (not isinstance(value, str) or not value.strip()):
        return f"must be non-empty text, not {value!r}"
    if field == "metric":
        if not isinstance(value, str):
            return f"must be a metric name, not {value!r}"
        if value not in METRICS:
            return f"unknown metric {value!r}{_suggest(value, METRICS)}"
    if field == "comparison" and (not isinstance(value, str) or value not in COMPARISONS):
        return (f"must be one of {', '.join(COMPARISONS)} (quoted in YAML: \">=\"), "
                f"not {value!r}")
    if field == "threshold" and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                 or not math.isfinite(value)):
        return f"must be a finite number, not {value!r}"
    if field == "relative" and not isinstance(value, bool):
        return f"must be true or false, not {value!r}"
    if field == "min_samples" and (isinstance(value, bool) or not isinstance(value, int)
                                   or value < 0):
        return f"must be a whole number of zero or more, not {value!r}"
    return None


@dataclass(frozen=True)
class Check:
    """``metric`` (or its relative value, module docstring) ``comparison`` ``threshold``.

    With fewer than ``min_samples`` samples the check is inconclusive.

    >>> Check("errors", "error_rate", "<=", 0.01, relative=True, min_samples=100)
    Check(name='errors', metric='error_rate', comparison='<=', threshold=0.01, relative=True, \
min_samples=100)
    >>> Check("accuracy", "acuracy", ">=", 0.9)
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: metric: unknown metric 'acuracy'; did you mean \
'accuracy_realised'?
    """

    name: str
    metric: str
    comparison: str
    threshold: float
    relative: bool = False
    min_samples: int = 1

    def __post_init__(self) -> None:
        for field in _FIELDS:
            problem = _problem(field, getattr(self, field))
            if problem:
                raise InvalidInput(f"{field}: {problem}")
        if self.relative and self.metric in ABSOLUTE_METRICS:
            raise InvalidInput(f"relative: {self.metric} already compares the candidate with "
                               "the champion; use relative: false")

    def describe(self) -> str:
        """What the check compares, in words.

        >>> Check("p99", "latency_p99_s", "<=", 1.5, relative=True).describe()
        "the candidate's latency_p99_s over the champion's"
        """
        if not self.relative:
            return f"the candidate's {self.metric}"
        how = "over" if self.metric in RATIO_METRICS else "minus"
        return f"the candidate's {self.metric} {how} the champion's"


@dataclass(frozen=True)
class Verdict:
    """One check's outcome for a step: ``"pass"``, ``"fail"`` or ``"inconclusive"``.

    ``value`` is what was compared with ``threshold`` (None when it could not be computed);
    ``samples`` what it rests on; ``reason`` says why, in one sentence.
    """

    check: str
    outcome: str
    value: float | None
    threshold: float
    samples: int
    reason: str


def _metric(values: Mapping[str, float] | None, metric: str, side: str) -> float | None:
    """The side's value of ``metric``; None when it is missing or NaN."""
    if values is None or values.get(metric) is None:
        return None
    value = values[metric]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(f"the {side}'s {metric} must be a number, not {value!r}")
    return None if math.isnan(value) else float(value)


def evaluate(
    check: Check,
    candidate: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    samples: int,
) -> Verdict:
    """The verdict of ``check`` on one step's metrics.

    Parameters
    ----------
    check
        The check to apply.
    candidate, champion
        Metric values of each version over the step (module docstring); None, a missing key or
        NaN means the metric is not known yet. ``champion`` is read only by relative checks.
    samples
        What the candidate's metric rests on (requests, rows or labelled rows).

    Returns
    -------
    Verdict

    Examples
    --------
    >>> errors = Check("errors", "error_rate", "<=", 0.01, relative=True, min_samples=100)
    >>> evaluate(errors, {"error_rate": 0.012}, {"error_rate": 0.004}, samples=500).reason
    "the candidate's error_rate minus the champion's is 0.008, which satisfies <= 0.01"
    >>> evaluate(errors, {"error_rate": 0.03}, {"error_rate": 0.004}, samples=500).outcome
    'fail'
    >>> evaluate(errors, {"error_rate": 0.03}, {"error_rate": 0.004}, samples=40).reason
    "only 40 of the 100 samples needed so far (the candidate's error_rate minus the \
champion's is 0.026)"
    """
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 0:
        raise InvalidInput(f"samples must be a whole number of zero or more, not {samples!r}")

    def verdict(outcome: str, value: float | None, reason: str) -> Verdict:
        return Verdict(check.name, outcome, value, check.threshold, samples, reason)

    ours = _metric(candidate, check.metric, "candidate")
    if ours is None:
        return verdict("inconclusive", None, f"the candidate has no {check.metric} yet")
    value = ours
    if check.relative:
        theirs = _metric(champion, check.metric, "champion")
        if theirs is None:
            return verdict("inconclusive", None,
                           f"the champion has no {check.metric} to compare with")
        if check.metric in RATIO_METRICS:
            if theirs <= 0:
                return verdict("inconclusive", None, f"the champion's {check.metric} is "
                               f"{theirs:g}, so the ratio is undefined")
            value = ours / theirs
        else:
            value = ours - theirs
    value = float(f"{value:.12g}")
    said = f"{check.describe()} is {value:.4g}"
    if samples < check.min_samples:
        return verdict("inconclusive", value, f"only {samples} of the {check.min_samples} "
                       f"samples needed so far ({said})")
    rule = f"{check.comparison} {check.threshold:g}"
    if COMPARISONS[check.comparison](value, check.threshold):
        return verdict("pass", value, f"{said}, which satisfies {rule}")
    return verdict("fail", value, f"{said}, which does not satisfy {rule}")


def decide(verdicts: Iterable[Verdict]) -> str:
    """``"rollback"`` if any check failed, else ``"wait"`` if any is inconclusive, else
    ``"continue"`` (also when there are no verdicts).

    >>> ok = Verdict("errors", "pass", 0.0, 0.01, 500, "...")
    >>> unsure = Verdict("p99", "inconclusive", None, 1.5, 10, "...")
    >>> bad = Verdict("drift", "fail", 1.0, 0.0, 500, "...")
    >>> decide([ok]), decide([ok, unsure]), decide([ok, unsure, bad])
    ('continue', 'wait', 'rollback')
    """
    outcomes = set()
    for verdict in verdicts:
        if verdict.outcome not in OUTCOMES:
            raise InvalidInput(f"verdict {verdict.check!r} has an unknown outcome "
                               f"{verdict.outcome!r}; expected one of {', '.join(OUTCOMES)}")
        outcomes.add(verdict.outcome)
    if "fail" in outcomes:
        return "rollback"
    return "wait" if "inconclusive" in outcomes else "continue"


def default_checks() -> tuple[Check, ...]:
    """The checks a canary runs unless configured otherwise.

    Error rate at most 1 point above the champion's (from 100 requests); p99 latency at most
    1.5 times the champion's (100 requests); no drift of the candidate's predictions from the
    champion's (100 rows); estimated accuracy at most 2 points below the champion's (200 rows);
    realised accuracy at most 2 points below (100 labels). A check whose metric never arrives
    (no labels, a regression model) keeps the step waiting: drop it with :func:`load_checks`.

    >>> [check.name for check in default_checks()]  # doctest: +NORMALIZE_WHITESPACE
    ['error_rate', 'latency_p99_s', 'prediction_drift', 'accuracy_estimated',
     'accuracy_realised']
    """
    return (
        Check("error_rate", "error_rate", "<=", 0.01, relative=True, min_samples=100),
        Check("latency_p99_s", "latency_p99_s", "<=", 1.5, relative=True, min_samples=100),
        Check("prediction_drift", "prediction_drift", "<=", 0, relative=False, min_samples=100),
        Check("accuracy_estimated", "accuracy_estimated", ">=", -0.02, relative=True,
              min_samples=200),
        Check("accuracy_realised", "accuracy_realised", ">=", -0.02, relative=True,
              min_samples=100),
    )


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInput(f"{path}: cannot read the checks: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        if "chomping" in problem or "'>'" in problem:  # an unquoted > in a block or {...}
            at += '; quote comparisons, e.g. comparison: ">="'
        raise InvalidInput(f"{path}: not valid YAML: {problem}{at}") from None


def _parse_check(item: object, where: str) -> Check:
    if not isinstance(item, Mapping):
        raise InvalidInput(f"{where} must be a mapping of fields, not {item!r}")
    for key in item:
        if key not in _FIELDS:
            raise InvalidInput(f"{where}: unknown field {key!r}{_suggest(str(key), _FIELDS)}")
    missing = [field for field in _REQUIRED if field not in item]
    if missing:
        raise InvalidInput(f"{where}: missing {', '.join(missing)}")
    for field, value in item.items():
        problem = _problem(field, value)
        if problem:
            raise InvalidInput(f"{where}.{field}: {problem}")
    try:
        return Check(**{field: value for field, value in item.items()})
    except InvalidInput as error:  # a rule across fields; its message starts with the field
        raise InvalidInput(f"{where}.{error}") from None


def load_checks(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[Check, ...]:
    """Checks from a YAML file, or from the mapping such a file holds.

    ::

        checks:
          - name: errors
            metric: error_rate
            comparison: "<="
            threshold: 0.01
            relative: true
            min_samples: 100

    ``relative`` defaults to false and ``min_samples`` to 1. Errors name the file, the check's
    position and the field.

    >>> load_checks({"checks": [{"name": "p99", "metric": "latency_p99_s", "comparison": "<",
    ...                          "threshold": 0.25}]})
    (Check(name='p99', metric='latency_p99_s', comparison='<', threshold=0.25, relative=False, \
min_samples=1),)
    >>> load_checks({"checks": [{"name": "p99", "metric": "latency_p99", "comparison": "<",
    ...                          "threshold": 0.25}]})
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: checks[0].metric: unknown metric 'latency_p99'; did you mean \
'latency_p99_s'?
    """
    if isinstance(source, Mapping):
        data: Any = source
        prefix = ""
    else:
        data, prefix = _read(Path(source)), f"{os.fspath(source)}: "
    if data is None:
        raise InvalidInput(f"{prefix}no checks: the file is empty; expected 'checks:' and a list")
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{prefix}expected a mapping with 'checks:', not {type(data).__name__}")
    for key in data:
        if key != "checks":
            raise InvalidInput(f"{prefix}unknown key {key!r}{_suggest(str(key), ['checks'])}")
    items = data.get("checks")
    if not isinstance(items, list):
        got = "nothing" if items is None else type(items).__name__
        raise InvalidInput(f"{prefix}checks must be a list of checks, not {got}")
    if not items:
        raise InvalidInput(f"{prefix}checks is empty; list at least one check")
    checks: list[Check] = []
    for i, item in enumerate(items):
        check = _parse_check(item, f"{prefix}checks[{i}]")
        for j, earlier in enumerate(checks):
            if earlier.name == check.name:
                raise InvalidInput(f"{prefix}checks[{i}].name: {check.name!r} is already the "
                                   f"name of checks[{j}]")
        checks.append(check)
    return tuple(checks)
