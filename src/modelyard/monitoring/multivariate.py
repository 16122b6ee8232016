"""Multivariate drift: changes that no single column shows, and which columns carry them.

Two methods compare a reference table with a current one, each with a threshold calibrated so
that a current window from the reference's distribution is flagged with probability ``alpha``,
whatever its number of rows.

**Domain classifier** (Friedman 2003; Lopez-Paz & Oquab 2017, "classifier two-sample tests").
A ``HistGradientBoostingClassifier`` (missing values and categories handled natively, early
stopping) learns to tell current rows from reference rows; the score is the mean ROC AUC over
``folds`` stratified folds, 0.5 when it cannot. The null distribution:

- each fold's AUC is scored by a model that never saw the fold, so under the null it is exactly
  a Mann-Whitney statistic: mean 0.5, variance ``V_k`` from the tie-corrected formula on the
  fold's own scores (ties, e.g. from categories, shrink it);
- the folds are not independent. A pair of rows in folds a and b enters fold a's AUC through the
  label of the row in b, which trained a's model, and fold b's AUC the other way round. For a
  learner that responds linearly to its labels (a boosted model early-stopped on noise is close)
  the sum over folds counts each such pair twice, so the mean's variance is at most twice the
  independent-folds value ``sum(V_k) / folds**2``, with equality for a symmetric learner (cell
  means on discrete data), at any number of folds;
- the threshold is ``0.5 + z(1 - alpha) * sqrt(2 * sum(V_k)) / folds``.

Measured with HGB (150 to 300 no-drift draws per case: Gaussian columns, categories with NaN,
2- and 3-level columns; 60 to 4,000 rows a side; 2 and 5 folds), the variance of the mean AUC
was 1.3 to 1.9 times the independent-folds value. The plain Mann-Whitney threshold (factor 1)
flagged 7 % of the draws at alpha = 5 %; the factor 2 flagged 1.5 % to 6 %, near 5 % only where
the learner is nearly symmetric (few-level columns). This function, on numbers with NaN and a
category, flagged 1.5 % to 4 % at alpha = 5 % and 0.3 % to 0.5 % at 1 % (200 to 300 draws at
500 and 2,000 rows a side, and 5,000 against 300): conservative where the learner is smooth. A
permutation null (refit on shuffled domain labels) is exact, but costs one cross-validation per
permutation, and with 19 permutations the t quantile its estimated variance needs left its
threshold only about 7 % lower than this bound, at 20 times the cost. Contributions are the
permutation importance of the AUC on the held-out folds: the AUC lost when one column is
shuffled within a fold, summed over folds, negatives clipped. The fits run on one thread: each
is small, and OpenMP's start-up in every fit and prediction made the whole 8 to 12 times slower
on two cores.

**PCA reconstruction** (NannyML's data reconstruction drift). Columns are prepared as NannyML
does: missing numbers imputed with the reference median, categories frequency-encoded (a
category's share of the reference; unseen categories 0, missing values their own category), all
standardised; PCA keeps the components that explain ``variance`` of the reference's variance
(at most one fewer than the columns, so something is left to reconstruct). The score is the
mean Euclidean distance between a current row and its reconstruction. NannyML sets its
threshold at three standard deviations of chunk errors on the rows the PCA was fit on, which
reconstruct better than new rows and at one chunk size. Here half the reference fits the
encoder and the PCA and the other half, ``H`` rows, is held out: its errors are what new rows
from the reference's distribution score. The threshold for windows of ``n`` rows is a
studentized pooled bootstrap (bootstrap-t; Efron & Tibshirani 1993, ch. 12 and 16): draw ``n``
and ``H`` errors with replacement from the held-out ones, studentize their difference of means
by ``sd(H draws) * sqrt(1/n + 1/H)``, and add the ``1 - alpha`` quantile of that, times the
held-out ``sd * sqrt(1/n + 1/H)``, to the held-out mean. The held-out mean's own noise is in
the null, so the rate holds when windows are larger than the reference. Studentizing matters
for small references, whose low means come with low spreads (errors are skewed): with 150 or
250 held-out rows the plain percentile bootstrap of the difference flagged 1.6 % to 2.1 % of
no-drift windows at alpha = 1 %, the bootstrap-t 1.0 % to 1.3 % (1,000 draws each).
Contributions are each column's share of the excess of the current mean squared reconstruction
error over the held-out one.

What each sees: the domain classifier any change in the joint distribution (a shifted column, a
changed correlation, more missing values, a new category); PCA reconstruction a change in the
correlation structure, but not a shift along the kept components (a mean shift of one column
mostly goes unseen) nor a change in the missing share (imputed values look typical). Pass
feature columns only: an id or timestamp column tells the two sides apart by itself, and shows
as the top contributor. Both sample at most ``max_rows`` rows a side with the seed, and say how
many they used.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats  # type: ignore[import-untyped, unused-ignore]
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped, unused-ignore]

from modelyard.errors import InvalidInput
from modelyard.monitoring._multivariate_tables import (
    Encoder,
    check_share,
    checked_frame,
    common_columns,
    domain_matrix,
    listing,
    sample,
)
from modelyard.monitoring._tables import check_int
from modelyard.monitoring.calibration import _order

Floats = NDArray[np.float64]
_MAX_ROWS = 10**9


@dataclass(frozen=True)
class MultivariateResult:
    """One multivariate verdict, as the report's JSON shows it.

    ``score`` is the cross-validated ROC AUC (``"domain_classifier"``) or the mean
    reconstruction error of the current rows (``"pca_reconstruction"``); a score above
    ``threshold`` is drift at false-alarm rate ``alpha``. ``contributions`` maps each column to
    its share of the signal, largest first, summing to 1 (all 0 when no column carries any);
    they explain a detected drift and are noise otherwise. ``rows`` counts the reference and
    current rows used after sampling.
    """

    method: str
    score: float
    threshold: float
    drift_detected: bool
    contributions: dict[str, float]
    rows: tuple[int, int]
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict.

        >>> result = MultivariateResult("pca_reconstruction", 1.2, 1.1, True, {}, (9, 5), 0.01)
        >>> result.to_dict()["rows"]
        [9, 5]
        """
        return {
            "method": self.method, "score": self.score, "threshold": self.threshold,
            "alpha": self.alpha, "drift_detected": self.drift_detected,
            "contributions": dict(self.contributions), "rows": list(self.rows),
        }


