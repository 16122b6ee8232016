"""What every command group shares: the settings from the root flags, and output helpers."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

from modelyard.errors import InvalidInput
from modelyard.settings import Settings

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON for scripts instead of a table.")


def settings(ctx: typer.Context) -> Settings:
    """The Settings built from the root command's flags (stored on the context)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings.load()
    return root.obj


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n")


def parse_pairs(items: list[str], what: str) -> dict[str, str]:
    """``["k=v", …]`` → ``{"k": "v", …}``; a malformed item is a clear error."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{what} {item!r} is not of the form key=value")
        pairs[key] = value
    return pairs
