"""KServe V1 rows: ``{"instances": [...]}`` as a model's input, and predictions back as plain
JSON values.

V1 bodies carry rows (TF-Serving's row format) where the Open Inference Protocol carries named
tensors: a tabular model takes objects (one per row, by column name) or lists of values in
signature order; a single-tensor model takes numbers. :func:`model_input` turns them into what
:meth:`ServedModel.run` takes, with the same checks and conversions as the V2 path;
:func:`plain` turns numpy values back into JSON ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInput
from modelyard.registry.signature import to_frame, to_tensors
from modelyard.serving.model import ServedModel


def require_rows(instances: Any) -> list[Any]:
    """``instances`` if it is a non-empty list (checked before the model is even looked up)."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list")
    return instances


def model_input(model: ServedModel, instances: list[Any]) -> Any:
    """The rows of a V1 request (see :func:`require_rows`) as ``model``'s input;
    :class:`InvalidInput` naming what is wrong otherwise."""
    signature = model.signature
    if signature.columnar:
        if all(isinstance(row, dict) for row in instances):
            frame = pd.DataFrame.from_records(instances)
        elif all(isinstance(row, list) for row in instances):
            widths = {len(row) for row in instances}
            if widths != {len(model.columns)}:
                raise InvalidInput(
                    f"each instance must have {len(model.columns)} values "
                    f"({', '.join(model.columns[:8])}…); got {sorted(widths)}"
                )
            frame = pd.DataFrame(instances, columns=model.columns)
        else:
            raise InvalidInput("instances must all be lists of values or all be objects")
        frame = to_frame(frame, signature)
        return frame.to_numpy(dtype=model.matrix_dtype) if model.matrix_dtype else frame
    if len(signature.inputs) != 1:
        raise InvalidInput(
            f"model {model.key} takes {len(signature.inputs)} inputs; use the v2 API"
        )
    spec = signature.inputs[0]
    try:
        array = np.asarray(instances, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput("instances must be numbers for this model") from None
    return to_tensors({spec.name: array}, signature)


def plain(value: Any) -> Any:
    """A prediction as JSON takes it: arrays as lists, numpy scalars as Python ones, bytes as
    text."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
