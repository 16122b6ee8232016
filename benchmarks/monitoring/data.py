"""Seeded reference and current tables for the monitoring benchmark, written as Parquet.

    python benchmarks/monitoring/data.py [--sizes 1k,100k,1M,10M] [--workdir DIR]

Each size gets three files of the same 25 columns (20 numeric, 5 categorical):

- ``reference.parquet``;
- ``current-nodrift.parquet``: a fresh sample of the reference's distribution (other seed);
- ``current-drift.parquet``: the same distribution except for the columns in :data:`PLANTED`.

Tables are generated and written one row group of at most ``ROW_GROUP`` rows at a time, so
10M rows take as much memory as 1M. Files are reused when ``meta.json`` says they were made
by this generator version with the same seed; only the standard library, numpy and pyarrow
are used, so every tool's venv can import this module.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

VERSION = 1  # bump when the columns or the planted shifts change
DEFAULT_WORKDIR = Path(
    os.environ.get("BENCH_MONITORING_WORKDIR", "/tmp/modelyard-bench-monitoring")
)
ROW_GROUP = 1_000_000
SIZES = {"1k": 1_000, "100k": 100_000, "1M": 1_000_000, "10M": 10_000_000}
PAIRS = ("nodrift", "drift")
SEEDS = {"reference": 1, "current-nodrift": 2, "current-drift": 3}

# Numeric columns: (name, family, parameters, share of NaN).
NUMERIC = [
    ("n00_normal", "normal", (0.0, 1.0), 0.0),
    ("n01_normal", "normal", (50.0, 10.0), 0.0),
    ("n02_normal", "normal", (-3.0, 0.5), 0.05),
    ("n03_normal", "normal", (1000.0, 250.0), 0.0),
    ("n04_normal", "normal", (0.0, 1e-3), 0.0),
    ("n05_normal", "normal", (7.0, 2.0), 0.01),
    ("n06_lognormal", "lognormal", (0.0, 1.0), 0.0),
    ("n07_lognormal", "lognormal", (3.0, 0.5), 0.0),
    ("n08_lognormal", "lognormal", (1.0, 1.5), 0.10),
    ("n09_lognormal", "lognormal", (2.0, 0.8), 0.0),
    ("n10_lognormal", "lognormal", (5.0, 0.3), 0.0),
    ("n11_poisson", "poisson", (0.5,), 0.0),
    ("n12_poisson", "poisson", (2.0,), 0.0),
    ("n13_poisson", "poisson", (20.0,), 0.02),
    ("n14_poisson", "poisson", (4.0,), 0.0),
    ("n15_negbinom", "negbinom", (3, 0.2), 0.0),
    ("n16_negbinom", "negbinom", (1, 0.05), 0.0),
    ("n17_uniform", "uniform", (0.0, 1.0), 0.0),
    ("n18_exponential", "exponential", (2.0,), 0.20),
    ("n19_bimodal", "bimodal", (-2.0, 2.0, 0.7), 0.0),
]
# Categorical columns: (name, levels, Zipf exponent of the level shares, share missing).
CATEGORICAL = [
    ("c0_3", 3, 0.5, 0.0),
    ("c1_10", 10, 1.0, 0.0),
    ("c2_30", 30, 1.0, 0.02),
    ("c3_100", 100, 1.1, 0.0),
    ("c4_200", 200, 1.2, 0.0),
]
# The drift pair's current table differs from the reference in these columns only.
PLANTED = {
    "n00_normal": "mean +0.5 sd (large)",
    "n03_normal": "mean +0.1 sd (small)",
    "n09_lognormal": "log-sd 0.8 -> 1.0 (wider tail, same median)",
    "n14_poisson": "lambda 4 -> 4.4 (+10 %)",
    "c1_10": "share of the most frequent level +5 points, the rest scaled down",
    "c4_200": "3 % of rows take 20 levels never seen in the reference",
}
COLUMNS = [name for name, *_ in NUMERIC] + [name for name, *_ in CATEGORICAL]


def _numeric(rng: np.random.Generator, family: str, params: tuple, rows: int) -> np.ndarray:
    if family == "normal":
        return rng.normal(params[0], params[1], rows)
    if family == "lognormal":
        return rng.lognormal(params[0], params[1], rows)
    if family == "poisson":
        return rng.poisson(params[0], rows).astype(np.int64)
    if family == "negbinom":
        return rng.negative_binomial(params[0], params[1], rows).astype(np.int64)
    if family == "uniform":
        return rng.uniform(params[0], params[1], rows)
    if family == "exponential":
        return rng.exponential(params[0], rows)
    if family == "bimodal":
        low, high, share = params
        return np.where(
            rng.random(rows) < share, rng.normal(low, 1.0, rows), rng.normal(high, 0.5, rows)
        )
    raise ValueError(family)


def _shares(levels: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, levels + 1) ** exponent
    return weights / weights.sum()


def _chunk(rng: np.random.Generator, rows: int, drift: bool) -> pa.Table:
    arrays, names = [], []
    for name, family, params, nan_share in NUMERIC:
        if drift and name == "n00_normal":
            params = (params[0] + 0.5 * params[1], params[1])
        elif drift and name == "n03_normal":
            params = (params[0] + 0.1 * params[1], params[1])
        elif drift and name == "n09_lognormal":
            params = (params[0], 1.0)
        elif drift and name == "n14_poisson":
            params = (4.4,)
        values = _numeric(rng, family, params, rows)
        mask = rng.random(rows) < nan_share if nan_share else None
        if values.dtype.kind == "i":  # integer counts stay integers; missing ones are nulls
            arrays.append(pa.array(values, mask=mask))
        else:
            if mask is not None:
                values[mask] = np.nan
            arrays.append(pa.array(values))
        names.append(name)
    for name, levels, exponent, missing in CATEGORICAL:
        labels = np.array([f"{name[:2]}_{i:03d}" for i in range(levels)], dtype=object)
        shares = _shares(levels, exponent)
        if drift and name == "c1_10":
            shares = np.concatenate(
                [[shares[0] + 0.05], shares[1:] * (1 - shares[0] - 0.05) / shares[1:].sum()]
            )
        codes = np.searchsorted(np.cumsum(shares), rng.random(rows), side="right")
        codes = np.minimum(codes, levels - 1)
        if drift and name == "c4_200":
            labels = np.concatenate([labels, [f"c4_new_{i:02d}" for i in range(20)]])
            new = rng.random(rows) < 0.03
            codes = np.where(new, levels + rng.integers(0, 20, rows), codes)
        mask = rng.random(rows) < missing if missing else None
        indices = pa.array(codes.astype(np.int32), mask=mask)
        dictionary = pa.DictionaryArray.from_arrays(indices, pa.array(labels, pa.string()))
        arrays.append(dictionary.cast(pa.string()))  # plain strings, as most tables hold them
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def write_table(path: Path, rows: int, seed: int, drift: bool) -> None:
    """Write ``rows`` rows in row groups of at most ``ROW_GROUP``, one generated at a time."""
    streams = np.random.SeedSequence(seed).spawn((rows + ROW_GROUP - 1) // ROW_GROUP)
    partial = path.with_suffix(".partial")
    writer = None
    try:
        for index, stream in enumerate(streams):
            part = _chunk(
                np.random.default_rng(stream), min(ROW_GROUP, rows - index * ROW_GROUP), drift
            )
            if writer is None:
                writer = pq.ParquetWriter(partial, part.schema, compression="snappy")
            writer.write_table(part, row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()
    partial.replace(path)


def paths(size: str, workdir: Path = DEFAULT_WORKDIR) -> dict[str, Path]:
    """The files of one size: ``reference``, ``current-nodrift``, ``current-drift``."""
    folder = workdir / size
    return {name: folder / f"{name}.parquet" for name in SEEDS}


def ensure(size: str, workdir: Path = DEFAULT_WORKDIR, seed: int = 0) -> dict[str, Path]:
    """Generate the files of ``size`` unless this version already made them with ``seed``."""
    rows = SIZES[size]
    files = paths(size, workdir)
    meta_path = workdir / size / "meta.json"
    meta = {
        "version": VERSION,
        "rows": rows,
        "seed": seed,
        "planted": PLANTED,
        "row_group": ROW_GROUP,
    }
    made = meta_path.exists() and all(p.exists() for p in files.values())
    if made and json.loads(meta_path.read_text()) == meta:
        return files
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    for name, path in files.items():
        write_table(path, rows, seed * 1000 + SEEDS[name], drift=name == "current-drift")
    meta_path.write_text(json.dumps(meta, indent=1))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for size in args.sizes.split(","):
        files = ensure(size, args.workdir, args.seed)
        print(size, *(f"{p} ({p.stat().st_size / 1e6:.1f} MB)" for p in files.values()))


if __name__ == "__main__":
    main()
