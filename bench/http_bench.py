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
import trio

ROOT = Path(__file__).resolve().parent.parent
ADD = {"description": "adds two integers", "name": "add", "signature": "(i32, i32) -> i32",
       "args": [10, 20],
       "examples": [{"args": [1, 2], "result": 3}, {"args": [5, 7], "result": 12}]}
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
            "bare": bare_s, "ratio_req_s": node_s["req_s"] / bare_s["req_s"]}


def to_markdown(res: dict[str, Any]) -> str:
    n, b = res["node"], res["bare"]
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
    ])


if __name__ == "__main__":
    print(to_markdown(run_all(quick="--quick" in sys.argv)))
