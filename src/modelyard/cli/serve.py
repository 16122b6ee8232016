"""``modelyard serve``: every registered model over REST and gRPC (Open Inference Protocol)."""

from __future__ import annotations

import typer

from modelyard.cli._common import console, settings


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Address to listen on [127.0.0.1]."),
    port: int | None = typer.Option(None, "--port", min=0, max=65535, help="REST port [8080]."),
    grpc_port: int | None = typer.Option(
        None, "--grpc-port", min=0, max=65535, help="gRPC port [8081]."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Server processes sharing the ports [1]."
    ),
) -> None:
    """Serve every registered model and version until SIGTERM or Ctrl-C.

    Per-model batching, queue and cache settings come from MODELYARD_SERVING__MODELS or
    [serving.models.NAME] in modelyard.toml.
    """
    from modelyard.server import serve as run_server

    base = settings(ctx)
    given = {"host": host, "port": port, "grpc_port": grpc_port, "workers": workers}
    serving = base.serving.model_copy(update={k: v for k, v in given.items() if v is not None})
    run_server(
        base.model_copy(update={"serving": serving}),
        announce=lambda text: console.print(text, markup=False),
    )
