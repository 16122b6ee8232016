"""Monitoring engine (DESIGN.md §5): mergeable profiles of tables (``profile``, ``sketches``),
drift per column with thresholds calibrated to the window size (``drift``, ``calibration``) and
across columns (``multivariate``), data-quality rules and train-serve skew (``quality``,
``skew``), performance from labels or estimated without them (``performance``, ``cbpe``), and
reports that join them, as data or HTML (``report``, ``html``). Pure math on numpy, pandas,
pyarrow, scipy, scikit-learn and Apache DataSketches; it knows nothing of the registry, the
server or the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.monitoring._tables import FORMAT_VERSION
from modelyard.monitoring.calibration import (
    DriftResult,
    Threshold,
    calibrate,
    column_drift,
    dataset_drift,
)
from modelyard.monitoring.drift import METHODS, DriftMethod, default_method
from modelyard.monitoring.profile import ColumnProfile, TableProfile, profile_table
from modelyard.monitoring.quality import ColumnRule, Finding, QualityRules, load_overrides
from modelyard.monitoring.sketches import (
    OTHER,
    QUANTILE_RANKS,
    CategoricalSketch,
    CategoricalSummary,
    NumericSketch,
    NumericSummary,
)

# Eager, unlike the modules below: the function shares its module's name, and a lazy attribute
# would give the module once something had imported modelyard.monitoring.skew.
from modelyard.monitoring.skew import skew

if TYPE_CHECKING:
    from modelyard.monitoring.cbpe import CBPE, Estimate
    from modelyard.monitoring.html import render_html
    from modelyard.monitoring.multivariate import (
        MultivariateResult,
        PCAReconstruction,
        domain_classifier,
        pca_reconstruction,
    )
    from modelyard.monitoring.performance import classification_metrics, regression_metrics
    from modelyard.monitoring.report import (
        ColumnReport,
        Report,
        ReportOptions,
        Roles,
        build_report,
    )

__all__ = [
    "CBPE",
    "FORMAT_VERSION",
    "METHODS",
    "OTHER",
    "QUANTILE_RANKS",
    "CategoricalSketch",
    "CategoricalSummary",
    "ColumnProfile",
    "ColumnReport",
    "ColumnRule",
    "DriftMethod",
    "DriftResult",
    "Estimate",
    "Finding",
    "MultivariateResult",
    "NumericSketch",
    "NumericSummary",
    "PCAReconstruction",
    "QualityRules",
    "Report",
    "ReportOptions",
    "Roles",
    "TableProfile",
    "Threshold",
    "build_report",
    "calibrate",
    "classification_metrics",
    "column_drift",
    "dataset_drift",
    "default_method",
    "domain_classifier",
    "load_overrides",
    "pca_reconstruction",
    "profile_table",
    "regression_metrics",
    "render_html",
    "skew",
]

_LAZY = {
    "CBPE": "cbpe",
    "Estimate": "cbpe",
    "render_html": "html",
    "MultivariateResult": "multivariate",
    "PCAReconstruction": "multivariate",
    "domain_classifier": "multivariate",
    "pca_reconstruction": "multivariate",
    "classification_metrics": "performance",
    "regression_metrics": "performance",
    "ColumnReport": "report",
    "Report": "report",
    "ReportOptions": "report",
    "Roles": "report",
    "build_report": "report",
}


def __getattr__(name: str) -> Any:
    # Imported on first use: these load scikit-learn, which the registry API, the server and
    # most CLI commands (all importing profiles from here) need not pay for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
