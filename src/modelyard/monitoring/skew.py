"""Train-serve skew: signs that the same raw feature is computed differently in training and
at serving.

:func:`skew` compares a training profile with the first serving windows for signs that the same
raw feature is computed differently: a spread ratio far from 1 (standardised twice, standardised
on one side only, a change of units), a shift of the centre, whole numbers against fractions,
labels that differ only in case or whitespace. It reads robust effect sizes from quantiles, not
tests: unlike drift, a skew is large at any window size.

Examples
--------
>>> import pandas as pd
>>> from modelyard.monitoring.profile import profile_table
>>> training = profile_table(pd.DataFrame({"plan": ["free", "pro", "team"] * 100}))
>>> serving = profile_table(pd.DataFrame({"plan": ["Free", "pro", "team "] * 100}))
>>> [(finding.rule, finding.column, finding.severity) for finding in skew(training, serving)]
[('skew', 'plan', 'error')]
>>> print(skew(training, serving)[0].message)  # doctest: +NORMALIZE_WHITESPACE
column 'plan': 66.7% of serving values have labels that differ from training labels only in case
or whitespace ('Free' vs 'free', 'team ' vs 'team'; serving vs training)
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.monitoring._overrides import _is_number, _share, _type
from modelyard.monitoring._quality_columns import (
    ERROR,
    WARNING,
    Finding,
    _family,
    _num,
    _pct,
    _whole,
)
from modelyard.monitoring.profile import ColumnProfile, TableProfile
from modelyard.monitoring.sketches import OTHER, CategoricalSummary, NumericSummary

_QUARTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_IQR_PER_SD = 1.349  # the interquartile range of a normal distribution, in standard deviations
_UNITS = {10.0: "", 100.0: ", e.g. percent vs fraction", 1000.0: ", e.g. g vs kg or ms vs s",
          60.0: ", e.g. minutes vs seconds", 3600.0: ", e.g. hours vs seconds", 1e6: ""}


def skew(
    training: TableProfile,
    serving: TableProfile,
    *,
    scale_ratio: float = 3.0,
    shift: float = 1.0,
    casing_share: float = 0.01,
    min_values: int = 50,
    ignore: Collection[str] = (),
) -> list[Finding]:
    """Signs that a feature is computed differently at serving than in training.

    Per column in both profiles (a column on one side only is the ``schema`` rule's business):

    - numbers: the serving spread (IQR, or the standard deviation where an IQR is 0) over the
      training spread is outside ``[1 / scale_ratio, scale_ratio]`` (diagnosed as standardised
      twice, standardised on one side only, or a change of units), or the centre (trimean,
      Tukey 1977; or mean) moved by more than ``shift`` training spreads; else whole numbers on
      one side and fractions on the other;
    - labels: serving labels the training lacks that match a training label after case folding
      and collapsing whitespace, in at least ``casing_share`` of serving values;
    - a column numerical on one side and categorical on the other.

    Numbers are compared when both sides hold ``min_values`` finite values. At most one finding
    per column; location shifts and whole-vs-fraction are warnings, the rest errors.

    >>> import numpy as np
    >>> from modelyard.monitoring.profile import profile_table
    >>> rng = np.random.default_rng(0)
    >>> weight = rng.normal(70, 12, (200, 1))  # up to 200 values a sketch is exact
    >>> for finding in skew(profile_table(weight), profile_table(weight[:100] * 1000)):
    ...     print(finding.message)
    column 'f0': values look multiplied by 1000 at serving (median 70624 vs 70.57); ...
    """
    for name, profile in (("training", training), ("serving", serving)):
        if not isinstance(profile, TableProfile):
            raise InvalidInput(f"{name} must be a TableProfile, not a {_type(profile)}")
    if not _is_number(scale_ratio) or not 1.0 < scale_ratio < math.inf:
        raise InvalidInput(f"scale_ratio must be a number above 1, not {scale_ratio!r}")
    if not _is_number(shift) or not 0.0 < shift < math.inf:
        raise InvalidInput(f"shift must be a positive number, not {shift!r}")
    _share(casing_share, "casing_share")
    if isinstance(min_values, bool) or not isinstance(min_values, int) or min_values < 2:
        raise InvalidInput(f"min_values must be a whole number ≥ 2, not {min_values!r}")
    found = []
    at_serving = {column.name: column for column in serving.columns}
    for column in training.columns:
        other = at_serving.get(column.name)
        if other is None or column.name in ignore:
            continue
        if column.kind != other.kind:
            message = (f"column {column.name!r} is {column.kind} ({column.dtype}) in training but "
                       f"{other.kind} ({other.dtype}) at serving")
            found.append(Finding("skew", column.name, ERROR, message, other.kind, column.kind))
            continue
        before, after = column.sketch.result(), other.sketch.result()
        finding = None
        if isinstance(before, NumericSummary) and isinstance(after, NumericSummary):
            finding = _numeric_skew(column, other, before, after, scale_ratio, shift, min_values)
        elif isinstance(before, CategoricalSummary) and isinstance(after, CategoricalSummary):
            finding = _casing(column.name, before, after, casing_share)
        if finding is not None:
            found.append(finding)
    return found


def _numeric_skew(
    column: ColumnProfile, other: ColumnProfile, before: NumericSummary, after: NumericSummary,
    ratio_limit: float, shift: float, min_values: int,
) -> Finding | None:
    name = column.name
    if before.finite < min_values or after.finite < min_values:
        return None
    spreads = _centres_and_spreads(before, after)
    if spreads is not None:
        (centre_t, spread_t), (centre_s, spread_s), measure = spreads
        ratio = spread_s / spread_t
        expected = f"spread ratio in [{1 / ratio_limit:.2g}, {ratio_limit:g}]"
        if not 1 / ratio_limit <= ratio <= ratio_limit:
            message = _scale_diagnosis(name, before, after, ratio, spread_s, measure)
            return Finding("skew", name, ERROR, message, ratio, expected)
        moved = (centre_s - centre_t) / spread_t
        if abs(moved) > shift:
            factor = _factor(before, after, spread_s)
            if factor is not None and abs(math.log(factor)) > math.log(1.5):
                return Finding("skew", name, ERROR, _units(name, before, after, factor),
                               factor, "factor 1")
            where = "above" if moved > 0 else "below"
            message = (f"column {name!r}: serving values sit {abs(moved):.1f} training spreads "
                       f"({measure}) {where} training values (centre {_num(centre_s)} vs "
                       f"{_num(centre_t)}): an offset, a different baseline or encoding?")
            return Finding("skew", name, WARNING, message, moved, f"shift within ±{shift:g}")
    return _whole_or_fractions(column, other, before, after)


def _centres_and_spreads(
    before: NumericSummary, after: NumericSummary
) -> tuple[tuple[float, float], tuple[float, float], str] | None:
    """(centre, spread) of each side, both by the same measure: trimean and IQR / 1.349 where
    both IQRs are positive, else mean and standard deviation; None when a side has no spread."""
    iqrs = [s.quantiles[0.75] - s.quantiles[0.25] for s in (before, after)]
    if all(iqr > 0 for iqr in iqrs):
        pairs = [((s.quantiles[0.25] + 2 * s.quantiles[0.5] + s.quantiles[0.75]) / 4,
                  iqr / _IQR_PER_SD) for s, iqr in zip((before, after), iqrs, strict=True)]
        return pairs[0], pairs[1], "IQR"
    if before.std and after.std and before.mean is not None and after.mean is not None:
        return (before.mean, before.std), (after.mean, after.std), "std"
    return None


def _scale_diagnosis(name: str, before: NumericSummary, after: NumericSummary, ratio: float,
                     spread_s: float, measure: str) -> str:
    std_t, std_s = before.std or 0.0, after.std or 0.0
    said = (f"serving std {_num(std_s)}, mean {_num(after.mean or 0.0)} vs training std "
            f"{_num(std_t)}, mean {_num(before.mean or 0.0)}")
    if std_t > 0 and std_s > 0 and abs(math.log(std_t * std_s)) < math.log(1.5):
        return (f"column {name!r}: values look standardised twice: serving std {_num(std_s)} ≈ "
                f"1 / training std {_num(std_t)}")
    if _standardised(after) and not _standardised(before):
        return (f"column {name!r}: serving values look standardised but training values do "
                f"not ({said}): a scaler runs at serving that did not run in training, or "
                "runs twice")
    if _standardised(before) and not _standardised(after):
        return (f"column {name!r}: training values look standardised but serving values do "
                f"not ({said}): the scaler is skipped at serving, or applied twice")
    factor = _factor(before, after, spread_s)
    if factor is not None:
        return _units(name, before, after, factor)
    return (f"column {name!r}: the serving spread ({measure}) is {ratio:.3g}× the training "
            f"spread ({said}): the feature is computed or scaled differently")


def _standardised(summary: NumericSummary) -> bool:
    mean, std = summary.mean, summary.std
    return mean is not None and std is not None and abs(mean) <= 0.25 and 0.75 <= std <= 4 / 3


def _factor(before: NumericSummary, after: NumericSummary, spread_s: float) -> float | None:
    """The f with serving quantiles ≈ f * training quantiles (least squares), if it fits within
    a quarter of the serving spread at every quantile and is positive."""
    q_t = np.array([before.quantiles[rank] for rank in _QUARTILES])
    q_s = np.array([after.quantiles[rank] for rank in _QUARTILES])
    norm = float(q_t @ q_t)
    if norm == 0:
        return None
    factor = float(q_s @ q_t) / norm
    if factor <= 0 or float(np.max(np.abs(q_s - factor * q_t))) > 0.25 * spread_s:
        return None
    return factor


def _units(name: str, before: NumericSummary, after: NumericSummary, factor: float) -> str:
    hint = ""
    distance, nice, example = min(
        (abs(math.log(factor / candidate)), candidate, example)
        for common, example in _UNITS.items() for candidate in (common, 1 / common)
    )
    if distance < math.log(1.05):
        factor, hint = nice, example
    shown = f"{factor:.4g}" if factor >= 1 else f"1/{1 / factor:.4g}"
    return (f"column {name!r}: values look multiplied by {shown} at serving (median "
            f"{_num(after.quantiles[0.5])} vs {_num(before.quantiles[0.5])}); a change of "
            f"units{hint}?")


def _whole_or_fractions(column: ColumnProfile, other: ColumnProfile, before: NumericSummary,
                        after: NumericSummary) -> Finding | None:
    name = column.name
    if _family(column.dtype) == "integer" and not _whole(after):
        message = (f"column {name!r}: training values are whole numbers ({column.dtype}) but "
                   f"serving values have fractions (median {_num(after.quantiles[0.5])}): a "
                   "different cast, rounding or encoder?")
        return Finding("skew", name, WARNING, message, other.dtype, column.dtype)
    fractions = sum(not float(q).is_integer() for q in before.quantiles.values())
    if fractions >= 5 and (_family(other.dtype) == "integer" or _whole(after)):
        message = (f"column {name!r}: training values have fractions but serving values are all "
                   f"whole numbers ({other.dtype}): truncated or rounded at serving?")
        return Finding("skew", name, WARNING, message, other.dtype, column.dtype)
    return None


def _casing(name: str, before: CategoricalSummary, after: CategoricalSummary,
            least: float) -> Finding | None:
    known: dict[str, str] = {}
    for label in sorted(before.counts):
        if label != OTHER:
            known.setdefault(_normal(label), label)
    pairs = [(label, known[_normal(label)], n) for label, n in after.counts.items()
             if label != OTHER and label not in before.counts and _normal(label) in known]
    values = after.count - after.missing
    share = sum(n for _, _, n in pairs) / values if values else 0.0
    if not pairs or share < least:
        return None
    pairs.sort(key=lambda pair: (-pair[2], pair[0]))
    shown = ", ".join(f"{label!r} vs {match!r}" for label, match, _ in pairs[:3])
    message = (f"column {name!r}: {_pct(share)} of serving values have labels that differ from "
               f"training labels only in case or whitespace ({shown}; serving vs training)")
    return Finding("skew", name, ERROR, message, share, f"< {_pct(least)}")


def _normal(label: str) -> str:
    return " ".join(label.split()).casefold()
