"""``modelyard audit``: read the change log and check that nobody rewrote it."""

from __future__ import annotations

import typer
from rich.table import Table

from modelyard.cli._common import JSON_OPTION, console, err_console, print_json, settings

app = typer.Typer(help="The tamper-evident log of every registry change.", no_args_is_help=True)


@app.command("list")
def list_entries(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", "-m", help="Only this model's entries."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="At most this many, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Recent changes: who did what, when, before and after."""
    from modelyard.api import open_registry
    from modelyard.registry import audit

    registry = open_registry(settings(ctx))
    with registry.db.read() as conn:
        found = audit.entries(conn, subject=model, limit=limit)
    if as_json:
        print_json([entry.as_dict() for entry in found])
        return
    table = Table("seq", "time (UTC)", "actor", "action", "subject", "before", "after")
    for entry in found:
        data = entry.as_dict()
        table.add_row(
            str(entry.seq),
            entry.ts[:19].replace("T", " "),
            entry.actor,
            entry.action,
            entry.subject,
            _short(data["before"]),
            _short(data["after"]),
        )
    console.print(table)


def _short(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"


@app.command("verify")
def verify(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Recompute the hash chain; exit 1 and name the first broken entry if it does not hold."""
    from modelyard.api import open_registry
    from modelyard.registry import audit

    registry = open_registry(settings(ctx))
    with registry.db.read() as conn:
        result = audit.verify(conn)
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "entries": result.entries,
                "first_broken": result.first_broken,
                "reason": result.reason,
            }
        )
    elif result.ok:
        console.print(f"audit log intact: {result.entries} entries, chain verified")
    else:
        err_console.print(
            f"audit log broken at entry {result.first_broken}: {result.reason}", markup=False
        )
    if not result.ok:
        raise typer.Exit(1)
