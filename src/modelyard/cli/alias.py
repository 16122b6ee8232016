"""``modelyard alias``: point names like ``champion`` at versions."""

from __future__ import annotations

import typer
from rich.table import Table

from modelyard.cli._common import JSON_OPTION, console, print_json, settings

app = typer.Typer(help="Point names such as champion or challenger at versions.",
                  no_args_is_help=True)


@app.command("set")
def set_alias(
    ctx: typer.Context,
    name: str = typer.Argument(..., show_default=False),
    alias: str = typer.Argument(..., show_default=False),
    version: int = typer.Argument(..., show_default=False),
) -> None:
    """Point ALIAS of model NAME at VERSION (moving it if it pointed elsewhere)."""
    from modelyard.api import open_registry

    info = open_registry(settings(ctx)).set_alias(name, alias, version)
    console.print(f"{name}@{alias} → {info.version}", markup=False)


@app.command("rm")
def remove_alias(
    ctx: typer.Context,
    name: str = typer.Argument(..., show_default=False),
    alias: str = typer.Argument(..., show_default=False),
) -> None:
    """Remove ALIAS from model NAME."""
    from modelyard.api import open_registry

    was = open_registry(settings(ctx)).remove_alias(name, alias)
    console.print(f"removed {name}@{alias} (was version {was})", markup=False)


@app.command("list")
def list_aliases(
    ctx: typer.Context,
    name: str = typer.Argument(..., show_default=False),
    as_json: bool = JSON_OPTION,
) -> None:
    """The aliases of model NAME."""
    from modelyard.api import open_registry

    aliases = open_registry(settings(ctx)).get_model(name).aliases
    if as_json:
        print_json(aliases)
        return
    table = Table("alias", "version")
    for alias, version in sorted(aliases.items()):
        table.add_row(alias, str(version))
    console.print(table)
