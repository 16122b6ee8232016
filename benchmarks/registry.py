"""Registry figures: time to register and to load a model, on SQLite and on PostgreSQL.

    python benchmarks/registry.py [--postgres postgresql+psycopg://postgres@127.0.0.1/test]
      [--repeat 20]

Prints a Markdown table; copy it into benchmarks/RESULTS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier

import modelyard
from modelyard.api.workspace import close_databases
from modelyard.settings import Settings


def measure(settings: Settings, repeat: int) -> dict[str, float]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = HistGradientBoostingClassifier(max_iter=50, random_state=0).fit(X, y)
    modelyard.register(model, "warmup", reference=X, labels=y, settings=settings)
    register_ms, load_ms, predict_ms = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        v = modelyard.register(model, "bench", reference=X, labels=y, settings=settings)
        t1 = time.perf_counter()
        p = modelyard.load(v.ref, settings=settings)
        t2 = time.perf_counter()
        p.predict(X.head(1))
        t3 = time.perf_counter()
        register_ms.append((t1 - t0) * 1e3)
        load_ms.append((t2 - t1) * 1e3)
        predict_ms.append((t3 - t2) * 1e3)
    row = X.head(1)
    warm_signature, warm_raw = [], []
    for _ in range(repeat * 10):
        t0 = time.perf_counter()
        p.predict(row)
        t1 = time.perf_counter()
        model.predict(row)
        model.predict_proba(row)  # the Predictor computes both outputs
        t2 = time.perf_counter()
        warm_signature.append((t1 - t0) * 1e3)
        warm_raw.append((t2 - t1) * 1e3)
    return {
        "register p50 ms": statistics.median(register_ms),
        "load p50 ms": statistics.median(load_ms),
        "first predict after load p50 ms": statistics.median(predict_ms),
        "warm 1-row predict, checked p50 ms": statistics.median(warm_signature),
        "warm 1-row predict+predict_proba, bare estimator p50 ms": statistics.median(warm_raw),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["SQLite"] = measure(Settings(home=Path(tmp) / "sqlite"), args.repeat)
        admin = args.postgres.replace("postgresql+psycopg://", "postgresql://")
        name = f"modelyard_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = args.postgres.rpartition("/")[0] + "/" + name
            rows["PostgreSQL"] = measure(
                Settings(home=Path(tmp) / "pg", database_url=url), args.repeat
            )
        finally:
            close_databases()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    keys = list(next(iter(rows.values())))
    print("| store | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for store, values in rows.items():
        print(f"| {store} | " + " | ".join(f"{values[k]:.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
