"""Cached task over HTTP vs a bare quart-trio endpoint, measured in the same run.

Both servers run as separate processes on loopback with the same hypercorn settings; one trio
client (httpx, a small pool) drives them alternately with the same concurrency, so the ratio
isolates what the node adds per cached task: validation, library lookup, the WASM call in a
worker thread, metrics and the reply.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import trio

ROOT = Path(__file__).resolve().parent.parent
ADD = {"description": "adds two integers", "name": "add", "signature": "(i32, i32) -> i32",
       "args": [10, 20],
       "examples": [{"args": [1, 2], "result": 3}, {"args": [5, 7], "result": 12},
                    {"args": [-1, -1], "result": -2}, {"args": [3, -5], "result": -2},
                    {"args": [100, 23], "result": 123}]}
VADD = {"description": "adds two vectors element-wise", "name": "vadd",
        "signature": "(f32[], f32[]) -> f32[]",
        "examples": [{"args": [[1, 2, 3], [4, 5, 6]], "result": [5, 7, 9]},
                     {"args": [[0.5, -1], [2, 3]], "result": [2.5, 2]},
                     {"args": [[0, 0], [-0.07, 0.25]], "result": [-0.07, 0.25]},
                     {"args": [[-1, 2.5], [3, -4]], "result": [2, -1.5]}]}
MSGPACK = {"Content-Type": "application/msgpack", "Accept": "application/msgpack"}
CACHED = {k: v for k, v in ADD.items() if k != "examples"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


async def _load(url: str, requests: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    per_worker = requests // concurrency
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker() -> None:
            for _ in range(per_worker):
                t0 = time.perf_counter()
                r = await client.post("/v1/tasks", json=CACHED)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200 or r.json()["result"] != 30:
                    raise RuntimeError(f"bad reply from {url}: {r.status_code} {r.text[:200]}")

        async with trio.open_nursery() as n:
            for _ in range(concurrency):
                n.start_soon(worker)
    return latencies


def _summary(lat: list[float], wall: float) -> dict[str, float]:
    lat = sorted(lat)
    return {"req_s": len(lat) / wall, "p50_ms": lat[len(lat) // 2] * 1e3,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3}


def run_all(quick: bool = False) -> dict[str, Any]:
    requests = 400 if quick else 3000
    concurrency = 8
    rounds = 2 if quick else 3
    env = dict(os.environ, COLONY_LOG_LEVEL="error")
    node_port, bare_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        node = subprocess.Popen([sys.executable, "-m", "colony", "node", "--port", str(node_port),
                                 "--data", tmp, "--name", "bench"], cwd=ROOT, env=env)
        bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port",
                                 str(bare_port)], cwd=ROOT, env=env)
        node_url, bare_url = f"http://127.0.0.1:{node_port}", f"http://127.0.0.1:{bare_port}"
        try:
            _wait(node_url, node)
            _wait(bare_url, bare)
            r = httpx.post(node_url + "/v1/tasks", json=ADD, timeout=120)
            r.raise_for_status()
            results: dict[str, list[float]] = {"node": [], "bare": []}
            walls: dict[str, float] = {"node": 0.0, "bare": 0.0}
            for _ in range(rounds):  # alternate to spread machine noise over both
                for label, url in (("bare", bare_url), ("node", node_url)):
                    t0 = time.perf_counter()
                    results[label] += trio.run(_load, url, requests, concurrency)
                    walls[label] += time.perf_counter() - t0
        finally:
            for p in (node, bare):
                p.terminate()
                p.wait(timeout=10)
    node_s, bare_s = _summary(results["node"], walls["node"]), _summary(results["bare"],
                                                                          walls["bare"])
    return {"requests": requests * rounds, "concurrency": concurrency, "node": node_s,
            "bare": bare_s, "ratio_req_s": node_s["req_s"] / bare_s["req_s"],
            "arrays": run_arrays(quick)}


def _median_ms(times: list[float]) -> float:
    return sorted(times)[len(times) // 2] * 1e3


def _time_arrays(url: str, path: str, extra: dict[str, Any], a: np.ndarray, b: np.ndarray,
                 reps: int) -> float:
    """Median end-to-end ms of one msgpack call with f32[] as raw bytes both ways: encode,
    send, run, receive, decode into a numpy array (checked against numpy)."""
    times: list[float] = []
    want = a + b
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(reps + 1):
            t0 = time.perf_counter()
            r = client.post(path, content=msgpack.packb({**extra, "args": [a.tobytes(),
                                                                           b.tobytes()]}),
                            headers=MSGPACK)
            out = msgpack.unpackb(r.content, raw=False)
            got = np.frombuffer(out["result"], dtype="<f4")
            if i:  # the first call warms the connection and the node's module cache
                times.append(time.perf_counter() - t0)
            if r.status_code != 200 or not np.allclose(got, want):
                raise RuntimeError(f"bad vadd reply from {url}{path}: {r.status_code}")
    return _median_ms(times)


def run_arrays(quick: bool = False, n: int = 1_000_000) -> dict[str, Any]:
    """``vadd`` of two f32[n] over HTTP with msgpack (raw little-endian f32 both ways), beside
    numpy's ``a + b`` and a bare quart-trio endpoint doing the same numpy add, in one run."""
    reps = 5 if quick else 15
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n).astype("<f4")
    b = rng.standard_normal(n).astype("<f4")
    numpy_times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.add(a, b)
        numpy_times.append(time.perf_counter() - t0)
    env = dict(os.environ, COLONY_LOG_LEVEL="error")
    node_port, bare_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        node = subprocess.Popen([sys.executable, "-m", "colony", "node", "--port", str(node_port),
                                 "--data", tmp, "--name", "bench", "--no-mdns"], cwd=ROOT,
                                env=env)
        bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port",
                                 str(bare_port)], cwd=ROOT, env=env)
        node_url, bare_url = f"http://127.0.0.1:{node_port}", f"http://127.0.0.1:{bare_port}"
        try:
            _wait(node_url, node)
            _wait(bare_url, bare)
            httpx.post(node_url + "/v1/tasks", json=VADD, timeout=120).raise_for_status()
            task = {k: v for k, v in VADD.items() if k != "examples"}
            out = {
                "n": n, "reps": reps, "numpy_ms": _median_ms(numpy_times),
                "bare_ms": _time_arrays(bare_url, "/v1/functions/vadd/run", {}, a, b, reps),
                "run_ms": _time_arrays(node_url, "/v1/functions/vadd/run", {}, a, b, reps),
                "task_ms": _time_arrays(node_url, "/v1/tasks", task, a, b, reps),
            }
        finally:
            for p in (node, bare):
                p.terminate()
                p.wait(timeout=10)
    return out


