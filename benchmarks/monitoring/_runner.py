"""What every tool's runner shares: the command line, phase timing and the JSON it prints.

Standard library only, so each tool's own venv can import it.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident set size now, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Run:
    """Collects phase timings; :meth:`emit` prints the one JSON line the driver reads."""

    def __init__(self, tool: str, version: str) -> None:
        parser = argparse.ArgumentParser()
        parser.add_argument("reference", type=Path)
        parser.add_argument("current", type=Path)
        parser.add_argument("--rows", type=int, required=True)
        parser.add_argument("--calibration-rows", type=int, default=100_000)
        parser.add_argument("--calibration-window", type=int, default=100_000)
        parser.add_argument("--null-tables", type=Path, default=None)
        parser.add_argument("--workers", type=int, default=1)
        self.args = parser.parse_args()
        self.tool, self.version = tool, version
        self.phases: dict[str, float] = {}
        self.extra: dict[str, Any] = {}
        self.rss_after_imports_mb = current_rss_mb()
        self._start = time.perf_counter()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start

    def emit(self, drifted: list[str], columns: int, **extra: Any) -> None:
        record = {
            "tool": self.tool,
            "version": self.version,
            "rows": self.args.rows,
            "reference": str(self.args.reference),
            "current": str(self.args.current),
            "seconds": time.perf_counter() - self._start,
            "phases": self.phases,
            "peak_rss_mb_self": rss_mb(),
            "rss_after_imports_mb": self.rss_after_imports_mb,
            "columns": columns,
            "drifted_columns": sorted(drifted),
            **self.extra,
            **extra,
        }
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
