"""Model serving: Tarmac's predict endpoint against a minimal FastAPI + uvicorn reference.

One model for both sides: a scikit-learn ``HistGradientBoostingClassifier`` on 20 float
features, trained and registered by Tarmac in a fresh project (the reference serves the very
same fitted estimator, unpickled). The reference is a FastAPI app with one ``async`` route that
parses the rows and calls ``predict_proba`` (no logging, no validation), run under uvicorn with
the worker count and the uvicorn settings Tarmac uses (``tarmac.serving.server.uvicorn_options``:
event loop, HTTP parser, access log off, keep-alive). Both servers run one at a time as
subprocesses (their own process groups, stopped on any exit), each warmed up first, with the
same ``OMP_NUM_THREADS`` (default 1: one OpenMP thread per worker).

Cases, on the same load generator (``wrk`` when installed, else ``_http_load``'s threaded
keep-alive client): 1-row requests at concurrency 1 and 8, and 100-row requests at concurrency
8; throughput and p50/p99, printed with the ratio Tarmac / reference. Then, on the Tarmac side:
the prediction log off (``--log-off-env NAME=VALUE``, the server's switch) vs on, p99 with a
canary (10%) and a shadow deployed through ``p.serving.deploy``,
and the time from an alias change (a forced promotion of v2) until answers name the new version.
When ``POST /v1/predict/{name}`` answers 404 (not built yet) the Tarmac side prints "tarmac:
predict endpoint not available" and only the reference figures are given.

    python benchmarks/bench_serving.py [--quick] [--seconds S] [--workers N] [--json]
        [--client auto|wrk|python] [--skip tarmac,logoff,canary,reload]
"""

from __future__ import annotations

import atexit
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

MODEL = "bench"
N_FEATURES = 20
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
CASES = ["tarmac", "logoff", "canary", "reload"]
TARMAC = str(Path(sys.executable).parent / "tarmac")
_RUNNING: list[subprocess.Popen[bytes]] = []  # server process groups to stop on any exit

DEFINITIONS = f'''
from sklearn.ensemble import HistGradientBoostingClassifier

from tarmac.features import *
from tarmac.models import TrainingData, label, model, time_split

row = Entity("row", join_keys=["id"])
bench_view = FeatureView(name="bench_rows", entities=[row], source="bench_rows",
                         timestamp="ev",
                         features=[Feature(f"f{{i}}", Float64) for i in range({N_FEATURES})])
bench_service = FeatureService("bench", [bench_view])


@model(name="{MODEL}", features="bench",
       label=label("bench_labels", "y", timestamp="observed"),
       split=time_split(test="last 20%", by="known_at"),
       params={{"max_iter": 100}})
def train(data: TrainingData):
    return HistGradientBoostingClassifier(max_iter=data.param("max_iter"),
                                          random_state=0).fit(data.X, data.y)
'''

REFERENCE_APP = '''
"""The reference: parse the rows, call predict_proba, answer. Nothing else."""
import os
import pickle

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

with open(os.environ["BENCH_MODEL"], "rb") as fh:
    MODEL = pickle.load(fh)
FEATURES = os.environ["BENCH_FEATURES"].split(",")
app = FastAPI()


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.post("/predict")
async def predict(request: Request) -> Response:
    rows = orjson.loads(await request.body())["rows"]
    X = np.array([[r[f] for f in FEATURES] for r in rows], dtype=np.float64)
    scores = MODEL.predict_proba(X)[:, 1]
    return Response(orjson.dumps({"predictions": [{"score": float(s), "label": bool(s >= 0.5)}
                                                   for s in scores]}),
                    media_type="application/json")
'''

REFERENCE_MAIN = '''
import sys

import uvicorn

from tarmac.serving.server import uvicorn_options

if __name__ == "__main__":  # the workers are spawned: they import this file again
    options = uvicorn_options("127.0.0.1", int(sys.argv[1]))
    uvicorn.run("bench_reference_app:app", workers=int(sys.argv[2]), **options)
'''


