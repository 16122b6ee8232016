"""Monitoring engine: mergeable profiles of tables (DESIGN.md §5).

Pure math on numpy, pandas, pyarrow, scipy and Apache DataSketches; it knows nothing of the
registry, the server or the command line.
"""

from modelyard.monitoring._tables import FORMAT_VERSION
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
    "OTHER",
    "QUANTILE_RANKS",
    "CategoricalSketch",
    "CategoricalSummary",
    "ColumnProfile",
    "NumericSketch",
    "NumericSummary",
    "TableProfile",
    "profile_table",
]
