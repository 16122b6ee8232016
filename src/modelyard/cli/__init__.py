"""The ``modelyard`` command: one Typer app, one module per command group.

Errors modelyard raises on purpose print one line and exit 1; a usage error exits 2; an
unexpected error prints one line too (set ``MODELYARD_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from typer._click.core import Context as ClickContext
from typer._click.exceptions import ClickException
from typer.core import TyperGroup

from modelyard.cli import (
    alerts,
    alias,
    audit,
    demo,
    feedback,
    models,
    monitor,
    register,
    report,
    retrain,
    rollout,
    serve,
)
from modelyard.cli._common import err_console
from modelyard.errors import ModelyardError
from modelyard.settings import Settings

# The order ``modelyard --help`` lists the commands in: the loop as a user lives it.
ORDER = ("demo", "serve", "register", "models", "alias", "audit", "rollout", "retrain",
         "approve", "monitor", "alerts", "report", "feedback")


class _Root(TyperGroup):
    """Turns errors from any command into one line on stderr and a non-zero exit."""

    def list_commands(self, ctx: ClickContext) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: ORDER.index(name) if name in ORDER else len(ORDER))

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except ModelyardError as exc:
            err_console.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except Exception as exc:
            if os.environ.get("MODELYARD_DEBUG"):
                raise
            err_console.print(
                f"error: unexpected {type(exc).__name__}: {exc} "
                "(set MODELYARD_DEBUG=1 to see the traceback)",
                markup=False,
            )
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Root,
    name="modelyard",
    help="Register, serve, monitor and roll out machine-learning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Folder of the embedded database and artifacts [env MODELYARD_HOME]."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="SQLAlchemy URL of the registry [env MODELYARD_DATABASE_URL]."
    ),
    artifacts_uri: str | None = typer.Option(
        None, "--artifacts-uri", help="fsspec URL of the artifacts [env MODELYARD_ARTIFACTS_URI]."
    ),
) -> None:
    """Settings precedence: these flags > MODELYARD_* environment > modelyard.toml > defaults."""
    ctx.obj = Settings.load(home=home, database_url=database_url, artifacts_uri=artifacts_uri)


app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("register")(register.register)
app.add_typer(models.app, name="models")
app.add_typer(alias.app, name="alias")
app.add_typer(audit.app, name="audit")
app.add_typer(rollout.app, name="rollout")
app.command("retrain")(retrain.retrain)
app.command("approve")(retrain.approve)
app.command("report")(report.report)
app.add_typer(monitor.app, name="monitor")
app.add_typer(alerts.app, name="alerts")
app.command("feedback")(feedback.feedback)


def main() -> None:
    app(prog_name="modelyard")
