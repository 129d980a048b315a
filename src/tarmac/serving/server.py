"""Running the app under uvicorn with tuned defaults, so nobody has to look for flags.

uvloop and httptools, no uvicorn access log (it costs more than a feature read; ``tarmac serve``
writes its own, off the request path: ``_access``), keep-alive longer than
a load balancer's idle timeout, one worker process per CPU (1 to 8). ``run_workers`` runs the
app in several worker processes whose ``/metrics`` reports the whole server (``metrics_dir``).
``running`` serves a project from a background thread of this process (the demo and tests use
it).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tarmac.project import Project

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


@contextmanager
def metrics_dir() -> Iterator[str]:
    """A fresh private directory (mode 0700, under ``TMPDIR``) in ``PROMETHEUS_MULTIPROC_DIR``
    for the worker processes started inside the block: each writes its metrics there and the
    one answering ``/metrics`` reports them all. Set before the workers spawn (they inherit it
    and prometheus-client picks its multiprocess mode when they import it); removed, and the
    previous value restored, on exit. A directory of another run is never reused: its files
    would add that run's counts to this one's."""
    from tarmac.serving._metrics import MULTIPROC_ENV

    path = tempfile.mkdtemp(prefix="tarmac-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def run_workers(workers: int, options: dict[str, Any]) -> None:
    """Serve ``app_from_env`` (the project in ``TARMAC_PROJECT``) in ``workers`` processes
    under uvicorn until stopped, their metrics shared through a ``metrics_dir``."""
    import uvicorn

    with metrics_dir():
        uvicorn.run("tarmac.serving.app:app_from_env", factory=True, workers=workers,
                    **options)


@contextmanager
def running(project: Project, *, host: str = "127.0.0.1", port: int = 0,
            timeout: float = 15.0) -> Iterator[str]:
    """Serve ``project`` from a background thread; yields its base URL, stops on exit."""
    import uvicorn

    from tarmac.serving.app import create_app

    if port == 0:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    options = uvicorn_options(host, port)
    options["loop"] = "asyncio"  # a thread of this process: no event-loop policy changes
    server = uvicorn.Server(uvicorn.Config(create_app(project), **options))
    thread = threading.Thread(target=server.run, name="tarmac-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
