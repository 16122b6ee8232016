#!/usr/bin/env bash
# Start `modelyard serve` the way /work/shared/peer-bench expects from OURS_CMD:
#
#   bash start_ours.sh PORT HGB_JOBLIB ONNX_FILE BATCH WORK_DIR
#
# (the bench substitutes {port} {hgb} {onnx} {batch} {work}; see README.md beside this file).
# It registers model A (HistGradientBoosting pickle) as `hgb` and model B (ONNX MLP) as `mlp` in a
# fresh MODELYARD_HOME under WORK_DIR, then exec's ONE server process in the foreground, so the
# PID the bench pins to CPU 1 and stops with SIGTERM is the server itself.
#
# run_peers.py launches this with cwd = $PEER_BENCH_HOME/servers, so nothing here depends on the
# caller's directory: the repo is found from this file's location.
set -euo pipefail

if [[ $# -ne 5 ]]; then
  echo "usage: $0 PORT HGB_JOBLIB ONNX_FILE BATCH(0|1) WORK_DIR" >&2
  exit 2
fi
PORT="$1"
HGB="$(realpath "$2")"
ONNX="$(realpath "$3")"
BATCH="$4"
WORK="$(mkdir -p "$5" && cd "$5" && pwd)"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="$REPO/.venv/bin/python"
MODELYARD="$REPO/.venv/bin/modelyard"
[[ -x "$PY" && -x "$MODELYARD" ]] || { echo "no $REPO/.venv with modelyard installed" >&2; exit 1; }

# Serving settings (the knobs the peers get too: one core, batches of up to 32 rows, 2 ms wait).
BATCH_MAX=32          # rows per batch when {batch}=1 (MLServer/Triton/LitServe use 32 too)
BATCH_DELAY_MS="${OURS_MAX_DELAY_MS:-0}"   # 0: no timer; batches form while the model is busy and from what arrives together; peers wait 2 ms
GRPC_PORT="${OURS_GRPC_PORT:-$((PORT + 1000))}"  # the bench only keeps PORT..PORT+2 free
case "$BATCH" in
  1) common="\"max_batch_size\": $BATCH_MAX, \"max_delay_ms\": $BATCH_DELAY_MS" ;;
  0) common='"max_batch_size": 1, "max_delay_ms": 0' ;;
  *) echo "BATCH must be 0 or 1, got $BATCH" >&2; exit 2 ;;
esac
common="$common, \"max_queue\": 1024, \"cache_entries\": 0, \"onnx_threads\": 1"
# Answer only the label, as every peer does (MLServer's SKLearnModel: `predict`; the MLServer/Triton/
# KServe ONNX code: `label`). Left to the default (all outputs) our HGB would also run predict_proba,
# i.e. a second ~0.6 ms sklearn call per batch that no peer makes. OURS_ALL_OUTPUTS=1 answers all.
if [[ "${OURS_ALL_OUTPUTS:-0}" == 1 ]]; then
  hgb_settings="{$common}"; mlp_settings="{$common}"
else
  hgb_settings="{$common, \"outputs\": [\"predict\"]}"; mlp_settings="{$common, \"outputs\": [\"label\"]}"
fi
if ! "$PY" -c 'import sys; from modelyard.settings import ModelServingSettings as M; sys.exit("outputs" not in M.model_fields)'; then
  echo "start_ours.sh: WARNING: this modelyard has no serving.models.NAME.outputs setting;" \
       "all outputs are answered (HGB also runs predict_proba)" >&2
fi

# A fresh registry per start: nothing carried over between configs or passes.
HOME_DIR="$WORK/ours-home-$PORT"
rm -rf "$HOME_DIR"
mkdir -p "$HOME_DIR"
cd "$HOME_DIR"   # no modelyard.toml here: settings come only from the environment below

# Only our settings, whatever the caller's environment holds.
unset MODELYARD_CONFIG MODELYARD_DATABASE_URL MODELYARD_ARTIFACTS_URI
export MODELYARD_HOME="$HOME_DIR"
export MODELYARD_SERVING__INFERENCE_THREADS=1
export MODELYARD_SERVING__WORKERS=1
export MODELYARD_SERVING__MODELS="{\"hgb\": $hgb_settings, \"mlp\": $mlp_settings}"
# Live monitoring is on by default, as for a user; OURS_MONITORING=0 measures the serving engine
# alone, as the peers (which do not monitor) run.
if [[ "${OURS_MONITORING:-1}" == 0 ]]; then
  export MODELYARD_MONITORING__ENABLED=false
else
  unset MODELYARD_MONITORING__ENABLED
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # run_peers.py sets 1; same by hand
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"

# Reference table for model A: the training data of make_models.py (breast_cancer as float32),
# columns f0..f29 in feature order.
"$PY" - "$HOME_DIR/ref.parquet" <<'EOF'
import sys

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

x = load_breast_cancer().data.astype(np.float32)
pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])]).to_parquet(sys.argv[1], index=False)
EOF

# A pickle needs explicit consent and its digest.
HGB_SHA256="$(sha256sum "$HGB" | cut -d' ' -f1)"
"$MODELYARD" register "$HGB" --name hgb --reference "$HOME_DIR/ref.parquet" \
  --trust-pickle --sha256 "$HGB_SHA256"
"$MODELYARD" register "$ONNX" --name mlp

echo "start_ours.sh: batch=$BATCH settings=$MODELYARD_SERVING__MODELS grpc_port=$GRPC_PORT"
exec "$MODELYARD" serve --host 127.0.0.1 --port "$PORT" --grpc-port "$GRPC_PORT" --workers 1
