"""The child side of a ``module:function`` training entry point.

:func:`modelyard.lifecycle.training.run_training` starts ``python -m modelyard.lifecycle._runner
_run module:function DATA OUTPUT_DIR PARAMS_JSON`` in its own process group; this module imports
the function, calls it with the training table, the output folder and the parameters, and saves
what it returns (a fitted estimator as ``model.skops``, else ``model.joblib``; a path, copied in)
into ``OUTPUT_DIR``, naming it in ``result.json``. Exit codes: 0 done, 1 the function failed or
returned nothing usable, 2 the declaration cannot be called.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelyard.errors import first_line

RESULT_FILE = "result.json"
_DECLARATION_ERROR = 2  # the exit code when the entry point cannot be called


def _call_entry(entry: str, data: Path, output_dir: Path, params_file: Path) -> int:
    """Import and call the training function, then save what it returned; the exit code."""
    import importlib

    module_name, _, function_name = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        print(f"modelyard: cannot import the training module {module_name!r}: {error}",
              file=sys.stderr)
        return _DECLARATION_ERROR
    function = getattr(module, function_name, None)
    if not callable(function):
        print(f"modelyard: the training module {module_name!r} has no function "
              f"{function_name!r}", file=sys.stderr)
        return _DECLARATION_ERROR

    import pandas as pd

    frame = pd.read_parquet(data)
    params = json.loads(params_file.read_text())
    returned = function(frame, output_dir, **params)  # its exception ends the run: exit 1
    if returned is None:
        return 0
    if isinstance(returned, str | os.PathLike):
        model = _adopt(Path(returned), output_dir)
        if model is None:
            print(f"modelyard: the training function returned the path {returned!s}, which "
                  "does not exist", file=sys.stderr)
            return 1
        _write_result(output_dir, str(model.resolve().relative_to(output_dir.resolve())))
        return 0
    if not callable(getattr(returned, "predict", None)):
        print(f"modelyard: the training function returned a {type(returned).__name__}; return "
              "a fitted estimator, the path of the model it wrote, or None", file=sys.stderr)
        return 1
    _write_result(output_dir, _save_estimator(returned, output_dir))
    return 0


def _adopt(path: Path, output_dir: Path) -> Path | None:
    """The returned model path, copied into ``output_dir`` unless it is there already."""
    if not path.is_absolute() and (output_dir / path).exists():
        path = output_dir / path
    path = path.resolve()
    if not path.exists():
        return None
    if path.is_relative_to(output_dir.resolve()):
        return path
    target = output_dir / path.name
    if path.is_dir():
        shutil.copytree(path, target)
    else:
        shutil.copy2(path, target)
    return target


def _save_estimator(estimator: Any, output_dir: Path) -> str:
    """``model.skops``, or ``model.joblib`` when skops cannot serialize the estimator."""
    try:
        import skops.io

        skops.io.dump(estimator, output_dir / "model.skops")
        return "model.skops"
    except Exception as error:
        (output_dir / "model.skops").unlink(missing_ok=True)
        print(f"modelyard: skops cannot save the model ({first_line(str(error))}); saved "
              "with joblib instead: registering it needs --trust-pickle", file=sys.stderr)
    import joblib

    joblib.dump(estimator, output_dir / "model.joblib")
    return "model.joblib"


def _write_result(output_dir: Path, model: str) -> None:
    path = output_dir / RESULT_FILE
    result = json.loads(path.read_text()) if path.is_file() else {}
    result["model"] = model
    path.write_text(json.dumps(result, indent=2))


def _main(argv: Sequence[str]) -> int:
    if len(argv) != 5 or argv[0] != "_run":
        print("usage: python -m modelyard.lifecycle._runner _run module:function DATA "
              "OUTPUT_DIR PARAMS_JSON", file=sys.stderr)
        return _DECLARATION_ERROR
    _, entry, data, output_dir, params_file = argv
    return _call_entry(entry, Path(data), Path(output_dir), Path(params_file))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
