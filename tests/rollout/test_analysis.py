"""Canary checks: each verdict, the step's decision, and clear errors in the checks' YAML."""

from __future__ import annotations

import doctest
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.errors import InvalidInput
from modelyard.rollout import analysis
from modelyard.rollout.analysis import (
    Check,
    Verdict,
    decide,
    default_checks,
    evaluate,
    load_checks,
)

ERRORS = Check("errors", "error_rate", "<=", 0.01, relative=True, min_samples=100)
P99 = Check("p99", "latency_p99_s", "<=", 1.5, relative=True, min_samples=100)
HEALTHY = {"error_rate": 0.004, "latency_p99_s": 0.12, "prediction_drift": 0.0,
           "accuracy_estimated": 0.91, "accuracy_realised": 0.90}
CHAMPION = {"error_rate": 0.003, "latency_p99_s": 0.10, "prediction_drift": 0.0,
            "accuracy_estimated": 0.90, "accuracy_realised": 0.905}


def verdict(outcome: str, name: str = "c") -> Verdict:
    return Verdict(name, outcome, None, 0.0, 0, "...")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "analysis.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_docstring_examples() -> None:
    result = doctest.testmod(analysis, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_a_check_within_its_threshold_passes() -> None:
    result = evaluate(ERRORS, {"error_rate": 0.012}, {"error_rate": 0.005}, samples=400)
    assert (result.check, result.outcome, result.samples, result.threshold) == (
        "errors", "pass", 400, 0.01)
    assert result.value == pytest.approx(0.007)
    assert result.reason == (
        "the candidate's error_rate minus the champion's is 0.007, which satisfies <= 0.01")


def test_a_check_beyond_its_threshold_fails() -> None:
    result = evaluate(ERRORS, {"error_rate": 0.03}, {"error_rate": 0.005}, samples=400)
    assert result.outcome == "fail"
    assert result.reason == (
        "the candidate's error_rate minus the champion's is 0.025, which does not satisfy <= 0.01")


def test_relative_latency_is_a_ratio_and_absolute_latency_is_seconds() -> None:
    slow = {"latency_p99_s": 0.4}
    ratio = evaluate(P99, slow, {"latency_p99_s": 0.2}, samples=500)
    assert (ratio.outcome, ratio.value) == ("fail", 2.0)
    assert "the candidate's latency_p99_s over the champion's is 2" in ratio.reason
    absolute = Check("p99", "latency_p99_s", "<", 0.5)
    seconds = evaluate(absolute, slow, {"latency_p99_s": 0.2}, samples=500)
    assert (seconds.outcome, seconds.value) == ("pass", 0.4)
    assert seconds.reason == "the candidate's latency_p99_s is 0.4, which satisfies < 0.5"


def test_an_absolute_check_does_not_need_the_champion() -> None:
    check = Check("errors", "error_rate", "<", 0.05)
    assert evaluate(check, {"error_rate": 0.01}, None, samples=10).outcome == "pass"


def test_accuracy_below_the_champions_by_more_than_allowed_fails() -> None:
    check = Check("acc", "accuracy_realised", ">=", -0.02, relative=True, min_samples=100)
    champion = {"accuracy_realised": 0.90}
    assert evaluate(check, {"accuracy_realised": 0.89}, champion, samples=150).outcome == "pass"
    assert evaluate(check, {"accuracy_realised": 0.87}, champion, samples=150).outcome == "fail"


def test_differences_are_compared_as_they_read() -> None:
    # 0.031 - 0.021 is 0.010000000000000002 in floating point; a user reads 0.01 <= 0.01.
    result = evaluate(ERRORS, {"error_rate": 0.031}, {"error_rate": 0.021}, samples=100)
    assert (result.outcome, result.value) == ("pass", 0.01)


@pytest.mark.parametrize(("comparison", "outcome"), [
    ("<", "fail"), ("<=", "pass"), (">", "fail"), (">=", "pass"),
])
def test_comparisons_at_the_threshold(comparison: str, outcome: str) -> None:
    check = Check("q", "quality_violations", comparison, 2)
    assert evaluate(check, {"quality_violations": 2}, None, samples=1).outcome == outcome


@pytest.mark.parametrize(("candidate", "champion", "reason"), [
    (None, CHAMPION, "the candidate has no error_rate yet"),
    ({"latency_p99_s": 0.1}, CHAMPION, "the candidate has no error_rate yet"),
    ({"error_rate": float("nan")}, CHAMPION, "the candidate has no error_rate yet"),
    ({"error_rate": None}, CHAMPION, "the candidate has no error_rate yet"),
    ({"error_rate": 0.01}, None, "the champion has no error_rate to compare with"),
    ({"error_rate": 0.01}, {}, "the champion has no error_rate to compare with"),
])
def test_a_missing_metric_is_inconclusive(
    candidate: dict[str, float] | None, champion: dict[str, float] | None, reason: str
) -> None:
    result = evaluate(ERRORS, candidate, champion, samples=1000)
    assert (result.outcome, result.value, result.reason) == ("inconclusive", None, reason)


def test_too_few_samples_is_inconclusive_until_the_minimum() -> None:
    candidate, champion = {"error_rate": 0.5}, {"error_rate": 0.0}
    early = evaluate(ERRORS, candidate, champion, samples=99)
    assert (early.outcome, early.value) == ("inconclusive", 0.5)
    assert early.reason.startswith("only 99 of the 100 samples needed so far")
    assert evaluate(ERRORS, candidate, champion, samples=100).outcome == "fail"


def test_a_latency_ratio_against_zero_is_inconclusive() -> None:
    result = evaluate(P99, {"latency_p99_s": 0.1}, {"latency_p99_s": 0.0}, samples=500)
    assert result.outcome == "inconclusive"
    assert result.reason == "the champion's latency_p99_s is 0, so the ratio is undefined"


def test_numpy_numbers_are_numbers() -> None:
    candidate: dict[str, Any] = {"error_rate": np.float32(0.02)}
    champion = {"error_rate": np.float64(0.0)}
    result = evaluate(ERRORS, candidate, champion, samples=np.int64(500))  # type: ignore[arg-type]
    assert result.outcome == "fail"


def test_bad_evaluations_are_refused() -> None:
    with pytest.raises(InvalidInput, match="samples must be a whole number of zero or more"):
        evaluate(ERRORS, HEALTHY, CHAMPION, samples=-1)
    with pytest.raises(InvalidInput, match="the candidate's error_rate must be a number, not 'x'"):
        evaluate(ERRORS, {"error_rate": "x"}, CHAMPION, samples=10)  # type: ignore[dict-item]


def test_decide_rolls_back_on_any_failure_then_waits_on_any_doubt() -> None:
    assert decide([verdict("pass"), verdict("pass")]) == "continue"
    assert decide([verdict("pass"), verdict("inconclusive")]) == "wait"
    assert decide([verdict("inconclusive"), verdict("fail"), verdict("pass")]) == "rollback"
    assert decide(iter([verdict("fail")])) == "rollback"
    assert decide([]) == "continue"
    with pytest.raises(InvalidInput, match="verdict 'c' has an unknown outcome 'ok'"):
        decide([verdict("ok")])


def run_defaults(candidate: dict[str, float], samples: int = 1000) -> str:
    return decide(evaluate(check, candidate, CHAMPION, samples) for check in default_checks())


def test_the_default_checks_let_a_healthy_candidate_through() -> None:
    assert run_defaults(HEALTHY) == "continue"


@pytest.mark.parametrize(("metric", "value"), [
    ("error_rate", 0.02),  # 1.7 points above the champion's
    ("latency_p99_s", 0.16),  # 1.6 times the champion's
    ("prediction_drift", 1.0),
    ("accuracy_estimated", 0.87),  # 3 points below
    ("accuracy_realised", 0.88),  # 2.5 points below
])
def test_the_default_checks_roll_back_a_worse_candidate(metric: str, value: float) -> None:
    assert run_defaults({**HEALTHY, metric: value}) == "rollback"


def test_the_default_checks_wait_for_labels_and_traffic() -> None:
    assert run_defaults({k: v for k, v in HEALTHY.items() if k != "accuracy_realised"}) == "wait"
    assert run_defaults(HEALTHY, samples=50) == "wait"


def test_a_yaml_file_gives_its_checks(tmp_path: Path) -> None:
    path = write(tmp_path, """
checks:
  - name: errors
    metric: error_rate
    comparison: "<="
    threshold: 0.01
    relative: true
    min_samples: 100
  - {name: p99, metric: latency_p99_s, comparison: "<", threshold: 0.5}
""")
    assert load_checks(path) == (ERRORS, Check("p99", "latency_p99_s", "<", 0.5))
    assert load_checks(str(path)) == load_checks({"checks": [
        {"name": "errors", "metric": "error_rate", "comparison": "<=", "threshold": 0.01,
         "relative": True, "min_samples": 100},
        {"name": "p99", "metric": "latency_p99_s", "comparison": "<", "threshold": 0.5},
    ]})


CHECK = "name: c, metric: error_rate, comparison: '<', threshold: 0.1"


@pytest.mark.parametrize(("text", "message"), [
    ("checks:\n  - {name: a, metric: error_rate, comparison: '<', threshold: 0.1}\n"
     "  - {name: b, metric: error_rate, comparison: '<', threshold: 0.2}\n"
     "  - {name: d, metric: acuracy, "
     "comparison: '<', threshold: 1}",
     "analysis.yaml: checks[2].metric: unknown metric 'acuracy'; "
     "did you mean 'accuracy_realised'?"),
    ("checks:\n  - {name: c, metric: error_rate, comparison: '<', treshold: 0.1}",
     "analysis.yaml: checks[0]: unknown field 'treshold'; did you mean 'threshold'?"),
    ("checks:\n  - {name: c, metric: error_rate}",
     "analysis.yaml: checks[0]: missing comparison, threshold"),
    ("checks:\n  - {name: c, metric: error_rate, comparison: '=', threshold: 0.1}",
     "analysis.yaml: checks[0].comparison: must be one of <, <=, >, >="),
    ("checks:\n  - {name: c, metric: error_rate, comparison: '<', threshold: low}",
     "analysis.yaml: checks[0].threshold: must be a finite number, not 'low'"),
    ("checks:\n  - {name: c, metric: error_rate, comparison: '<', threshold: .nan}",
     "analysis.yaml: checks[0].threshold: must be a finite number, not nan"),
    (f"checks:\n  - {{{CHECK}, relative: maybe}}",
     "analysis.yaml: checks[0].relative: must be true or false, not 'maybe'"),
    (f"checks:\n  - {{{CHECK}, min_samples: -5}}",
     "analysis.yaml: checks[0].min_samples: must be a whole number of zero or more, not -5"),
    (f"checks:\n  - {{{CHECK}, min_samples: 1.5}}",
     "analysis.yaml: checks[0].min_samples: must be a whole number"),
    ("checks:\n  - {name: '', metric: error_rate, comparison: '<', threshold: 0.1}",
     "analysis.yaml: checks[0].name: must be non-empty text, not ''"),
    (f"checks:\n  - {{{CHECK}}}\n  - {{{CHECK}}}",
     "analysis.yaml: checks[1].name: 'c' is already the name of checks[0]"),
    ("checks:\n  - errors", "analysis.yaml: checks[0] must be a mapping of fields, not 'errors'"),
    ("checks:\n  - {name: d, metric: prediction_drift, comparison: '<=', threshold: 0,\n"
     "     relative: true}",
     "analysis.yaml: checks[0].relative: prediction_drift already compares the candidate with "
     "the champion; use relative: false"),
    (f"chekcs:\n  - {{{CHECK}}}", "analysis.yaml: unknown key 'chekcs'; did you mean 'checks'?"),
    ("checks: errors", "analysis.yaml: checks must be a list of checks, not str"),
    ("checks:", "analysis.yaml: checks must be a list of checks, not nothing"),
    ("checks: []", "analysis.yaml: checks is empty"),
    ("", "analysis.yaml: no checks: the file is empty"),
    ("- a\n- b", "analysis.yaml: expected a mapping with 'checks:', not list"),
])
def test_yaml_errors_name_the_file_the_check_and_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)) as raised:
        load_checks(write(tmp_path, text))
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith(str(tmp_path / "analysis.yaml"))


