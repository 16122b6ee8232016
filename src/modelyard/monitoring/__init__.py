"""Monitoring engine: mergeable profiles of tables, drift methods computed from them, and
thresholds calibrated to the window size (DESIGN.md §5).

Pure math on numpy, pandas, pyarrow, scipy and Apache DataSketches; it knows nothing of the
registry, the server or the command line.
"""

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
from modelyard.monitoring.sketches import (
    OTHER,
    QUANTILE_RANKS,
    CategoricalSketch,
    CategoricalSummary,
    NumericSketch,
    NumericSummary,
)

__all__ = [
    "FORMAT_VERSION",
    "METHODS",
    "OTHER",
    "QUANTILE_RANKS",
    "CategoricalSketch",
    "CategoricalSummary",
    "ColumnProfile",
    "DriftMethod",
    "DriftResult",
    "NumericSketch",
    "NumericSummary",
    "TableProfile",
    "Threshold",
    "calibrate",
    "column_drift",
    "dataset_drift",
    "default_method",
    "profile_table",
]