def main() -> None:
    ap = c.parser(__doc__.splitlines()[0], default_rows=50_000, quick_rows=5_000)
    ap.add_argument("--seconds", type=float, help="seconds per measured case (default 10; 2 "
                                                  "with --quick)")
    ap.add_argument("--workers", type=int, help="server workers, both sides (default: what "
                                                "`tarmac serve` starts: one per CPU, 1 to 8)")
    ap.add_argument("--client", choices=["auto", "wrk", "python"], default="auto",
                    help="load generator: wrk if installed (auto), or the threaded Python one")
    ap.add_argument("--omp-threads", default="1", help="OMP_NUM_THREADS of both servers")
    ap.add_argument("--log-off-env", default="TARMAC_PREDICTION_LOG=0",
                    help="NAME=VALUE that turns Tarmac's prediction log off (log on/off case)")
    ap.add_argument("--skip", default="", help=f"comma-separated cases to skip: "
                                               f"{','.join(CASES)}")
    args = ap.parse_args()
    rows = c.rows_for(args)
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    skip = {s for s in args.skip.split(",") if s}
    from tarmac.serving.server import default_workers

    workers = args.workers or default_workers()
    client = ("wrk" if shutil.which("wrk") else "python") if args.client == "auto" \
        else args.client
    if client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--client wrk: wrk is not installed (apt-get install wrk)")
    res = c.Result("serving", rows=rows, seconds=seconds, workers=workers, client=client,
                   omp_threads=args.omp_threads, **c.env_info(),
                   load_1m=round(os.getloadavg()[0], 1))
    env = {**os.environ, "OMP_NUM_THREADS": args.omp_threads}
    _stop_on_exit()
    with c.workdir("serving") as work:
        c.log(f"training {MODEL} on {rows:,} rows x {N_FEATURES} features")
        project = setup_project(work / "proj", rows)
        model_file = work / "model.pkl"
        export_estimator(project, model_file)
        bodies = {1: body(1), 100: body(100)}
        ref = bench_reference(res, work, model_file, bodies, workers, env, seconds, client)
        if "tarmac" not in skip:
            c.guarded(res, "tarmac", lambda: bench_tarmac(
                res, project, bodies, ref, workers, env, seconds, client, skip,
                args.log_off_env))
    res.figure("machine load (1-min average) at the end", round(os.getloadavg()[0], 1), "",
               f"{os.cpu_count()} CPUs; client and servers share them")
    res.emit(args.json)


# -- setup ---------------------------------------------------------------------------------------


def setup_project(root: Path, rows: int) -> Path:
    """A Tarmac project with model ``bench`` v1 (champion), v2 and v3 (for canary, shadow and
    the alias change)."""
    import pyarrow as pa

    import tarmac

    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, N_FEATURES))
    w = rng.normal(size=N_FEATURES)
    y = (X @ w + rng.normal(scale=2.0, size=rows) > 0).astype(np.int64)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    ts = pa.timestamp("us", tz="UTC")
    ids = pa.array(np.arange(rows), pa.int64())
    p = tarmac.init(root, name="bench")
    try:
        (root / "definitions.py").write_text(DEFINITIONS)
        p.lake.write("bench_rows", pa.table({"id": ids, "ev": pa.array([t0] * rows, ts),
                                             **{f: X[:, i] for i, f in enumerate(FEATURES)}}))
        p.lake.write("bench_labels", pa.table({
            "id": ids, "observed": pa.array([t0 + timedelta(days=1)] * rows, ts),
            "known_at": pa.array([t0 + timedelta(days=2, seconds=int(s))
                                  for s in rng.integers(0, 86_400 * 30, rows)], ts),
            "y": pa.array(y)}))
        p.features.apply()
        for max_iter in (100, 60, 30):
            p.models.train(MODEL, params={"max_iter": max_iter})
        p.models.promote(MODEL, 1, force=True, reason="benchmark set-up")
    finally:
        p.close()
    return root


def export_estimator(project: Path, file: Path) -> None:
    """The champion's fitted estimator, pickled for the reference server."""
    import tarmac

    with tarmac.open(project) as p:
        estimator = p.models.get(MODEL).estimator
    file.write_bytes(pickle.dumps(estimator))


