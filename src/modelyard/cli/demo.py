"""``modelyard demo``: the loop so far, on a dataset scikit-learn ships, in well under a minute."""

from __future__ import annotations

import time
from typing import Any

import typer

from modelyard.cli._common import console, settings

MODEL_NAME = "breast-cancer"
WINDOW_S = 4.0  # monitoring windows of the demo server: short, so the loop shows in seconds


def demo(
    ctx: typer.Context,
    serve: bool = typer.Option(
        True, "--serve/--no-serve", help="Also start a server and query it with tritonclient."
    ),
) -> None:
    """Train two classifiers, register both with reference data, crown the better one
    `champion`, load it back and predict, check a shifted table for drift, then serve it, query
    it over REST and gRPC, watch its monitor catch shifted traffic and falling accuracy, a
    retrain triggered by the drift pass its gate and a canary promote it — and a broken
    candidate rolled back."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from modelyard.api import load, open_registry, register

    started = time.perf_counter()
    config = settings(ctx)
    console.print(f"workspace: {config.home.resolve()} (database {config.resolved_database_url})")

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )
    candidates = {
        "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "gradient boosting": HistGradientBoostingClassifier(max_iter=100, random_state=0),
    }
    scores: dict[int, float] = {}
    fitted: dict[int, Any] = {}
    for label, estimator in candidates.items():
        estimator.fit(X_train, y_train)
        auc = float(roc_auc_score(y_test, estimator.predict_proba(X_test)[:, 1]))
        accuracy = float(accuracy_score(y_test, estimator.predict(X_test)))
        version = register(
            estimator,
            MODEL_NAME,
            reference=X_train,
            labels=y_train.rename("malignant"),
            description=f"{label} on the Wisconsin breast cancer data",
            tags={"algorithm": label},
            metrics={"holdout_roc_auc": auc, "accuracy": accuracy},
            settings=config,
        )
        scores[version.version] = auc
        fitted[version.version] = estimator
        console.print(f"registered {version.ref}  {label:<20} hold-out ROC AUC {auc:.4f}")

    best = max(scores, key=lambda v: scores[v])
    registry = open_registry(config)
    registry.set_alias(MODEL_NAME, "champion", best)
    console.print(f"set {MODEL_NAME}@champion → version {best}")

    champion = load(f"{MODEL_NAME}@champion", settings=config)
    predicted = champion.predict(X_test.head(5))
    agree = np.array_equal(predicted, fitted[best].predict(X_test.head(5)))
    console.print(
        f"loaded {champion.info.ref}: predictions for 5 hold-out rows {predicted.tolist()} "
        f"({'identical to' if agree else 'DIFFERENT from'} the in-memory model)"
    )
    with registry.db.read() as conn:
        from modelyard.registry import audit

        check = audit.verify(conn)
    console.print(f"audit log: {check.entries} entries, chain {'intact' if check.ok else 'BROKEN'}")
    drift_ok = _drift_report(config, X_test.assign(malignant=y_test.to_numpy()))
    served = True
    if serve:
        from modelyard.cli._demo_loop import SCALE, monitoring_loop
        from modelyard.cli._demo_retrain import last_run, retrain_loop, write_config
        from modelyard.cli._demo_serving import serve_and_query

        before = last_run(config, MODEL_NAME)

        def loop(url: str) -> bool:
            watched = monitoring_loop(config, url, MODEL_NAME, X_test, y_test.to_numpy(),
                                      WINDOW_S)
            return watched and retrain_loop(config, url, MODEL_NAME,
                                            X_test.to_numpy(np.float64) * SCALE, before)

        served = serve_and_query(config, MODEL_NAME, X_test.to_numpy(), window_s=WINDOW_S,
                                 then=loop, config_file=write_config(config.home, MODEL_NAME))
    console.print(f"done in {time.perf_counter() - started:.1f} s. Look next at:")
    for command in (
        "modelyard serve        (then the OIP routes under http://127.0.0.1:8080/v2/)",
        "modelyard models list",
        f"modelyard models show {MODEL_NAME}",
        f"modelyard models show {MODEL_NAME}@champion",
        "modelyard audit list",
        "modelyard audit verify",
        f"modelyard monitor status {MODEL_NAME}",
        "modelyard alerts list",
        f"modelyard retrain {MODEL_NAME} --list",
        "modelyard rollout list",
        f"modelyard report --model {MODEL_NAME}@champion --since 1h --html live.html",
        f"modelyard report --model {MODEL_NAME}@champion --current <table> --html report.html",
    ):
        console.print(f"  {command}", markup=False)
    if not agree or not check.ok or not served or not drift_ok:
        raise typer.Exit(1)



def _drift_report(config: Any, holdout: Any) -> bool:
    """Compare the hold-out rows, shifted on purpose, with the champion's stored reference."""
    from modelyard.api.reporting import report
    from modelyard.monitoring.html import render_html
    from modelyard.monitoring.report import ReportOptions

    shifted = holdout.copy()
    planted = ["mean radius", "worst texture"]
    for name in planted:
        shifted[name] = shifted[name] * 1.25 + shifted[name].std()
    result = report(shifted, model=f"{MODEL_NAME}@champion", settings=config,
                    options=ReportOptions(seed=0))
    page = config.home / "demo-report.html"
    page.write_text(render_html(result.to_dict()), encoding="utf-8")
    features = [c.name for c in result.columns if c.role == "feature" and c.drift_detected]
    performance = result.performance or {}
    realised = (performance.get("realised") or {}).get("accuracy")
    estimated = ((performance.get("estimated") or {}).get("accuracy") or {}).get("value")
    console.print(
        f"drift report on the hold-out rows with {' and '.join(planted)} shifted: drift in "
        f"{', '.join(features) or 'no feature'}; accuracy realised "
        f"{'—' if realised is None else f'{realised:.3f}'}, estimated without labels "
        f"{'—' if estimated is None else f'{estimated:.3f}'} (the estimate assumes the "
        f"labels still follow the features as in training; this shift breaks that); {page}",
        markup=False,
    )
    return set(planted) <= set(features)