@pytest.mark.parametrize(("text", "message"), [
    ("checks: [1, 2", r"analysis.yaml: not valid YAML: .* \(line 1, column 14\)$"),
    ("checks:\n  - {name: c, metric: error_rate, threshold: 1, comparison: >=}",
     r"analysis.yaml: not valid YAML: .* \(line 2, .*\); quote comparisons, e.g. "
     r'comparison: ">="$'),
    ("checks:\n  - name: c\n    comparison: >=\n",
     r"analysis.yaml: not valid YAML: .* \(line 3, .*\); quote comparisons"),
])
def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as raised:
        load_checks(write(tmp_path, text))
    assert "\n" not in str(raised.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="nowhere.yaml: cannot read the checks: No such file"):
        load_checks(tmp_path / "nowhere.yaml")


def test_a_mapping_errors_name_the_position_only() -> None:
    message = r"^checks\[0\]\.metric: unknown metric 'latency_p99'; did you mean 'latency_p99_s'\?$"
    with pytest.raises(InvalidInput, match=message):
        load_checks({"checks": [{"name": "a", "metric": "latency_p99", "comparison": "<",
                                 "threshold": 1}]})


@pytest.mark.parametrize(("fields", "message"), [
    ({"metric": "errors"}, "metric: unknown metric 'errors'; did you mean 'error_rate'?"),
    ({"metric": "throughput"}, "metric: unknown metric 'throughput'; known: error_rate, "),
    ({"comparison": "=="}, "comparison: must be one of <, <=, >, >="),
    ({"threshold": True}, "threshold: must be a finite number, not True"),
    ({"relative": 1}, "relative: must be true or false, not 1"),
    ({"min_samples": -1}, "min_samples: must be a whole number of zero or more, not -1"),
    ({"comparison": ["<"]}, r"comparison: must be one of <, <=, >, >= .*, not \['<'\]"),
    ({"metric": "prediction_drift", "relative": True},
     "relative: prediction_drift already compares the candidate with the champion; "
     "use relative: false"),
])
def test_bad_checks_are_refused(fields: dict[str, object], message: str) -> None:
    spec: dict[str, object] = {"name": "c", "metric": "error_rate", "comparison": "<",
                               "threshold": 0.1, **fields}
    with pytest.raises(InvalidInput, match=message):
        Check(**spec)  # type: ignore[arg-type]
