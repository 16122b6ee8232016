"""Data-quality rules learned from a reference profile.

Rules read profiles (:class:`~modelyard.monitoring.profile.TableProfile`), never rows, so the same
rules judge a training set, one live window, or a window merged from many replicas.
:meth:`QualityRules.from_reference` learns per column, and :meth:`QualityRules.check` reports
each violation as a :class:`Finding`:

- ``schema``: a reference column missing now is an error; a column the reference lacks, a warning.
- ``type``: the kind (numerical/categorical) changed: an error, and no other rule is checked;
  the datatype family (integer, float, boolean, bytes; widths are not compared, as in TFDV)
  changed: a warning. Integers arriving as whole-valued floats (pandas turns an integer column
  with gaps into floats) pass.
- ``missing_share``: at most ``max(1.5 u, u + 0.01)`` missing, ``u`` the upper confidence
  bound of the reference's share; all values missing is an error.
- ``range``: the reference's [min, max]; the share of values outside may be at most the upper
  quantile of Beta(2, N - 1), the mass outside the extremes of N draws from *any* continuous
  distribution (Wilks 1941), so a clean window exceeds it with probability ≤ 1 - confidence
  without assuming a shape. ±inf is outside unless the reference had some. The count beyond
  matters, not one extreme: one outlier in 50,000 values passes.
- ``unseen_categories``: the share of labels the reference never had may be at most its
  Good-Turing unseen mass, (labels seen once) / N (Good 1953), bounded above; when the
  reference sketch pooled rare labels under ``"__other__"``, its pooled share instead.
- ``constant``: a column that varied is constant now, when a window of that size from the
  reference would be constant with probability below 1 - confidence; or a constant reference
  column now varies in more than a chance share of values.
- ``row_volume``: rows below ``min_rows`` or above ``max_rows``, only when set (window sizes are
  the caller's business); an empty window is always reported.

Every share is judged with the window size in mind: a rule fires when the exact lower bound
(Clopper & Pearson 1934) of the observed share, at ``confidence`` (0.999 by default), exceeds the
allowed share, so 2 missing values in a 10-row window do not raise the alarm that 20 % of a
million rows does. A KLL sketch in estimation mode gives shares within its rank error (1.3 %
at k = 200), and that error is subtracted first: a learned range flags large windows only when
more than about the rank error lies outside; an explicit range with no allowed share flags any
value beyond it, because a sketch's extremes are exact.

Overrides, in YAML (:func:`load_overrides`) or a dict (:meth:`QualityRules.with_overrides`)::

    columns:
      age: {range: [0, 120], max_missing_share: 0.1}   # null for an open end: [0, null]
      plan: {allowed: [free, pro, team], max_unseen_share: 0.0}
      notes: {ignore: true}
      score: {skip: [constant], allow_inf: true, dtypes: [INT64, FP64]}
    table: {min_rows: 100, max_rows: 1000000}

An explicit ``range`` or ``allowed`` list allows no value beyond it unless
``max_out_of_range_share`` or ``max_unseen_share`` says otherwise. ``yes``, ``no``, ``on`` and
``off`` stay labels (YAML 1.2 booleans: only ``true`` and ``false``).

Train-serve skew, reported as :class:`Finding` s too, is checked by
:func:`modelyard.monitoring.skew.skew`.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from modelyard.monitoring.profile import profile_table
>>> rng = np.random.default_rng(0)
>>> train = pd.DataFrame({"age": rng.integers(18, 90, 5_000),
...                       "plan": rng.choice(["free", "pro"], 5_000)})
>>> rules = QualityRules.from_reference(profile_table(train))
>>> rules.column("age").range, rules.column("plan").allowed
((18.0, 89.0), ('free', 'pro'))
>>> live = pd.DataFrame({"age": [25, 40, 130, 33, 51, 62] * 10,
...                      "plan": ["free", "pro", "team", "free", "pro", "free"] * 10})
>>> findings = rules.check(profile_table(live))
>>> [(finding.rule, finding.column) for finding in findings]
[('range', 'age'), ('unseen_categories', 'plan')]
>>> print(findings[1].message)
column 'plan': 16.7% of values (10 of 60) have labels the reference never had: 'team' (10); ...
>>> wider = rules.with_overrides({"columns": {"age": {"range": [0, 150]}}})
>>> [finding.rule for finding in wider.check(profile_table(live))]
['unseen_categories']
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.special import betaincinv  # type: ignore[import-untyped, unused-ignore]

from modelyard.errors import InvalidInput
from modelyard.monitoring._overrides import (
    _CATEGORICAL_ONLY,
    _NUMERIC_ONLY,
    _OVERRIDES,
    _check_confidence,
    _dtype,
    _flag,
    _is_number,
    _known_keys,
    _Loader,
    _mapping,
    _parse_column,
    _parse_overrides,
    _parse_table,
    _rows_limits,
    _share,
    _type,
    _yaml_problem,
)
from modelyard.monitoring._overrides import COLUMN_RULES as COLUMN_RULES
from modelyard.monitoring._tables import CATEGORICAL, KINDS, NUMERICAL
from modelyard.monitoring.profile import ColumnProfile, TableProfile
from modelyard.monitoring.sketches import (
    OTHER,
    CategoricalSummary,
    NumericSketch,
    NumericSummary,
)

# COLUMN_RULES (what ``skip`` may name) is defined in _overrides, whose parser checks it there
# without importing this module.
WARNING, ERROR = "warning", "error"
RULES = ("schema", *COLUMN_RULES, "row_volume", "skew")
RULES_VERSION = 1  # of QualityRules.to_dict
_FACTS = ("kind", "dtype", "reference_values", "reference_constant", "max_value_share",
          "allowed_exact")


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


@dataclass(frozen=True)
class QualityRules:
    """Data-quality rules for a table, learned from a reference profile (see the module).

    ``confidence`` sets how sure a rule must be before it fires (and how wide the learned limits
    are); ``min_rows``/``max_rows`` bound the rows of a window when set.
    """

    columns: tuple[ColumnRule, ...]
    min_rows: int | None = None
    max_rows: int | None = None
    confidence: float = 0.999

    def __post_init__(self) -> None:
        _check_confidence(self.confidence)
        _rows_limits(self.min_rows, self.max_rows, "QualityRules")

    def column(self, name: str) -> ColumnRule:
        for rule in self.columns:
            if rule.name == name:
                return rule
        raise InvalidInput(f"the rules have no column {name!r}{_did_you_mean(name, self)}")

    @classmethod
    def from_reference(
        cls,
        reference: TableProfile,
        *,
        confidence: float = 0.999,
        missing_factor: float = 1.5,
        missing_slack: float = 0.01,
        range_margin: float = 0.0,
        unseen_slack: float = 0.0,
    ) -> QualityRules:
        """Learn the rules from a reference profile (the training set, or a trusted window).

        ``missing_factor`` and ``missing_slack`` widen the allowed missing share; ``range_margin``
        widens the range by that fraction of its width on each side; ``unseen_slack`` adds to the
        allowed share of unseen labels.
        """
        if not isinstance(reference, TableProfile):
            raise InvalidInput(f"rules are learned from a TableProfile, not a {_type(reference)}")
        if reference.rows == 0:
            raise InvalidInput("the reference profile has no rows: rules are learned from data")
        _check_confidence(confidence)
        for name, value, low in (("missing_factor", missing_factor, 1.0),
                                 ("missing_slack", missing_slack, 0.0),
                                 ("range_margin", range_margin, 0.0),
                                 ("unseen_slack", unseen_slack, 0.0)):
            if not _is_number(value) or not low <= value < math.inf:
                raise InvalidInput(f"{name} must be a number ≥ {low:g}, not {value!r}")
        alpha = 1.0 - confidence
        learned = []
        for column in reference.columns:
            summary = column.sketch.result()
            upper = _share_bounds(summary.missing, summary.count, alpha)[1]
            max_missing = min(1.0, max(upper * missing_factor, upper + missing_slack))
            rule = ColumnRule(column.name, column.kind, column.dtype, dtypes=(column.dtype,),
                              max_missing_share=max_missing,
                              reference_values=summary.count - summary.missing)
            if isinstance(summary, NumericSummary):
                assert isinstance(column.sketch, NumericSketch)
                rule = _learn_numeric(rule, summary, column.sketch, range_margin, alpha)
            else:
                rule = _learn_categorical(rule, summary, alpha, unseen_slack)
            learned.append(rule)
        return cls(tuple(learned), confidence=confidence)

    def with_overrides(self, overrides: Mapping[str, Any]) -> QualityRules:
        """These rules with limits changed as ``overrides`` say (the module shows the shape).

        An unknown column, rule or a value of the wrong type is :class:`InvalidInput` naming it.
        """
        parsed = _parse_overrides(overrides, "overrides")
        table = parsed.get("table", {})
        min_rows = table.get("min_rows", self.min_rows)
        max_rows = table.get("max_rows", self.max_rows)
        _rows_limits(min_rows, max_rows, "overrides: table")
        changes = parsed.get("columns", {})
        for name in changes:
            if name not in {rule.name for rule in self.columns}:
                raise InvalidInput(
                    f"overrides name column {name!r}, which the reference does not have"
                    f"{_did_you_mean(name, self)}"
                )
        columns = tuple(
            _override(rule, changes[rule.name], f"overrides: columns.{rule.name}")
            if rule.name in changes else rule
            for rule in self.columns
        )
        return dataclasses.replace(self, columns=columns, min_rows=min_rows, max_rows=max_rows)

    def check(self, current: TableProfile) -> list[Finding]:
        """Every violation in ``current``, in the reference's column order; [] when clean."""
        if not isinstance(current, TableProfile):
            raise InvalidInput(f"rules check a TableProfile, not a {_type(current)}")
        limits = _rows_expected(self.min_rows, self.max_rows)
        if current.rows == 0:
            message = "the current data has no rows, so no other rule can be checked"
            return [Finding("row_volume", None, WARNING, message, 0, limits)]
        found = []
        if self.min_rows is not None and current.rows < self.min_rows:
            message = f"the current data has {current.rows:,} rows; at least {self.min_rows:,}"
            found.append(Finding("row_volume", None, WARNING, message + " expected",
                                 current.rows, limits))
        if self.max_rows is not None and current.rows > self.max_rows:
            message = f"the current data has {current.rows:,} rows; at most {self.max_rows:,}"
            found.append(Finding("row_volume", None, WARNING, message + " expected",
                                 current.rows, limits))
        by_name = {column.name: column for column in current.columns}
        alpha = 1.0 - self.confidence
        for rule in self.columns:
            if rule.ignore:
                continue
            if rule.name not in by_name:
                message = f"column {rule.name!r} is in the reference but not in the current data"
                found.append(Finding("schema", rule.name, ERROR, message, "absent", "present"))
                continue
            found += _check_column(rule, by_name[rule.name], alpha)
        known = {rule.name for rule in self.columns}
        for name in by_name:
            if name not in known:
                message = f"column {name!r} is in the current data but not in the reference"
                found.append(Finding("schema", name, WARNING, message, "present", "absent"))
        return found

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON- and YAML-friendly dict; :meth:`from_dict` reads it back."""
        columns = {}
        for rule in self.columns:
            entry = {key: _plain(value) for key, value in dataclasses.asdict(rule).items()}
            unused = (*_CATEGORICAL_ONLY, "allowed_exact") if rule.kind == NUMERICAL \
                else _NUMERIC_ONLY
            columns[rule.name] = {
                key: value for key, value in entry.items() if key not in (*unused, "name")
            }
        return {
            "version": RULES_VERSION, "confidence": self.confidence,
            "table": {"min_rows": self.min_rows, "max_rows": self.max_rows}, "columns": columns,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityRules:
        """Rules from :meth:`to_dict` (perhaps edited by hand); bad data is InvalidInput."""
        data = _mapping(data, "rules")
        _known_keys(data, ("version", "confidence", "table", "columns"), "rules")
        version = data.get("version", RULES_VERSION)
        if not isinstance(version, int) or not 1 <= version <= RULES_VERSION:
            raise InvalidInput(
                f"rules have version {version!r}; this modelyard reads version {RULES_VERSION}"
            )
        table = _parse_table(data.get("table") or {}, "rules: table")
        columns = []
        for name, entry in _mapping(data.get("columns") or {}, "rules: columns").items():
            where = f"rules: columns.{name}"
            entry = _mapping(entry, where)
            _known_keys(entry, _FACTS + _OVERRIDES, where)
            kind, dtype = entry.get("kind"), entry.get("dtype")
            if kind not in KINDS:
                raise InvalidInput(f"{where}.kind must be numerical or categorical, not {kind!r}")
            values = entry.get("reference_values", 0)
            if isinstance(values, bool) or not isinstance(values, int) or values < 0:
                raise InvalidInput(f"{where}.reference_values must be a count, not {values!r}")
            constant = entry.get("reference_constant")
            if constant is not None and not (_is_number(constant) or isinstance(constant, str)):
                raise InvalidInput(f"{where}.reference_constant must be a value, not {constant!r}")
            rule = ColumnRule(
                str(name), str(kind), _dtype(dtype, f"{where}.dtype"), reference_values=values,
                reference_constant=constant,
                max_value_share=_share(entry.get("max_value_share", 1.0),
                                       f"{where}.max_value_share"),
                allowed_exact=_flag(entry.get("allowed_exact", True), f"{where}.allowed_exact"),
            )
            limits = {key: entry[key] for key in _OVERRIDES if key in entry}
            limits = _parse_column(limits, where)
            columns.append(_override(rule, limits, where, explicit=False))
        confidence = data.get("confidence", 0.999)
        _check_confidence(confidence)
        return cls(tuple(columns), table.get("min_rows"), table.get("max_rows"), confidence)


def load_overrides(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read overrides from a YAML file (the module shows the shape), checked and normalised.

    A missing file, bad YAML or a value of the wrong type is :class:`InvalidInput` in one line.
    Whether the columns exist is checked by :meth:`QualityRules.with_overrides`.
    """
    where = f"'{Path(path)}'"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{where} cannot be read: {error}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except yaml.YAMLError as error:
        raise InvalidInput(f"{where} is not valid YAML: {_yaml_problem(error)}") from None
    return _parse_overrides(data, where)


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


