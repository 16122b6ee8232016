"""The rules of one column: what they hold, how they are learned from the column's reference
profile, and how they judge the column's current profile (:mod:`modelyard.monitoring.quality`
gathers them into a table's rules and documents each rule)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import betaincinv  # type: ignore[import-untyped, unused-ignore]

from modelyard.monitoring._tables import NUMERICAL
from modelyard.monitoring.profile import ColumnProfile
from modelyard.monitoring.sketches import (
    OTHER,
    CategoricalSummary,
    NumericSketch,
    NumericSummary,
)

WARNING, ERROR = "warning", "error"


@dataclass(frozen=True)
class Finding:
    """One violated rule: which, where, how bad, and a sentence a user understands.

    ``column`` is None for table-level rules; ``observed`` is the measured value (a share, a
    ratio, a datatype); ``expected`` says what the rule allows, in words (``"≤ 5%"``).
    """

    rule: str
    column: str | None
    severity: str
    message: str
    observed: float | str | None
    expected: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ColumnRule:
    """What one column must look like. The first six fields are facts about the reference
    (kind, datatype, non-missing values, its one value if it was constant, the largest share one
    value held, whether ``allowed`` lists every label); the rest are limits ``with_overrides``
    may change. ``range`` ends may be None (no limit); ``allowed`` is None for numbers."""

    name: str
    kind: str
    dtype: str
    reference_values: int = 0
    reference_constant: float | str | None = None
    max_value_share: float = 1.0
    allowed_exact: bool = True
    ignore: bool = False
    skip: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    max_missing_share: float = 1.0
    range: tuple[float | None, float | None] | None = None
    max_out_of_range_share: float = 0.0
    allow_inf: bool = False
    allowed: tuple[str, ...] | None = None
    max_unseen_share: float = 0.0


# --- learning --------------------------------------------------------------------------------


def _learn_numeric(
    rule: ColumnRule, summary: NumericSummary, sketch: NumericSketch, margin: float, alpha: float
) -> ColumnRule:
    infinite = summary.pos_inf + summary.neg_inf
    bounds, share, constant = None, 0.0, None
    if summary.finite >= 2 and summary.min is not None and summary.max is not None:
        width = (summary.max - summary.min) * margin
        bounds = (summary.min - width, summary.max + width)
        share = _wilks(summary.finite, alpha)
        if summary.min == summary.max and not infinite:
            constant = summary.min
    return dataclasses.replace(
        rule, range=bounds, max_out_of_range_share=share, allow_inf=infinite > 0,
        reference_constant=constant, max_value_share=_largest_value_share(sketch),
    )


def _learn_categorical(
    rule: ColumnRule, summary: CategoricalSummary, alpha: float, slack: float
) -> ColumnRule:
    values = summary.count - summary.missing
    labels = sorted(label for label in summary.counts if label != OTHER)
    if not labels:
        return rule
    exact = summary.count_error == 0
    if exact:  # Good-Turing: the unseen mass is about (labels seen once) / N
        unseen = float(sum(1 for label in labels if summary.counts[label] == 1))
    else:
        unseen = summary.counts.get(OTHER, 0.0)
    share = min(1.0, _share_bounds(unseen, values, alpha)[1] + slack)
    largest = max(summary.counts[label] for label in labels) + summary.count_error
    constant = labels[0] if exact and len(labels) == 1 and values >= 2 else None
    return dataclasses.replace(
        rule, allowed=tuple(labels), allowed_exact=exact, max_unseen_share=share,
        reference_constant=constant, max_value_share=min(1.0, largest / values),
    )


def _largest_value_share(sketch: NumericSketch) -> float:
    """An upper bound on the largest share one value holds, from the KLL sketch."""
    kll = sketch.kll
    if kll.is_empty():
        return 1.0
    items = np.unique(np.fromiter((item for item, _ in kll), dtype=np.float64)).tolist()
    inclusive = np.asarray(kll.get_cdf(items, True)[:-1])
    exclusive = np.asarray(kll.get_cdf(items, False)[:-1])
    error = 2 * sketch.rank_error if kll.is_estimation_mode() else 0.0
    return min(1.0, float(np.max(inclusive - exclusive)) + error)


def _wilks(values: int, alpha: float) -> float:
    """Upper 1 - alpha quantile of Beta(2, values - 1): how much probability may lie beyond the
    extremes of ``values`` draws from a continuous distribution (Wilks 1941)."""
    return float(betaincinv(2.0, values - 1.0, 1.0 - alpha))


def _share_bounds(successes: float, trials: float, alpha: float) -> tuple[float, float]:
    """One-sided 1 - alpha bounds of a binomial share, exact (Clopper & Pearson 1934); counts
    estimated from a sketch may be fractional."""
    if trials <= 0:
        return 0.0, 1.0
    successes = min(float(trials), max(0.0, successes))
    low = 0.0 if successes == 0 else betaincinv(successes, trials - successes + 1.0, alpha)
    high = 1.0 if successes == trials else betaincinv(successes + 1.0, trials - successes,
                                                      1.0 - alpha)
    return float(low), float(high)


# --- checking --------------------------------------------------------------------------------


def _check_column(rule: ColumnRule, column: ColumnProfile, alpha: float) -> list[Finding]:
    found = []
    if column.kind != rule.kind:
        if "type" not in rule.skip:
            becomes = (": values that are not numbers appeared" if rule.kind == NUMERICAL
                       else ": its values are all numbers now")
            message = (f"column {rule.name!r} was {rule.kind} ({rule.dtype}) in the reference but "
                       f"is {column.kind} ({column.dtype}) now{becomes}")
            found.append(Finding("type", rule.name, ERROR, message, column.dtype, rule.dtype))
        return found  # the other rules compare like with like
    summary = column.sketch.result()
    checks = [_type_rule(rule, column, summary), _missing(rule, summary, alpha)]
    if isinstance(summary, NumericSummary):
        assert isinstance(column.sketch, NumericSketch)
        checks += [_range(rule, summary, column.sketch, alpha),
                   _numeric_constant(rule, summary, column.sketch, alpha)]
    else:
        checks += [_unseen(rule, summary, alpha), _categorical_constant(rule, summary, alpha)]
    return [finding for finding in checks if finding is not None]


def _type_rule(rule: ColumnRule, column: ColumnProfile, summary: Any) -> Finding | None:
    accepted = {_family(dtype) for dtype in rule.dtypes}
    family = _family(column.dtype)
    if "type" in rule.skip or not accepted or family in accepted:
        return None
    if family == "float" and "integer" in accepted and _whole(summary):
        return None  # integers with gaps become floats in pandas and CSV
    message = (f"column {rule.name!r} holds {column.dtype} values now; the reference had "
               f"{rule.dtype}")
    if family == "float" and "integer" in accepted:
        message += ", and they have fractions"
    return Finding("type", rule.name, WARNING, message, column.dtype, " or ".join(rule.dtypes))


def _missing(rule: ColumnRule, summary: Any, alpha: float) -> Finding | None:
    missing, count, allowed = summary.missing, summary.count, rule.max_missing_share
    if "missing_share" in rule.skip or _share_bounds(missing, count, alpha)[0] <= allowed:
        return None
    share = missing / count
    if missing == count:
        message = f"column {rule.name!r} is missing in all {count:,} rows"
        severity = ERROR
    else:
        message = f"column {rule.name!r}: {_pct(share)} of values are missing ({missing:,} of " \
                  f"{count:,})"
        severity = WARNING
    return Finding("missing_share", rule.name, severity,
                   f"{message}; at most {_pct(allowed)} expected", share, f"≤ {_pct(allowed)}")


def _range(rule: ColumnRule, summary: NumericSummary, sketch: NumericSketch,
           alpha: float) -> Finding | None:
    if "range" in rule.skip or rule.range is None:
        return None
    low, high = rule.range
    values = summary.count - summary.missing
    infinite = 0 if rule.allow_inf else summary.pos_inf + summary.neg_inf
    finite, error = summary.finite, sketch.rank_error if sketch.kll.is_estimation_mode() else 0.0
    estimate = lower = float(infinite)
    if low is not None and summary.min is not None and summary.min < low:
        below = max(1.0, sketch.kll.get_cdf([low], False)[0] * finite)
        estimate, lower = estimate + below, lower + max(1.0, below - error * finite)
    if high is not None and summary.max is not None and summary.max > high:
        above = max(1.0, (1.0 - sketch.kll.get_cdf([high], True)[0]) * finite)
        estimate, lower = estimate + above, lower + max(1.0, above - error * finite)
    allowed = rule.max_out_of_range_share
    if values == 0 or _share_bounds(lower, values, alpha)[0] <= allowed:
        return None
    share = estimate / values
    count = f"{round(estimate):,}" if error == 0 else f"about {round(estimate):,}"
    bounds = f"[{'-∞' if low is None else _num(low)}, {'∞' if high is None else _num(high)}]"
    message = (f"column {rule.name!r}: {_pct(share)} of values ({count} of {values:,}) lie "
               f"outside {bounds}")
    if infinite:
        message += f", {infinite:,} of them ±inf"
    if summary.min is not None and summary.max is not None:
        message += f", current min {_num(summary.min)}, max {_num(summary.max)}"
    message += f"; at most {_pct(allowed)} expected"
    return Finding("range", rule.name, WARNING, message, share, f"{bounds}, ≤ {_pct(allowed)}")


def _unseen(rule: ColumnRule, summary: CategoricalSummary, alpha: float) -> Finding | None:
    values = summary.count - summary.missing
    if "unseen_categories" in rule.skip or rule.allowed is None or values == 0:
        return None
    known = set(rule.allowed)
    unseen = {label: n for label, n in summary.counts.items()
              if label != OTHER and label not in known}
    named, pooled = sum(unseen.values()), summary.counts.get(OTHER, 0.0)
    # Labels the window's sketch did not track are pooled, and each known label hides at most
    # count_error of its values there: the rest of the pool has unseen labels.
    least = named + max(0.0, pooled - summary.count_error * len(known))
    allowed = rule.max_unseen_share
    if _share_bounds(least, values, alpha)[0] <= allowed:
        return None
    share = least / values
    top = sorted(unseen.items(), key=lambda pair: (-pair[1], pair[0]))
    labels = ", ".join(f"{label!r} ({n:,.0f})" for label, n in top[:3]) or "none tracked"
    labels += f" and {len(top) - 3:,} more" if len(top) > 3 else ""
    if summary.count_error == 0:
        amount = f"{_pct(share)} of values ({least:,.0f} of {values:,})"
    else:
        most = min(1.0, (named + pooled) / values)
        amount = (f"at least {_pct(share)} of values (up to {_pct(most)}: rare labels are pooled "
                  f"under {OTHER!r}, so the exact share is unknown)")
    message = f"column {rule.name!r}: {amount} have labels the reference never had: {labels}"
    if not rule.allowed_exact:
        message += f" (the reference lists only its {len(known):,} most frequent labels)"
    message += f"; at most {_pct(allowed)} expected"
    return Finding("unseen_categories", rule.name, WARNING, message, share, f"≤ {_pct(allowed)}")


def _numeric_constant(rule: ColumnRule, summary: NumericSummary, sketch: NumericSketch,
                      alpha: float) -> Finding | None:
    if "constant" in rule.skip or summary.min is None or summary.max is None:
        return None
    infinite = summary.pos_inf + summary.neg_inf
    values = summary.count - summary.missing
    if summary.min == summary.max and not infinite:
        return _became_constant(rule, summary.min, values, alpha)
    value = rule.reference_constant
    if not isinstance(value, float | int) or rule.reference_values < 2:
        return None
    equal = 0.0
    if summary.min <= value <= summary.max:
        kll = sketch.kll
        equal = (kll.get_cdf([value], True)[0] - kll.get_cdf([value], False)[0]) * summary.finite
    error = sketch.rank_error * summary.finite * 2 if sketch.kll.is_estimation_mode() else 0.0
    return _started_varying(rule, max(1.0, values - equal - error), values, alpha)


def _categorical_constant(rule: ColumnRule, summary: CategoricalSummary,
                          alpha: float) -> Finding | None:
    values = summary.count - summary.missing
    if "constant" in rule.skip or values == 0:
        return None
    if len(summary.counts) == 1 and OTHER not in summary.counts:
        return _became_constant(rule, next(iter(summary.counts)), values, alpha)
    value = rule.reference_constant
    if not isinstance(value, str) or rule.reference_values < 2:
        return None
    same = summary.counts.get(value, 0.0) + summary.count_error
    return _started_varying(rule, max(1.0, values - same), values, alpha)


def _became_constant(rule: ColumnRule, value: float | str, values: int,
                     alpha: float) -> Finding | None:
    if rule.reference_constant is not None or rule.reference_values < 2 or values < 2:
        return None
    # A window is constant by chance with probability Σ p_i^n ≤ (max p_i)^(n - 1)
    if rule.max_value_share ** (values - 1) >= alpha:
        return None
    shown = repr(value) if isinstance(value, str) else _num(value)
    message = (f"column {rule.name!r} is constant now (all {values:,} values are {shown}) but "
               "varied in the reference")
    return Finding("constant", rule.name, WARNING, message, "constant", "varies")


def _started_varying(rule: ColumnRule, differing: float, values: int,
                     alpha: float) -> Finding | None:
    chance = _share_bounds(0, rule.reference_values, alpha)[1]  # a constant reference allows
    if _share_bounds(differing, values, alpha)[0] <= chance:
        return None
    value = rule.reference_constant
    shown = repr(value) if isinstance(value, str) else _num(float(value or 0.0))
    message = (f"column {rule.name!r} varies now (about {_pct(differing / values)} of values differ"
               f") but was constant ({shown}) in the reference, so the model never saw it vary")
    return Finding("constant", rule.name, WARNING, message, "varies", f"constant {shown}")


# --- small helpers ---------------------------------------------------------------------------


def _family(dtype: str) -> str:
    if dtype.startswith(("INT", "UINT")):
        return "integer"
    if dtype.startswith("FP"):
        return "float"
    return "boolean" if dtype == "BOOL" else "bytes"


def _whole(summary: Any) -> bool:
    """Whether a numeric summary's extremes and quantiles are all whole numbers."""
    if not isinstance(summary, NumericSummary) or summary.min is None or summary.max is None:
        return False
    points = [summary.min, summary.max, *summary.quantiles.values()]
    return all(float(point).is_integer() for point in points)


def _pct(share: float) -> str:
    return f"{100 * share:.2g}%" if share < 0.1 else f"{100 * share:.3g}%"


def _num(value: float) -> str:
    """A number for a message: at least 4 significant digits, every digit of a whole part."""
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        digits = max(4, len(str(int(abs(value)))))
        return f"{value:.{digits}g}"  # "654.9" and "52100" rather than "5.21e+04"
    return f"{value:.3g}"