def body(n: int) -> bytes:
    rng = np.random.default_rng(n)
    rows = [{f: round(float(v), 6) for f, v in zip(FEATURES, r, strict=True)}
            for r in rng.normal(size=(n, N_FEATURES))]
    return json.dumps({"rows": rows}).encode()


# -- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_on_exit() -> None:
    """Stop every server this run started, however it ends (return, exception, SIGTERM)."""
    def stop_all() -> None:
        while _RUNNING:
            stop(_RUNNING.pop())

    def on_signal(signum: int, _frame: Any) -> None:
        stop_all()
        raise SystemExit(128 + signum)

    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (uvicorn and its workers), SIGKILL after 10 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    if proc in _RUNNING:
        _RUNNING.remove(proc)


@contextmanager
def server(cmd: list[str], *, cwd: Path, env: dict[str, str], port: int, log: Path,
           timeout: float = 180) -> Iterator[str]:
    """Start ``cmd`` in its own process group; yield its base URL once ``/health`` answers."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _RUNNING.append(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"{cmd[0]} exited ({proc.returncode}): " + " | ".join(tail))
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                    raise RuntimeError(f"no answer on {url}/health within {timeout:.0f} s: "
                                       + " | ".join(tail)) from None
                time.sleep(0.2)
        yield url
    finally:
        stop(proc)


def post(url: str, data: bytes, timeout: float = 10) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, {"body": text.decode(errors="replace")}


# -- load ----------------------------------------------------------------------------------------

WRK_SCRIPT = '''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY"), "rb"):read()
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout + summary.errors.status
  io.write(string.format("BENCH {\\"p50_us\\": %d, \\"p99_us\\": %d, \\"max_us\\": %d, " ..
    "\\"requests\\": %d, \\"errors\\": %d, \\"duration_us\\": %d}\\n",
    latency:percentile(50), latency:percentile(99), latency.max, summary.requests,
    errors, summary.duration))
end
'''


def load(url: str, data: bytes, *, concurrency: int, seconds: float, client: str,
         work: Path) -> dict[str, Any]:
    """Throughput and latency of ``data`` POSTed to ``url`` from ``concurrency`` keep-alive
    connections for ``seconds`` (after a 0.5 s warm-up that is not counted)."""
    if client == "python":
        import _http_load

        return _http_load.load(url, data, concurrency=concurrency, seconds=seconds)
    script, payload = work / "post.lua", work / "body.json"
    script.write_text(WRK_SCRIPT)
    payload.write_bytes(data)
    env = {**os.environ, "BENCH_BODY": str(payload)}
    base = ["wrk", "-t1", f"-c{concurrency}", "-s", str(script), "--timeout", "10s", url]
    subprocess.run([*base[:1], "-d1s", *base[1:]], env=env, capture_output=True, check=True)
    done = subprocess.run([*base[:1], f"-d{max(1, round(seconds))}s", *base[1:]], env=env,
                          capture_output=True, text=True, check=True)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("BENCH "))
    out = json.loads(line[6:])
    good = out["requests"] - out["errors"]
    return {"p50_ms": out["p50_us"] / 1000, "p99_ms": out["p99_us"] / 1000,
            "max_ms": out["max_us"] / 1000, "rps": good / (out["duration_us"] / 1e6),
            "errors": out["errors"], "requests": out["requests"], "concurrency": concurrency}


def run_cases(url: str, bodies: dict[int, bytes], seconds: float, client: str,
              work: Path) -> dict[str, dict[str, Any]]:
    """The three cases: 1 row at concurrency 1 and 8, 100 rows at concurrency 8."""
    load(url, bodies[1], concurrency=8, seconds=1, client=client, work=work)  # warm-up
    return {"1 row, c=1": load(url, bodies[1], concurrency=1, seconds=seconds, client=client,
                               work=work),
            "1 row, c=8": load(url, bodies[1], concurrency=8, seconds=seconds, client=client,
                               work=work),
            "100 rows, c=8": load(url, bodies[100], concurrency=8, seconds=seconds,
                                  client=client, work=work)}


def show(res: c.Result, side: str, figures: dict[str, dict[str, Any]]) -> None:
    for case, out in figures.items():
        res.figure(f"{side} {case}: req/s", round(out["rps"], 1), "req/s",
                   f"p50 {out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms, "
                   f"{out['errors']} errors")


# -- the two sides -------------------------------------------------------------------------------


def bench_reference(res: c.Result, work: Path, model_file: Path, bodies: dict[int, bytes],
                    workers: int, env: dict[str, str], seconds: float,
                    client: str) -> dict[str, dict[str, Any]]:
    (work / "bench_reference_app.py").write_text(textwrap.dedent(REFERENCE_APP))
    (work / "bench_reference_main.py").write_text(textwrap.dedent(REFERENCE_MAIN))
    port = free_port()
    ref_env = {**env, "BENCH_MODEL": str(model_file), "BENCH_FEATURES": ",".join(FEATURES),
               "PYTHONPATH": os.pathsep.join([str(work), env.get("PYTHONPATH", "")])}
    c.log(f"reference: FastAPI + uvicorn, {workers} workers")
    with server([sys.executable, str(work / "bench_reference_main.py"), str(port),
                 str(workers)], cwd=work, env=ref_env, port=port,
                log=work / "reference.log") as url:
        status, answer = post(url + "/predict", bodies[1])
        if status != 200 or len(answer.get("predictions", [])) != 1:
            raise RuntimeError(f"the reference answered {status}: {answer}")
        figures = run_cases(url + "/predict", bodies, seconds, client, work)
    show(res, "reference", figures)
    return figures


def bench_tarmac(res: c.Result, project: Path, bodies: dict[int, bytes],
                 ref: dict[str, dict[str, Any]], workers: int, env: dict[str, str],
                 seconds: float, client: str, skip: set[str], log_off_env: str) -> None:
    work = project.parent
    cmd = [TARMAC, "--project", str(project), "serve", "--port", "{port}", "--workers",
           str(workers), "--log-file", str(work / "access.log")]

    def start(extra_env: dict[str, str] | None = None) -> Any:
        port = free_port()
        return server([a.replace("{port}", str(port)) for a in cmd], cwd=project,
                      env={**env, **(extra_env or {})}, port=port, log=work / "tarmac.log")

    c.log(f"tarmac: tarmac serve, {workers} workers")
    with start() as base:
        url = f"{base}/v1/predict/{MODEL}"
        status, answer = post(url, bodies[1])
        if status == 404:
            print("tarmac: predict endpoint not available", file=sys.stderr)
            res.figure("tarmac", "skipped", "", "tarmac: predict endpoint not available "
                       f"(POST /v1/predict/{MODEL} answered 404)")
            return
        if status != 200:
            raise RuntimeError(f"POST /v1/predict/{MODEL} answered {status}: {answer}")
        figures = run_cases(url, bodies, seconds, client, work)
        show(res, "tarmac (log on)", figures)
        ratios(res, figures, ref)
        if "canary" not in skip:
            c.guarded(res, "canary+shadow", lambda: bench_canary(
                res, project, url, bodies, ref, seconds, client))
        if "reload" not in skip:
            c.guarded(res, "alias change", lambda: bench_reload(res, project, url, bodies))
    if "logoff" not in skip:
        name, _, value = log_off_env.partition("=")
        with start({name: value}) as base:
            url = f"{base}/v1/predict/{MODEL}"
            off = load(url, bodies[1], concurrency=8, seconds=seconds, client=client, work=work)
        on = figures["1 row, c=8"]
        res.figure("tarmac log off, 1 row, c=8: req/s", round(off["rps"], 1), "req/s",
                   f"p99 {off['p99_ms']:.2f} ms, {off['errors']} errors ({log_off_env}; a "
                   "switch the server does not know leaves the log on: ratio ~1)")
        res.figure("ratio prediction log on/off, req/s", round(on["rps"] / off["rps"], 3), "x",
                   "1 row, c=8; 1.0 = the log costs nothing")
        res.figure("ratio tarmac log off / reference, req/s",
                   round(off["rps"] / ref["1 row, c=8"]["rps"], 3), "x", "1 row, c=8")


def ratios(res: c.Result, ours: dict[str, dict[str, Any]],
           ref: dict[str, dict[str, Any]]) -> None:
    for case, out in ours.items():
        r = ref[case]
        res.figure(f"ratio tarmac/reference {case}: req/s", round(out["rps"] / r["rps"], 3),
                   "x", f"p99 {out['p99_ms']:.2f} vs {r['p99_ms']:.2f} ms "
                        f"({out['p99_ms'] / r['p99_ms']:.2f}x)")
    eight = ours["1 row, c=8"]
    res.goal("c=8 req/s tarmac (log on) / reference", eight["rps"] / ref["1 row, c=8"]["rps"],
             "x", ">= 1.0", eight["rps"] >= ref["1 row, c=8"]["rps"] and not eight["errors"])
    res.goal("c=8 p99 tarmac (log on)", eight["p99_ms"], "ms", "<= 20", eight["p99_ms"] <= 20)


def bench_canary(res: c.Result, project: Path, url: str, bodies: dict[int, bytes],
                 ref: dict[str, dict[str, Any]], seconds: float, client: str) -> None:
    """p99 with v2 as a 10% canary and v3 as a shadow (``p.serving.deploy``)."""
    import tarmac

    with tarmac.open(project) as p:
        serving = getattr(p, "serving", None)
        if serving is None or not hasattr(serving, "deploy"):
            print("tarmac: p.serving.deploy not available", file=sys.stderr)
            res.figure("canary+shadow", "skipped", "", "p.serving.deploy not available")
            return
        serving.deploy(MODEL, canary=2, percent=10, reason="benchmark")
        serving.deploy(MODEL, shadow=3, reason="benchmark")
        try:
            time.sleep(6)  # the servers pick a deployment change up within 5 s
            out = load(url, bodies[1], concurrency=8, seconds=seconds, client=client,
                       work=project.parent)
            r = ref["1 row, c=8"]
            res.figure("tarmac canary 10% + shadow, 1 row, c=8: p99", round(out["p99_ms"], 2),
                       "ms", f"{out['rps']:,.0f} req/s, {out['errors']} errors")
            res.figure("ratio canary+shadow p99 / reference p99",
                       round(out["p99_ms"] / r["p99_ms"], 3), "x", "1 row, c=8")
        finally:
            serving.deploy(MODEL, abort=True, reason="benchmark")
            serving.deploy(MODEL, stop_shadow=True, reason="benchmark")


def bench_reload(res: c.Result, project: Path, url: str, bodies: dict[int, bytes],
                 timeout: float = 30) -> None:
    """Promote v2 and poll until answers name it: seconds from the alias change to serving."""
    import tarmac

    status, answer = post(url, bodies[1])
    before = answer["predictions"][0].get("model")
    if before is None:
        res.figure("alias change", "skipped", "", "answers carry no 'model' field")
        return
    with tarmac.open(project) as p:
        t0 = time.perf_counter()
        p.models.promote(MODEL, 2, force=True, reason="benchmark: alias change")
        promoted = time.perf_counter()
        seen = before
        while seen == before and time.perf_counter() - promoted < timeout:
            status, answer = post(url, bodies[1])
            seen = answer["predictions"][0].get("model") if status == 200 else seen
            time.sleep(0.01)
        took = time.perf_counter() - promoted
        p.models.promote(MODEL, 1, force=True, reason="benchmark: back to v1")
    if seen == before:
        res.figure("alias change -> new version serving", f"> {timeout:.0f}", "s",
                   f"answers still name {before}")
        res.goal("alias change picked up", timeout, "s", "<= 5", False)
        return
    res.figure("alias change -> new version serving", round(took, 3), "s",
               f"{before} -> {seen}; promotion itself {promoted - t0:.3f} s")
    res.goal("alias change picked up", took, "s", "<= 5", took <= 5)


if __name__ == "__main__":
    main()