# --- applying overrides (parsed in _overrides) -----------------------------------------------


def _override(
    rule: ColumnRule, limits: Mapping[str, Any], where: str, explicit: bool = True
) -> ColumnRule:
    """``rule`` with ``limits`` (parsed) applied; an explicit range or label list allows nothing
    beyond it unless its share is given too."""
    wrong = _CATEGORICAL_ONLY if rule.kind == NUMERICAL else _NUMERIC_ONLY
    for key in wrong:
        if key in limits:
            raise InvalidInput(f"{where}.{key} applies to {_other_kind(rule.kind)} columns; "
                               f"{rule.name!r} is {rule.kind}")
    changes: dict[str, Any] = {}
    for key, value in limits.items():
        changes[key] = tuple(value) if isinstance(value, list) else value
    if explicit and "range" in limits:
        changes.setdefault("max_out_of_range_share", 0.0)
    if explicit and "allowed" in limits:
        changes.setdefault("max_unseen_share", 0.0)
        changes["allowed_exact"] = True
    return dataclasses.replace(rule, **changes)


def _did_you_mean(name: str, rules: QualityRules) -> str:
    close = difflib.get_close_matches(name, [rule.name for rule in rules.columns], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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


def _rows_expected(low: int | None, high: int | None) -> str:
    if low is None and high is None:
        return "> 0 rows"
    if high is None:
        return f"≥ {low:,} rows"
    return f"≤ {high:,} rows" if low is None else f"{low:,} to {high:,} rows"


def _other_kind(kind: str) -> str:
    return CATEGORICAL if kind == NUMERICAL else NUMERICAL


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _pct(share: float) -> str:
    return f"{100 * share:.2g}%" if share < 0.1 else f"{100 * share:.3g}%"


def _num(value: float) -> str:
    """A number for a message: at least 4 significant digits, every digit of a whole part."""
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        digits = max(4, len(str(int(abs(value)))))
        return f"{value:.{digits}g}"  # "654.9" and "52100" rather than "5.21e+04"
    return f"{value:.3g}"