def domain_classifier(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    alpha: float = 0.01,
    max_rows: int = 20_000,
    folds: int = 5,
    seed: int = 0,
) -> MultivariateResult:
    """Whether a classifier tells current rows from reference rows better than chance.

    Parameters
    ----------
    reference, current
        The two tables; their common columns are compared. Numbers (NaN and ±inf are missing)
        and categories (strings, booleans, anything not numeric) are both taken as they are.
    alpha
        False-alarm rate: the chance of flagging a current table from the reference's
        distribution.
    max_rows
        Rows sampled from each side at most, which bounds time and memory (about 1 s at 20k
        rows a side and 11 columns, 0.25 s at 1k).
    folds
        Cross-validation folds; each side needs at least ``2 * folds`` rows. With fewer than
        about 25 rows a side the model cannot split (20 rows a leaf) and the score stays 0.5.
    seed
        Fixes the sampled rows, the folds, the model and the importance shuffles.

    Returns
    -------
    MultivariateResult
        ``score`` is the mean held-out ROC AUC; contributions are permutation importances.

    Notes
    -----
    The module docstring derives the threshold and what it was measured to do.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> reference = pd.DataFrame(rng.normal(size=(1000, 4)), columns=["a", "b", "c", "d"])
    >>> current = pd.DataFrame(rng.normal(size=(1000, 4)), columns=["a", "b", "c", "d"])
    >>> domain_classifier(reference, current).drift_detected
    False
    >>> result = domain_classifier(reference, current.assign(c=current["c"] + 0.5))
    >>> result.drift_detected, next(iter(result.contributions))
    (True, 'c')
    """
    check_share("alpha", alpha)
    folds = check_int("folds", folds, 2, 100)
    max_rows = check_int("max_rows", max_rows, 2 * folds, _MAX_ROWS)
    check_int("seed", seed, 0, 2**32 - 1)  # scikit-learn's random_state range
    columns = common_columns(checked_frame(reference, "reference"),
                             checked_frame(current, "current data"))
    rng = np.random.default_rng(seed)
    ref = sample(reference, max_rows, rng)[columns]
    cur = sample(current, max_rows, rng)[columns]
    for side, frame in (("reference", ref), ("current data", cur)):
        if len(frame) < 2 * folds:
            raise InvalidInput(
                f"the domain classifier needs at least {2 * folds} rows a side (2 × folds); "
                f"the {side} has {len(frame)}"
            )
    x, categorical = domain_matrix(ref, cur)
    y = np.repeat([0, 1], [len(ref), len(cur)])
    with threadpool_limits(limits=1, user_api="openmp"):  # see the module docstring
        aucs, variances, lost = _cross_validate(x, y, categorical, folds, seed, rng)
    score = float(np.mean(aucs))
    spread = math.sqrt(2 * sum(variances)) / folds
    threshold = 0.5 + float(stats.norm.ppf(1 - alpha)) * spread
    return MultivariateResult(
        "domain_classifier", score, threshold, score > threshold,
        _shares(ref.columns, lost), (len(ref), len(cur)), float(alpha),
    )


