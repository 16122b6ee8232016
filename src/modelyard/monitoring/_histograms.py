"""Reference-vs-current histograms read from two sketches, for reports and dashboards.

Their size depends on the bin count, never on the rows: the HTML report of a 10M-row table is
as small as that of a 1k-row one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.monitoring.sketches import OTHER, CategoricalSketch, NumericSketch

BINS = 24
TOP_LABELS = 12


def numeric(reference: NumericSketch, current: NumericSketch, bins: int = BINS) -> dict[str, Any]:
    """Shares of finite values in ``bins`` equal-width bins spanning both sides' 0.5 to 99.5 %
    quantiles, plus the shares below and above that span."""
    ends = [
        float(value)
        for sketch in (reference, current)
        if sketch.n
        for value in sketch.quantiles([0.005, 0.995])
    ]
    if not ends:
        return {"type": "numeric", "edges": [], "reference": [], "current": []}
    low, high = min(ends), max(ends)
    if high <= low:
        high = low + max(abs(low), 1.0) * 1e-6
    edges = np.linspace(low, high, bins + 1)

    def shares(sketch: NumericSketch) -> list[float]:
        if not sketch.n:
            return [0.0] * (bins + 2)
        cdf = np.concatenate([[0.0], sketch.cdf(edges), [1.0]])
        # the first edge's cdf includes values equal to it: count them in the first bin
        below = float(sketch.cdf([np.nextafter(low, -np.inf)])[0])
        cdf[1] = below
        return [round(float(v), 6) for v in np.clip(np.diff(cdf), 0.0, 1.0)]

    return {
        "type": "numeric",
        "edges": [float(edge) for edge in edges],
        "reference": shares(reference),  # [below, bin 1 … bin n, above]
        "current": shares(current),
    }


def categorical(reference: CategoricalSketch, current: CategoricalSketch) -> dict[str, Any]:
    """Shares of the most common labels on either side; the rest pooled as ``__other__``."""
    ref, cur = reference.counts(), current.counts()
    ref_total, cur_total = sum(ref.values()) or 1.0, sum(cur.values()) or 1.0
    labels = sorted(
        (set(ref) | set(cur)) - {OTHER},
        key=lambda label: -max(ref.get(label, 0.0) / ref_total, cur.get(label, 0.0) / cur_total),
    )[:TOP_LABELS]

    def shares(counts: dict[str, float], total: float) -> list[float]:
        shown = [counts.get(label, 0.0) / total for label in labels]
        return [round(v, 6) for v in [*shown, max(0.0, 1.0 - sum(shown))]]

    return {
        "type": "categorical",
        "labels": [*labels, OTHER],
        "reference": shares(ref, ref_total),
        "current": shares(cur, cur_total),
    }
