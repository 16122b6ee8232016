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

import yaml

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
from modelyard.monitoring._quality_columns import ERROR as ERROR
from modelyard.monitoring._quality_columns import WARNING as WARNING
from modelyard.monitoring._quality_columns import ColumnRule as ColumnRule
from modelyard.monitoring._quality_columns import Finding as Finding
from modelyard.monitoring._quality_columns import (
    _check_column,
    _learn_categorical,
    _learn_numeric,
    _share_bounds,
)
from modelyard.monitoring._tables import CATEGORICAL, KINDS, NUMERICAL
from modelyard.monitoring.profile import TableProfile
from modelyard.monitoring.sketches import (
    NumericSketch,
    NumericSummary,
)

# COLUMN_RULES (what ``skip`` may name) is defined in _overrides, whose parser checks it there
# without importing this module.
RULES = ("schema", *COLUMN_RULES, "row_volume", "skew")
RULES_VERSION = 1  # of QualityRules.to_dict
_FACTS = ("kind", "dtype", "reference_values", "reference_constant", "max_value_share",
          "allowed_exact")


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