def arrays_markdown(res: dict[str, Any]) -> str:
    return "\n".join([
        f"`vadd` of two f32[{res['n']:,}] over HTTP, msgpack with f32[] as raw little-endian "
        f"float32 (`bin`) both ways; median of {res['reps']} calls, end to end (encode, send, "
        "run, receive, decode into numpy), one connection.",
        "",
        "| what | ms | × numpy |",
        "|---|---:|---:|",
        f"| numpy `a + b` in process (baseline) | {res['numpy_ms']:.2f} | 1 |",
        f"| bare quart-trio endpoint doing the numpy add | {res['bare_ms']:.1f} | "
        f"{res['bare_ms'] / res['numpy_ms']:.0f} |",
        f"| node `POST /v1/functions/vadd/run` | {res['run_ms']:.1f} | "
        f"{res['run_ms'] / res['numpy_ms']:.0f} |",
        f"| node `POST /v1/tasks` (cached) | {res['task_ms']:.1f} | "
        f"{res['task_ms'] / res['numpy_ms']:.0f} |",
        "",
        f"Goal ≤ 15 ms end to end: node run {res['run_ms']:.1f} ms; the bare endpoint shows "
        "what hypercorn and quart alone cost for the same bytes.",
    ])


def to_markdown(res: dict[str, Any]) -> str:
    n, b = res["node"], res["bare"]
    arrays = ["", arrays_markdown(res["arrays"])] if "arrays" in res else []
    return "\n".join([
        f"{res['requests']} requests per server, concurrency {res['concurrency']}, "
        "httpx client on the same machine.",
        "",
        "| server | req/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| bare quart-trio endpoint (baseline) | {b['req_s']:.0f} | {b['p50_ms']:.2f} | "
        f"{b['p99_ms']:.2f} |",
        f"| node, cached `add` task | {n['req_s']:.0f} | {n['p50_ms']:.2f} | {n['p99_ms']:.2f} |",
        "",
        f"Ratio node / bare (req/s): **{res['ratio_req_s']:.2f}×** (target ≥ 0.8×).",
        *arrays,
    ])


if __name__ == "__main__":
    if "--arrays" in sys.argv:  # only the array benchmark
        print(arrays_markdown(run_arrays(quick="--quick" in sys.argv)))
    else:
        print(to_markdown(run_all(quick="--quick" in sys.argv)))
