"""The tables the multivariate methods (:mod:`.multivariate`) take: checks of the two frames,
row samples, and the columns as floats — codes for the domain classifier, NannyML's encoding
for PCA reconstruction. Errors name the column and the side."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from modelyard.errors import InvalidInput
from modelyard.monitoring._tables import NUMERICAL, as_floats, kind_of, label_of

Floats = NDArray[np.float64]
MAX_CODES = 254  # HGB takes at most max_bins - 1 = 254 categories; rarer ones share one code


class Encoder:
    """NannyML's preparation: median imputation, frequency encoding, standardisation."""

    def __init__(self, reference: pd.DataFrame, fit_rows: pd.DataFrame) -> None:
        self.medians: dict[Hashable, float] = {}
        self.shares: dict[Hashable, tuple[pd.Series, float]] = {}
        for name in reference.columns:
            require_values(reference[name], name)
            if kind_of(reference[name]) == NUMERICAL:
                values = numbers(fit_rows[name], name, "reference")
                finite = values[np.isfinite(values)]
                if not finite.size:  # every value fell in the held-out half
                    finite = numbers(reference[name], name, "reference")
                self.medians[name] = float(np.nanmedian(finite))
            else:
                labels, missing = labels_of(fit_rows[name])
                found = pd.Series(labels[~missing]).value_counts() / len(labels)
                self.shares[name] = (found, float(missing.mean()))
        encoded = self._encode(fit_rows, "reference")
        self.mean = encoded.mean(axis=0)
        spread = encoded.std(axis=0)
        self.scale = np.where(spread > 0, spread, 1.0)

    def transform(self, frame: pd.DataFrame, side: str) -> Floats:
        return np.asarray((self._encode(frame, side) - self.mean) / self.scale)

    def _encode(self, frame: pd.DataFrame, side: str) -> Floats:
        columns = []
        for name in frame.columns:
            if name in self.medians:
                values = numbers(frame[name], name, side)
                columns.append(np.where(np.isnan(values), self.medians[name], values))
            else:
                found, missing_share = self.shares[name]
                labels, missing = labels_of(frame[name])
                encoded = np.full(len(labels), missing_share)
                shares = pd.Series(labels[~missing]).map(found).fillna(0.0)
                encoded[~missing] = shares.to_numpy(dtype=np.float64)
                columns.append(encoded)
        return np.column_stack(columns)


def domain_matrix(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[Floats, NDArray[Any]]:
    """Both sides stacked as floats: numbers with NaN, categories as codes ranked by count."""
    columns, categorical = [], []
    for name in reference.columns:
        require_values(reference[name], name)
        numerical = kind_of(reference[name]) == NUMERICAL
        if numerical:
            parts = [numbers(reference[name], name, "reference"),
                     numbers(current[name], name, "current data")]
            columns.append(np.concatenate(parts))
        else:
            (ref_labels, ref_missing), (cur_labels, cur_missing) = (
                labels_of(reference[name]), labels_of(current[name])
            )
            columns.append(codes(np.concatenate([ref_labels, cur_labels]),
                                  np.concatenate([ref_missing, cur_missing])))
        categorical.append(not numerical)
    return np.column_stack(columns), np.array(categorical)


def codes(labels: NDArray[Any], missing: NDArray[np.bool_]) -> Floats:
    """Codes 0, 1, … by decreasing count over both sides (labels only: no domain leaks in)."""
    codes = np.full(len(labels), np.nan)
    levels, inverse, counts = np.unique(labels[~missing], return_inverse=True, return_counts=True)
    rank = np.empty(len(levels), dtype=np.float64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(levels))
    codes[~missing] = np.minimum(rank, MAX_CODES)[inverse]
    return codes


def checked_frame(data: Any, side: str) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise InvalidInput(f"the {side} must be a pandas DataFrame, not {type(data).__name__}")
    if data.shape[1] == 0:
        raise InvalidInput(f"the {side} has no columns")
    if len(data) == 0:
        raise InvalidInput(f"the {side} has no rows")
    if not data.columns.is_unique:
        twice = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
        raise InvalidInput(f"column names must be unique; the {side} repeats {listing(twice)}")
    return data


def common_columns(reference: pd.DataFrame, current: pd.DataFrame) -> list[Hashable]:
    common: list[Hashable] = [name for name in reference.columns if name in current.columns]
    if not common:
        raise InvalidInput(
            "the reference and the current data have no column in common (reference: "
            f"{listing(reference.columns)}; current: {listing(current.columns)})"
        )
    return common


def listing(names: Any, most: int = 5) -> str:
    shown = [str(name) for name in list(names)[:most]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def sample(frame: pd.DataFrame, max_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame
    return frame.iloc[np.sort(rng.choice(len(frame), max_rows, replace=False))]


def numbers(series: pd.Series, name: Hashable, side: str) -> Floats:
    """A new float array (the frame is never written to), ±inf as missing."""
    try:
        values = as_floats(series)
    except InvalidInput as error:
        raise InvalidInput(
            f"column {str(name)!r} is numerical in the reference, but in the {side} {error}"
        ) from None
    return np.where(np.isfinite(values), values, np.nan)


def labels_of(series: pd.Series) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Each value's category label (``label_of``), and which values are missing."""
    missing = series.isna().to_numpy(dtype=bool)
    raw = series.to_numpy(dtype=object)
    labels = ["" if gone else label_of(value) for value, gone in zip(raw, missing, strict=True)]
    return np.array(labels, dtype=str), missing


def require_values(series: pd.Series, name: Hashable) -> None:
    present = series.notna().to_numpy(dtype=bool)
    if kind_of(series) == NUMERICAL:
        present = present & np.isfinite(numbers(series, name, "reference"))
    if not present.any():
        raise InvalidInput(f"column {str(name)!r} has no values in the reference; drop it")


def check_share(name: str, value: float) -> None:
    if not isinstance(value, float | int) or isinstance(value, bool) or not 0 < value < 1:
        raise InvalidInput(f"{name} must be between 0 and 1, not {value!r}")
