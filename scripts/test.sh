#!/usr/bin/env bash
# The whole test suite as CI runs it: services, a virtual environment with the test extras,
# then ruff, mypy (strict), the import-layer contracts and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
echo "== ruff";          .venv/bin/ruff check src tests
echo "== mypy";          .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports
echo "== pytest";        .venv/bin/pytest "$@"