class PCAReconstruction:
    """PCA reconstruction error, fit once on a reference and scored on many windows.

    Parameters
    ----------
    variance
        Share of the reference's (standardised) variance the kept components explain.
    alpha
        False-alarm rate per window.
    n_boot
        Bootstrap draws per window size; at least 1/alpha - 1.
    seed
        Fixes the sampled rows, the fit/held-out split and the bootstrap.
    max_rows
        Rows sampled at most from the reference and from each window.

    Notes
    -----
    Half the reference fits the imputation, encoding, scaling and PCA; the other half is held
    out and sets the threshold, which is computed once per window size and kept. Learned
    attributes end in ``_``. The module docstring describes the method and its limits.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> def table(correlated):
    ...     x, noise = rng.normal(size=2000), rng.normal(size=2000)
    ...     y = 0.95 * x + 0.31 * noise if correlated else noise
    ...     return pd.DataFrame({"x": x, "y": y, "z": rng.normal(size=2000)})
    >>> detector = PCAReconstruction().fit(table(correlated=True))
    >>> detector.score(table(correlated=True)).drift_detected
    False
    >>> result = detector.score(table(correlated=False))
    >>> result.drift_detected, sorted(list(result.contributions)[:2]), result.rows
    (True, ['x', 'y'], (2000, 2000))
    """

    def __init__(
        self,
        variance: float = 0.95,
        alpha: float = 0.01,
        n_boot: int = 1_000,
        seed: int = 0,
        max_rows: int = 20_000,
    ) -> None:
        self.variance = variance
        self.alpha = alpha
        self.n_boot = n_boot
        self.seed = seed
        self.max_rows = max_rows

    def fit(self, reference: pd.DataFrame) -> Self:
        """Learn the reference's structure and hold half of it out for the threshold."""
        check_share("variance", self.variance)
        check_share("alpha", self.alpha)
        check_int("max_rows", self.max_rows, 1, _MAX_ROWS)
        check_int("seed", self.seed, 0, 2**32 - 1)
        if check_int("n_boot", self.n_boot, 1, 10**7) < _order(self.alpha, self.n_boot):
            needed = math.ceil(1 / self.alpha - 1)
            raise InvalidInput(
                f"n_boot={self.n_boot} cannot resolve alpha={self.alpha}; use at least {needed}"
            )
        rng = np.random.default_rng(self.seed)
        frame = sample(checked_frame(reference, "reference"), self.max_rows, rng)
        rows, width = frame.shape
        if width < 2:
            raise InvalidInput("PCA reconstruction needs at least 2 columns")
        needed = max(20, 2 * (width + 1))
        if rows < needed:
            raise InvalidInput(
                f"PCA reconstruction needs at least {needed} reference rows for {width} columns "
                f"(half fit the PCA, half set the threshold); the reference has {rows}"
            )
        order = rng.permutation(rows)
        fit_rows, held_rows = frame.iloc[order[: rows // 2]], frame.iloc[order[rows // 2 :]]
        encoder = Encoder(frame, fit_rows)
        encoded = encoder.transform(fit_rows, "reference")
        if not np.any(encoded.std(axis=0) > 0):
            raise InvalidInput("every column is constant in the reference: nothing to reconstruct")
        pca = PCA(svd_solver="full").fit(encoded)
        explained = np.cumsum(pca.explained_variance_ratio_)
        kept = min(int(np.searchsorted(explained, self.variance - 1e-12)) + 1, width - 1)
        self.columns_: list[Hashable] = list(frame.columns)
        self.reference_rows_ = rows
        self.encoder_ = encoder
        self.center_: Floats = pca.mean_
        self.components_: Floats = pca.components_[:kept]
        residuals = self._residuals(encoder.transform(held_rows, "reference"))
        self.reference_errors_: Floats = np.sqrt(np.sum(residuals**2, axis=1))
        self.reference_column_errors_: Floats = np.mean(residuals**2, axis=0)
        self._thresholds: dict[int, float] = {}
        return self

    def score(self, current: pd.DataFrame) -> MultivariateResult:
        """Score a window against the reference, with the threshold for its number of rows."""
        if not hasattr(self, "components_"):
            raise InvalidInput("fit the PCA on a reference before scoring: call fit(reference)")
        frame = checked_frame(current, "current data")
        absent = [str(name) for name in self.columns_ if name not in frame.columns]
        if absent:
            raise InvalidInput(
                f"the current data lacks {len(absent)} column(s) the PCA was fit on: "
                f"{listing(absent)}"
            )
        window = sample(frame, self.max_rows, np.random.default_rng(self.seed))[self.columns_]
        residuals = self._residuals(self.encoder_.transform(window, "current data"))
        score = float(np.mean(np.sqrt(np.sum(residuals**2, axis=1))))
        threshold = self._threshold(len(window))
        excess = np.mean(residuals**2, axis=0) - self.reference_column_errors_
        return MultivariateResult(
            "pca_reconstruction", score, threshold, score > threshold,
            _shares(self.columns_, excess), (self.reference_rows_, len(window)),
            float(self.alpha),
        )

    def _residuals(self, encoded: Floats) -> Floats:
        centered = encoded - self.center_
        return np.asarray(centered - (centered @ self.components_.T) @ self.components_)

    def _threshold(self, rows: int) -> float:
        if rows not in self._thresholds:
            errors, held = self.reference_errors_, len(self.reference_errors_)
            spread = math.sqrt(1 / rows + 1 / held)
            rng = np.random.default_rng([self.seed, rows])
            studentized = np.empty(self.n_boot)
            for draw in range(self.n_boot):  # a loop keeps memory at one window, not n_boot
                window = errors[rng.integers(0, held, rows)].mean()
                reference = errors[rng.integers(0, held, held)]
                scale = max(float(reference.std()), 1e-12) * spread
                studentized[draw] = (window - reference.mean()) / scale
            quantile = np.sort(studentized)[_order(self.alpha, self.n_boot) - 1]
            self._thresholds[rows] = float(errors.mean() + quantile * errors.std() * spread)
        return self._thresholds[rows]


def pca_reconstruction(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    variance: float = 0.95,
    alpha: float = 0.01,
    n_boot: int = 1_000,
    max_rows: int = 20_000,
    seed: int = 0,
) -> MultivariateResult:
    """:class:`PCAReconstruction` fit on ``reference`` and scored on ``current`` in one call.

    Only the common columns are compared; to score many windows, fit once and call ``score``.

    >>> rng = np.random.default_rng(1)
    >>> same = [pd.DataFrame(rng.normal(size=(500, 3)), columns=list("abc")) for _ in "12"]
    >>> pca_reconstruction(*same).drift_detected
    False
    """
    columns = common_columns(checked_frame(reference, "reference"),
                             checked_frame(current, "current data"))
    detector = PCAReconstruction(variance, alpha, n_boot, seed, max_rows)
    if len(columns) < reference.shape[1]:
        reference = reference[columns]
    return detector.fit(reference).score(current)  # score reads the fitted columns only


def _cross_validate(
    x: Floats, y: NDArray[Any], categorical: NDArray[Any], folds: int, seed: int,
    rng: np.random.Generator,
) -> tuple[list[float], list[float], Floats]:
    """Each fold's held-out AUC, its null variance, and the AUC each column's shuffle lost."""
    aucs, variances, lost = [], [], np.zeros(x.shape[1])
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, y):
        model = HistGradientBoostingClassifier(
            max_leaf_nodes=15, early_stopping=True, n_iter_no_change=5,
            # at least 2 validation rows, one per side, however few the rows
            validation_fraction=max(0.1, 2 / len(train)),
            categorical_features=categorical, random_state=seed,
        ).fit(x[train], y[train])
        held, truth = x[test], y[test]
        scores = model.decision_function(held)
        auc = float(roc_auc_score(truth, scores))
        aucs.append(auc)
        variances.append(_mann_whitney_variance(scores, truth))
        for j in range(x.shape[1]):
            kept = held[:, j].copy()
            held[:, j] = rng.permutation(kept)
            lost[j] += auc - float(roc_auc_score(truth, model.decision_function(held)))
            held[:, j] = kept
    return aucs, variances, lost


def _mann_whitney_variance(scores: Floats, labels: NDArray[Any]) -> float:
    """Variance of the AUC of random labels on these scores (Mann & Whitney 1947, ties)."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    total = len(labels)
    ties = np.unique(scores, return_counts=True)[1].astype(np.float64)
    correction = float(np.sum(ties**3 - ties)) / (total * (total - 1))
    return (total + 1 - correction) / (12 * positives * negatives)


def _shares(columns: Any, signal: Floats) -> dict[str, float]:
    positive = np.clip(signal, 0, None)
    total = float(positive.sum())
    shares = positive / total if total > 0 else positive
    ranked = sorted(zip((str(c) for c in columns), shares, strict=True), key=lambda p: -p[1])
    return {name: float(share) for name, share in ranked}
