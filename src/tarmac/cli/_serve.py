"""``tarmac serve``: the project's HTTP server (features and models, one app) under uvicorn,
with the tuned defaults of ``tarmac.serving.server``. ``--workers 1`` serves in this process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import typer
from rich.markup import escape

from tarmac.cli import app, open_project
from tarmac.cli._output import console, esc
from tarmac.errors import UsageError


def _check_port(host: str, port: int) -> None:
    """Refuse early, in one line, a port that is taken (uvicorn would say so after start-up)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror}",
                hint="is another server running there? pick another with --port") from None


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: all)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    workers: int = typer.Option(None, "--workers", "-w",
                                help="Worker processes (default: one per CPU, 1 to 8; "
                                     "1 serves in this process)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log",
                                    help="One JSON line per request (method, path, status, "
                                         "latency ms, request id), written off the "
                                         "request path."),
    log_file: Path = typer.Option(None, "--log-file", dir_okay=False,
                                  help="Append the access log to this file (default: stderr)."),
) -> None:
    """Serve the project over HTTP: POST /features for online feature values and
    POST /v1/predict/NAME for predictions of each model's endpoint (champion, canary, shadow).

    The OpenAPI docs are at /docs; GET /health (alive) and GET /ready (the online store's
    values are there, every champion is loaded, the prediction log writes) are for probes;
    GET /metrics for Prometheus. Stop with Ctrl+C (workers finish their requests first).
    """
    import uvicorn

    from tarmac.serving.server import default_workers, run_workers, uvicorn_options

    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers}: expected 1 or more")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: expected 0 to 65535")
    n = workers or default_workers()
    p = open_project(ctx)
    _check_port(host, port)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    url = f"http://{shown}:{port}"
    console.print(f"serving project [bold]{esc(p.name)}[/bold] at {esc(url)} "
                  f"({n} worker{'s' if n > 1 else ''}"
                  f"{', all interfaces' if host in ('0.0.0.0', '::', '') else ''})\n"
                  f"  API docs: {esc(url)}/docs\n"
                  f"  [dim]Ctrl+C to stop[/dim]", soft_wrap=True)
    if log_file is not None and access_log:
        console.print(f"  access log: {escape(str(log_file))}", soft_wrap=True)
    options = uvicorn_options(host, port)
    if n == 1:
        from tarmac.serving import create_app

        uvicorn.run(create_app(p, access_log=access_log, log_file=log_file, host=host),
                    **options)
        return
    # Each worker process opens the project itself (app_from_env): pass it by absolute path.
    os.environ["TARMAC_PROJECT"] = str(p.root.resolve())
    os.environ["TARMAC_ACCESS_LOG"] = "1" if access_log else "0"
    os.environ["TARMAC_SERVE_HOST"] = host
    if log_file is not None:
        os.environ["TARMAC_LOG_FILE"] = str(log_file.resolve())
    else:
        os.environ.pop("TARMAC_LOG_FILE", None)
    run_workers(n, options)  # /metrics of any worker reports them all
