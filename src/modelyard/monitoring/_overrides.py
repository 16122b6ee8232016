"""Overrides of quality rules: the YAML loader, and the checks that parse overrides and rule
dicts into plain values with one-line errors naming the setting."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import yaml

from modelyard.errors import InvalidInput
from modelyard.monitoring._tables import label_of
from modelyard.types import DATATYPES

COLUMN_RULES = ("type", "missing_share", "range", "unseen_categories", "constant")
_SHARES = ("max_missing_share", "max_out_of_range_share", "max_unseen_share")
_NUMERIC_ONLY = ("range", "max_out_of_range_share", "allow_inf")
_CATEGORICAL_ONLY = ("allowed", "max_unseen_share")
_OVERRIDES = ("ignore", "skip", "dtypes", *_SHARES, "range", "allow_inf", "allowed")


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true and false, so labels such as yes, no, on, off stay text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(error).splitlines()[0]


def _parse_overrides(data: Any, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    data = _mapping(data, where)
    _known_keys(data, ("columns", "table"), where)
    parsed: dict[str, Any] = {}
    if data.get("table") is not None:
        parsed["table"] = _parse_table(data["table"], f"{where}: table")
    if data.get("columns") is not None:
        parsed["columns"] = {
            str(name): _parse_column(_mapping(entry, f"{where}: columns.{name}"),
                                     f"{where}: columns.{name}")
            for name, entry in _mapping(data["columns"], f"{where}: columns").items()
        }
    return parsed


def _parse_table(data: Any, where: str) -> dict[str, int | None]:
    data = _mapping(data, where)
    _known_keys(data, ("min_rows", "max_rows"), where)
    for key, value in data.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise InvalidInput(f"{where}.{key} must be a whole number ≥ 0 or null, not {value!r}")
    _rows_limits(data.get("min_rows"), data.get("max_rows"), where)
    return dict(data)


def _parse_column(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    _known_keys(data, _OVERRIDES, where)
    parsed: dict[str, Any] = {}
    for key, value in data.items():
        at = f"{where}.{key}"
        if key in ("ignore", "allow_inf"):
            parsed[key] = _flag(value, at)
        elif key in _SHARES:
            parsed[key] = _share(value, at)
        elif key == "skip":
            names = [value] if isinstance(value, str) else _list(value, at)
            for name in names:
                if name not in COLUMN_RULES:
                    raise InvalidInput(
                        f"{at} names rule {name!r}; rules are {', '.join(COLUMN_RULES)}"
                    )
            parsed[key] = list(names)
        elif key == "dtypes":
            names = [value] if isinstance(value, str) else _list(value, at)
            parsed[key] = [_dtype(name, at) for name in names]
        elif key == "range":
            parsed[key] = _bounds(value, at)
        else:  # allowed
            labels = _list(value, at)
            if not labels or any(label is None or isinstance(label, list | dict)
                                 for label in labels):
                raise InvalidInput(f"{at} must list at least one label, not {value!r}")
            parsed[key] = sorted({label_of(label) for label in labels})
    return parsed


def _bounds(value: Any, where: str) -> tuple[float | None, float | None]:
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(
        end is None or (_is_number(end) and math.isfinite(end)) for end in value
    ):
        raise InvalidInput(
            f"{where} must be [low, high], two numbers (null for no limit), not {value!r}"
        )
    low, high = (None if end is None else float(end) for end in value)
    if low is not None and high is not None and low > high:
        raise InvalidInput(f"{where} must have low ≤ high, not {list(value)!r}")
    return low, high


def _share(value: Any, where: str) -> float:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise InvalidInput(f"{where} must be a share from 0 to 1, not {value!r}")
    return float(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{where} must be true or false, not {value!r}")
    return value


def _dtype(value: Any, where: str) -> str:
    if value not in DATATYPES:
        raise InvalidInput(
            f"{where} must be a datatype ({', '.join(sorted(DATATYPES))}), not {value!r}"
        )
    return str(value)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"{where} must be a list, not {value!r}")
    return list(value)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where} must be a mapping of names to settings, not {_type(value)}")
    return {str(key): item for key, item in value.items()}


def _known_keys(data: Mapping[str, Any], known: Collection[str], where: str) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidInput(
                f"{where}: unknown setting {key!r}{hint}; expected one of {', '.join(known)}"
            )


def _rows_limits(low: int | None, high: int | None, where: str) -> None:
    if low is not None and high is not None and low > high:
        raise InvalidInput(f"{where}: min_rows ({low:,}) is above max_rows ({high:,})")


def _check_confidence(value: Any) -> None:
    if not _is_number(value) or not 0.5 <= value < 1.0:
        raise InvalidInput(f"confidence must be a number from 0.5 to below 1, not {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool
    ) and not math.isnan(value)


def _type(value: Any) -> str:
    return type(value).__name__
