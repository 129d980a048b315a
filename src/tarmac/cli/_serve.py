"""``tarmac serve``: the project's HTTP server (features now, models later) under uvicorn.

Tuned so nobody has to look for flags: uvloop and httptools, no access log (it costs more than
a feature read), keep-alive on (longer than a load balancer's idle timeout), one worker process
per CPU (1 to 8). ``--workers 1`` serves in this process.
"""

from __future__ import annotations

import os
import socket
from importlib.util import find_spec
from typing import Any

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import console
from tarmac.errors import UsageError

MAX_DEFAULT_WORKERS = 8
KEEP_ALIVE_S = 75  # above the usual 60 s idle timeout of load balancers: they close first


def default_workers() -> int:
    """One worker per CPU this process may run on, at least 1 and at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cpus))


def uvicorn_options(host: str, port: int) -> dict[str, Any]:
    """The tuned uvicorn settings (uvloop and httptools when installed)."""
    return {
        "host": host, "port": port,
        "loop": "uvloop" if find_spec("uvloop") else "auto",
        "http": "httptools" if find_spec("httptools") else "auto",
        "access_log": False,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "server_header": False,
        "log_level": "warning",
        "lifespan": "on",
    }


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
) -> None:
    """Serve the project over HTTP: POST /features for online feature values.

    The OpenAPI docs are at /docs. Stop with Ctrl+C (workers finish their requests first).
    """
    import uvicorn

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
    console.print(f"serving project [bold]{p.name}[/bold] at {url} "
                  f"({n} worker{'s' if n > 1 else ''}"
                  f"{', all interfaces' if host in ('0.0.0.0', '::', '') else ''})\n"
                  f"  API docs: {url}/docs\n"
                  f"  [dim]Ctrl+C to stop[/dim]", soft_wrap=True)
    options = uvicorn_options(host, port)
    if n == 1:
        from tarmac.serving import create_app

        uvicorn.run(create_app(p), **options)
        return
    # Each worker process opens the project itself (app_from_env): pass it by absolute path.
    os.environ["TARMAC_PROJECT"] = str(p.root.resolve())
    uvicorn.run("tarmac.serving.app:app_from_env", factory=True, workers=n, **options)
