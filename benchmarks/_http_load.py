"""A small HTTP load generator for the serving benchmarks: ``concurrency`` threads, each with
one keep-alive connection (a minimal socket client by default, or ``http.client``), sending the
same request back to back for ``seconds``.

Threads (not processes) on purpose: they share one GIL, so the client never takes more than
one CPU from the server it measures. Latency is per request (send to body read), in ms.

Example::

    from _http_load import load
    load("http://127.0.0.1:8000/features", b'{"features": "churn", "entities": [...]}',
         concurrency=8, seconds=10)
    # {"p50_ms": 1.9, "p99_ms": 6.1, "max_ms": 12.0, "rps": 3900.0, "errors": 0, ...}

Or from a shell: ``python benchmarks/_http_load.py URL BODY -c 8 -s 10``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit


class _RawConnection:
    """A keep-alive HTTP/1.1 connection that sends one pre-encoded request and reads a
    Content-Length response with as little Python as possible (http.client parses headers
    with the email package: several times the CPU of the server's own request handling)."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.address, self.request = (host, port), request
        self.sock: socket.socket | None = None
        self.buffer = b""

    def roundtrip(self) -> int:
        """Send the request, read the whole response; return its status."""
        sock = self.sock
        if sock is None:
            sock = self.sock = socket.create_connection(self.address, timeout=30)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        sock.sendall(self.request)
        data = self.buffer
        while True:
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        head = data[:end].lower()
        at = head.find(b"content-length:")
        if at < 0:
            raise http.client.HTTPException("response without content-length")
        stop = head.find(b"\r\n", at)
        total = end + 4 + int(head[at + 15:stop if stop > 0 else len(head)])
        while len(data) < total:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        self.buffer = data[total:]
        status = int(data[9:12])
        if b"connection: close" in head:
            self.close()
        return status

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _HttpClientConnection:
    """The same over ``http.client`` (heavier on the client's CPU, but the reference)."""

    def __init__(self, host: str, port: int, method: str, path: str, body: bytes,
                 headers: dict[str, str]) -> None:
        self.args = (host, port)
        self.call = (method, path, body, headers)
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def roundtrip(self) -> int:
        self.conn.request(*self.call)
        response = self.conn.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection(*self.args, timeout=30)


def load(url: str, body: bytes, *, concurrency: int, seconds: float,
         warmup: float = 0.5, method: str = "POST", headers: dict[str, str] | None = None,
         client: str = "raw") -> dict[str, Any]:
    """Send ``body`` to ``url`` from ``concurrency`` keep-alive connections for ``seconds``
    (after ``warmup`` seconds whose requests are not counted). A response other than 2xx, or a
    connection error (the connection is then reopened), counts as an error. ``client``: "raw"
    (a minimal socket client, the default: it leaves the CPU to the server) or
    "http.client"."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sent = {"Host": f"{host}:{port}", "Content-Type": "application/json",
            "Connection": "keep-alive", **(headers or {})}
    if method != "GET" or body:
        sent["Content-Length"] = str(len(body))
    request = (f"{method} {path} HTTP/1.1\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in sent.items()) + "\r\n").encode() + body
    start = threading.Barrier(concurrency + 1)
    window: list[int] = [0, 0]  # measured window (perf_counter_ns): set before the barrier
    latencies: list[list[int]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    first_error: list[str] = []

    def worker(i: int) -> None:
        conn: _RawConnection | _HttpClientConnection = (
            _RawConnection(host, port, request) if client == "raw"
            else _HttpClientConnection(host, port, method, path, body, sent))
        mine, clock = latencies[i], time.perf_counter_ns
        start.wait()
        begin, end = window
        while True:
            t0 = clock()
            if t0 >= end:
                break
            try:
                status = conn.roundtrip()
                ok = 200 <= status < 300
                if not ok and not first_error:
                    first_error.append(f"HTTP {status}")
            except (OSError, ValueError, http.client.HTTPException) as exc:
                ok = False
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}")
                conn.close()
            t1 = clock()
            if t0 >= begin:
                if ok:
                    mine.append(t1 - t0)
                else:
                    errors[i] += 1
        conn.close()

    if client not in ("raw", "http.client"):
        raise ValueError(f"client {client!r}: expected 'raw' or 'http.client'")
    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(concurrency)]
    for t in threads:
        t.start()
    now = time.perf_counter_ns()
    window[0] = now + int(warmup * 1e9)
    window[1] = window[0] + int(seconds * 1e9)
    start.wait()
    for t in threads:
        t.join()
    merged = sorted(x for lat in latencies for x in lat)
    n = len(merged)

    def pct(q: float) -> float:
        return round(merged[min(n - 1, int(q * n))] / 1e6, 3) if n else float("nan")

    return {"p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "rps": round(n / seconds, 1), "errors": sum(errors), "requests": n,
            "concurrency": concurrency, "seconds": seconds, "client": client,
            **({"first_error": first_error[0]} if first_error else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description="POST the same body from keep-alive connections.")
    ap.add_argument("url")
    ap.add_argument("body", help="the request body (JSON text)")
    ap.add_argument("-c", "--concurrency", type=int, default=1)
    ap.add_argument("-s", "--seconds", type=float, default=5.0)
    ap.add_argument("--client", choices=["raw", "http.client"], default="raw")
    args = ap.parse_args()
    print(json.dumps(load(args.url, args.body.encode(), concurrency=args.concurrency,
                          seconds=args.seconds, client=args.client)))


if __name__ == "__main__":
    main()
