"""Cached task over HTTP vs a bare quart-trio endpoint, measured in the same run.

Both servers run as separate processes on loopback with the same hypercorn settings; one trio
client (httpx, a small pool) drives them alternately with the same concurrency, so the ratio
isolates what the node adds per cached task: validation, library lookup, the WASM call in a
worker thread, metrics and the reply.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import httpcore._sync.http11 as httpcore_http11
import httpx
import msgpack
import numpy as np
import trio

from colony._root import IDLE_TRIM_S

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


def wrk_binary() -> str | None:
    """The external load generator (Debian's ``wrk``: ``apt-get install wrk``), or None."""
    return shutil.which("wrk")


WRK_SCRIPT = """wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk_ms(text: str, label: str) -> float:
    m = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if m is None:
        raise RuntimeError(f"no {label} latency in wrk's output:\n{text}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, url: str, script: Path, concurrency: int, seconds: float,
            pid: int) -> dict[str, float]:
    """One wrk run (one thread, ``concurrency`` keep-alive connections) of the cached task:
    requests, seconds, p50 and p99 in ms, and the server's (``pid``) CPU seconds meanwhile.
    Any non-2xx reply or socket error fails the run."""
    cpu0 = _cpu_s(pid)
    out = subprocess.run([wrk, "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency",
                          "--timeout", "10s", "-s", str(script), url + "/v1/tasks"],
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    cpu = _cpu_s(pid) - cpu0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        raise RuntimeError(f"wrk against {url} saw failures:\n{out}")
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", out)
    if m is None:
        raise RuntimeError(f"no request count in wrk's output:\n{out}")
    return {"requests": int(m.group(1)), "seconds": float(m.group(2)) * _UNITS[m.group(3)] / 1e3,
            "p50_ms": _wrk_ms(out, "50%"), "p99_ms": _wrk_ms(out, "99%"), "cpu_s": cpu}


def paired_ratios(bare: list[dict[str, float]], node: list[dict[str, float]]) -> list[float]:
    """Node / bare req/s of each round (one bare run, then one node run, back to back)."""
    return [(n["requests"] / n["seconds"]) / (b["requests"] / b["seconds"])
            for b, n in zip(bare, node, strict=True)]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _wrk_summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Rounds together: req/s over all of them, the median round's p50, the worst round's p99."""
    p50s = sorted(r["p50_ms"] for r in runs)
    return {"req_s": sum(r["requests"] for r in runs) / sum(r["seconds"] for r in runs),
            "p50_ms": p50s[len(p50s) // 2], "p99_ms": max(r["p99_ms"] for r in runs),
            "requests": sum(r["requests"] for r in runs),
            "cpu_ms_per_req": sum(r["cpu_s"] for r in runs) * 1e3 / sum(r["requests"]
                                                                        for r in runs)}


def _start_pair(tmp: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes],
                                                         subprocess.Popen[bytes], str, str]:
    node_port, bare_port = _free_port(), _free_port()
    node = subprocess.Popen([sys.executable, "-m", "colony", "node", "--port", str(node_port),
                             "--data", tmp, "--name", "bench", "--no-mdns"], cwd=ROOT, env=env)
    bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port",
                             str(bare_port)], cwd=ROOT, env=env)
    return node, bare, f"http://127.0.0.1:{node_port}", f"http://127.0.0.1:{bare_port}"


def run_all(quick: bool = False) -> dict[str, Any]:
    requests = 400 if quick else 3000
    concurrency = 8
    rounds = 2 if quick else 3
    # wrk: more, shorter rounds than httpx's, each a back-to-back pair (bare, then node): the
    # machine's other load drifts over seconds, and a pair sees nearly the same drift
    wrk_rounds = 2 if quick else 8
    seconds = 3.0 if quick else 4.0
    env = dict(os.environ, COLONY_LOG_LEVEL="error")
    wrk = wrk_binary()
    wrk_runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        node, bare, node_url, bare_url = _start_pair(tmp, env)
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
            if wrk is not None:
                script = Path(tmp) / "task.lua"
                script.write_text(WRK_SCRIPT.format(body=json.dumps(CACHED)))
                for _ in range(wrk_rounds):
                    for c in (1, 8):
                        for label, url, proc in (("bare", bare_url, bare),
                                                 ("node", node_url, node)):
                            wrk_runs.setdefault((label, c), []).append(
                                run_wrk(wrk, url, script, c, seconds, proc.pid))
        finally:
            for p in (node, bare):
                p.terminate()
                p.wait(timeout=10)
    node_s, bare_s = _summary(results["node"], walls["node"]), _summary(results["bare"],
                                                                          walls["bare"])
    out: dict[str, Any] = {
        "requests": requests * rounds, "concurrency": concurrency, "node": node_s,
        "bare": bare_s, "ratio_req_s": node_s["req_s"] / bare_s["req_s"],
        "wrk": None if wrk is None else {
            "seconds": seconds, "rounds": wrk_rounds,
            "rows": {f"{label}@{c}": _wrk_summary(runs) for (label, c), runs in wrk_runs.items()},
            "paired": {str(c): paired_ratios(wrk_runs[("bare", c)], wrk_runs[("node", c)])
                       for c in (1, 8)},
        },
    }
    if not quick:
        out["instructions"] = run_instructions()
    out["arrays"] = run_arrays(quick)
    out["memory"] = run_memory(quick)
    return out


def _median_ms(times: list[float]) -> float:
    return sorted(times)[len(times) // 2] * 1e3


def msgpack_parts(extra: dict[str, Any], arrays: list[np.ndarray]) -> list[bytes | memoryview]:
    """``{**extra, "args": [bin, ...]}`` as msgpack, in parts: the small header packed by
    msgpack, then each array's ``bin`` header and its raw little-endian float32 bytes as they lie
    in memory (no copy of the array). Sent back to back they are one valid msgpack map."""
    pk = msgpack.Packer()
    head = pk.pack_map_header(len(extra) + 1) + b"".join(
        pk.pack(k) + pk.pack(v) for k, v in extra.items()) + pk.pack("args") + \
        pk.pack_array_header(len(arrays))
    parts: list[bytes | memoryview] = [head]
    for x in arrays:
        raw = np.ascontiguousarray(x, dtype="<f4").data.cast("B")
        n = raw.nbytes
        parts.append(b"\xc4" + n.to_bytes(1, "big") if n < 1 << 8 else
                     b"\xc5" + n.to_bytes(2, "big") if n < 1 << 16 else
                     b"\xc6" + n.to_bytes(4, "big"))
        parts.append(raw)
    return parts


def _time_arrays(url: str, path: str, extra: dict[str, Any], a: np.ndarray, b: np.ndarray,
                 reps: int, tuned: bool, pid: int) -> tuple[float, float]:
    """Median end-to-end ms of one msgpack call with f32[] as raw bytes both ways: encode,
    send, run, receive, decode into a numpy array (checked against numpy). One connection.
    Also the server's (``pid``) CPU ms per call over the timed calls.

    ``tuned``: the client a program moving big arrays would use: the body written around the
    arrays' own buffers (:func:`msgpack_parts`, Content-Length set: no 8 MB copy to encode) and
    reads of 1 MiB (httpcore reads 64 KiB at a time). Otherwise ``msgpack.packb`` and httpx as
    they come."""
    times: list[float] = []
    want = a + b
    cpu0 = _cpu_s(pid)  # reset after the warm-up call
    read_size = httpcore_http11.HTTP11Connection.READ_NUM_BYTES
    if tuned:
        httpcore_http11.HTTP11Connection.READ_NUM_BYTES = max(read_size, 1 << 20)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            for i in range(reps + 1):
                t0 = time.perf_counter()
                if tuned:
                    parts = msgpack_parts(extra, [a, b])
                    headers = {**MSGPACK, "Content-Length": str(sum(len(memoryview(x).cast("B"))
                                                                    for x in parts))}
                    r = client.post(path, content=cast(list[bytes], parts), headers=headers)
                else:
                    r = client.post(path, content=msgpack.packb(
                        {**extra, "args": [a.tobytes(), b.tobytes()]}), headers=MSGPACK)
                out = msgpack.unpackb(r.content, raw=False)
                got = np.frombuffer(out["result"], dtype="<f4")
                if i:  # the first call warms the connection and the node's module cache
                    times.append(time.perf_counter() - t0)
                else:
                    cpu0 = _cpu_s(pid)
                if r.status_code != 200 or not np.allclose(got, want):
                    raise RuntimeError(f"bad vadd reply from {url}{path}: {r.status_code}")
    finally:
        httpcore_http11.HTTP11Connection.READ_NUM_BYTES = read_size
    return _median_ms(times), (_cpu_s(pid) - cpu0) * 1e3 / reps


def _time_json(url: str, a: np.ndarray, b: np.ndarray) -> float:
    """One ``vadd`` call with JSON both ways (lists of numbers), end to end, in ms."""
    with httpx.Client(base_url=url, timeout=120) as client:
        t0 = time.perf_counter()
        r = client.post("/v1/functions/vadd/run", json={"args": [a.tolist(), b.tolist()]})
        got = np.asarray(r.json()["result"], dtype="<f4")
        ms = (time.perf_counter() - t0) * 1e3
    if r.status_code != 200 or not np.allclose(got, a + b):
        raise RuntimeError(f"bad JSON vadd reply from {url}: {r.status_code}")
    return ms


def _memory_mb(pid: int) -> dict[str, float]:
    """A process's resident memory in MB: ``rss`` (VmRSS), its ``anon`` (private heap) and
    ``file`` (mapped files, e.g. the memory-mapped model: shared by every process that maps
    them) parts, and ``pss`` (proportional: shared pages divided among their sharers)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(val.split()[0]) / 1024
    pss = 0.0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    return {"rss": fields.get("VmRSS", 0.0), "anon": fields.get("RssAnon", 0.0),
            "file": fields.get("RssFile", 0.0), "pss": pss}


TOGGLE_C = """#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_TOGGLE_COLLECT; }
void cg_stop(void) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS; }
"""


def _callgrind_toggle(tmp: Path) -> Path | None:
    """The helper library a server under callgrind calls to start and stop counting (built
    from valgrind's own header), or None without valgrind or a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if shutil.which("valgrind") is None or cc is None:
        return None
    src, lib = tmp / "toggle.c", tmp / "libtoggle.so"
    src.write_text(TOGGLE_C)
    done = subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)],
                          capture_output=True, text=True)
    return lib if done.returncode == 0 else None


def _dump_totals(prefix: Path) -> list[int]:
    """Instructions of each dump callgrind wrote (``prefix.1``, ``prefix.2``, ...), in order."""
    numbered = [f for f in prefix.parent.glob(prefix.name + ".*") if f.suffix[1:].isdigit()]
    totals = []
    for f in sorted(numbered, key=lambda f: int(f.suffix[1:])):
        lines = [line for line in f.read_text().splitlines()
                 if line.startswith(("summary:", "totals:"))]
        if lines:
            totals.append(int(lines[-1].split()[1]))
    return totals


def run_instructions(requests: int = 300) -> dict[str, Any] | None:
    """Instructions per cached task, node and bare endpoint, each server under valgrind's
    callgrind: the count of a window of ``requests`` sequential requests minus that of an
    equally long idle window (what runs without requests: under valgrind, background timers
    fire ~50x as often per request as they would), divided by ``requests``. Counts do not
    depend on the machine's other load; None without valgrind and a C compiler."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        lib = _callgrind_toggle(tmp)
        if lib is None:
            return None
        env = dict(os.environ, COLONY_LOG_LEVEL="error", QT45_CALLGRIND_TOGGLE=str(lib),
                   PYTHONPATH=str(ROOT / "bench" / "callgrind"))
        node_port, bare_port = _free_port(), _free_port()
        vg = ["valgrind", "--tool=callgrind", "--collect-atstart=no"]
        data = tmp / "node"
        procs = {
            "node": subprocess.Popen([*vg, f"--callgrind-out-file={tmp / 'cg.node'}",
                                           sys.executable, "-m", "colony", "node", "--port",
                                           str(node_port), "--data", str(data), "--name",
                                           "bench", "--no-mdns"],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL),
            "bare": subprocess.Popen([*vg, f"--callgrind-out-file={tmp / 'cg.bare'}",
                                           sys.executable, str(ROOT / "bench" / "bare_app.py"),
                                           "--port", str(bare_port)],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL),
        }
        urls = {"node": f"http://127.0.0.1:{node_port}", "bare": f"http://127.0.0.1:{bare_port}"}
        out: dict[str, Any] = {"requests": requests}
        try:
            for label, proc in procs.items():
                _wait(urls[label], proc, timeout=1200)
            httpx.post(urls["node"] + "/v1/tasks", json=ADD, timeout=1200).raise_for_status()
            for label, proc in procs.items():
                with httpx.Client(base_url=urls[label], timeout=300) as client:
                    for _ in range(30):  # warm: the node's module cache, both servers' paths
                        client.post("/v1/tasks", json=CACHED).raise_for_status()
                    proc.send_signal(signal.SIGUSR1)
                    time.sleep(0.5)
                    t0 = time.monotonic()
                    for _ in range(requests):
                        r = client.post("/v1/tasks", json=CACHED)
                        if r.status_code != 200 or r.json()["result"] != 30:
                            raise RuntimeError(f"bad reply from {label}: {r.status_code}")
                    busy_s = time.monotonic() - t0
                    proc.send_signal(signal.SIGUSR2)
                    time.sleep(2)
                    proc.send_signal(signal.SIGUSR1)
                    time.sleep(busy_s)
                    proc.send_signal(signal.SIGUSR2)
                    time.sleep(2)
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for label in procs:
            totals = _dump_totals(tmp / f"cg.{label}")
            if len(totals) < 2:
                raise RuntimeError(f"callgrind wrote {len(totals)} dumps for {label}, not 2")
            busy, idle = totals[0], totals[1]
            out[label] = {"per_request": (busy - idle) / requests, "busy": busy, "idle": idle}
        return out


def instructions_markdown(res: dict[str, Any] | None) -> str:
    if res is None:
        return ("Instruction counts skipped: they need valgrind and a C compiler "
                "(`apt-get install valgrind gcc`).")
    b, n = res["bare"]["per_request"], res["node"]["per_request"]
    return (f"Instructions per cached task (valgrind's callgrind, both servers, "
            f"{res['requests']} sequential requests on one connection, an equally long idle "
            f"window subtracted: a count that does not depend on the machine's other load): "
            f"bare {b / 1e6:.3f} M, node {n / 1e6:.3f} M; bare / node **{b / n:.2f}×**.")


def run_arrays(quick: bool = False, n: int = 1_000_000) -> dict[str, Any]:
    """``vadd`` of two f32[n] over HTTP with msgpack (raw little-endian f32 both ways), beside
    numpy's ``a + b`` and a bare quart-trio endpoint doing the same numpy add, in one run: first
    with httpx and msgpack as they come, then with the tuned client (:func:`_time_arrays`)."""
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
    with tempfile.TemporaryDirectory() as tmp:
        node, bare, node_url, bare_url = _start_pair(tmp, env)
        try:
            _wait(node_url, node)
            _wait(bare_url, bare)
            httpx.post(node_url + "/v1/tasks", json=VADD, timeout=120).raise_for_status()
            task = {k: v for k, v in VADD.items() if k != "examples"}
            rss_before = _memory_mb(node.pid)
            out: dict[str, Any] = {"n": n, "reps": reps, "numpy_ms": _median_ms(numpy_times)}
            for tuned in (False, True):
                if tuned:  # the client process as the node's: big blocks stay in the heap
                    from colony._root import tune_allocator

                    tune_allocator()
                key = "tuned" if tuned else "plain"
                out[key] = {}
                for what, url, path, extra, proc in (
                        ("bare", bare_url, "/v1/functions/vadd/run", {}, bare),
                        ("run", node_url, "/v1/functions/vadd/run", {}, node),
                        ("task", node_url, "/v1/tasks", task, node)):
                    ms, cpu_ms = _time_arrays(url, path, extra, a, b, reps, tuned, proc.pid)
                    out[key][f"{what}_ms"] = ms
                    out[key][f"{what}_cpu_ms"] = cpu_ms
            out["json_ms"] = _time_json(node_url, a, b)
            out["rss_mb"] = {"before": rss_before, "after": _memory_mb(node.pid)}
        finally:
            for p in (node, bare):
                p.terminate()
                p.wait(timeout=10)
    return out


def _embedding_backends() -> list[str]:
    """The node's default embedding backend, then sentence-transformers where installed."""
    import importlib.util

    from node._embed import BACKENDS

    extra = [b for b in BACKENDS[1:] if importlib.util.find_spec("sentence_transformers")]
    return [BACKENDS[0], *extra]


def _wait_semantic(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> float:
    """Seconds until the node's embedding model is loaded (``/health`` says semantic)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"node {url} exited with {proc.returncode}")
        if httpx.get(url + "/health", timeout=5).json().get("search") == "semantic":
            return time.monotonic() - t0
        time.sleep(0.25)
    raise RuntimeError(f"node {url} did not load its embedding model in {timeout:.0f} s")


def run_memory(quick: bool = False, tasks: int = 1000) -> dict[str, Any]:
    """RSS of a node with its embedding model, at start (model loaded, one function) and after
    ``tasks`` tasks, for each embedding backend: half of them cached ``add`` tasks, half tasks
    by description only, each text distinct (each embeds its query and searches the library;
    found: 200, nothing confident: 404)."""
    tasks = 200 if quick else tasks
    out: dict[str, Any] = {"tasks": tasks, "backends": {}}
    for backend in _embedding_backends()[:1 if quick else None]:
        env = dict(os.environ, COLONY_LOG_LEVEL="error", COLONY_EMBED_BACKEND=backend)
        with tempfile.TemporaryDirectory() as tmp:
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            node = subprocess.Popen([sys.executable, "-m", "colony", "node", "--port", str(port),
                                     "--data", tmp, "--name", "mem", "--no-mdns"], cwd=ROOT,
                                    env=env)
            try:
                _wait(url, node)
                load_s = _wait_semantic(url, node)
                with httpx.Client(base_url=url, timeout=120) as client:
                    client.post("/v1/tasks", json=ADD).raise_for_status()
                    # the function's vector and the index settle; a quiet node trims its
                    # heap after IDLE_TRIM_S (colony/_root.py): "start" is after that
                    time.sleep(IDLE_TRIM_S * 1.25 + 2)
                    start = _memory_mb(node.pid)
                    statuses: dict[int, int] = {}
                    t0 = time.perf_counter()
                    for i in range(tasks):
                        body = CACHED if i % 2 == 0 else {
                            "description": f"adds two integers, request {i}",
                            "signature": "(i32, i32) -> i32", "args": [i, 1],
                            "synthesize": False}
                        r = client.post("/v1/tasks", json=body)
                        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                        if r.status_code not in (200, 404):
                            raise RuntimeError(f"task {i} answered {r.status_code}: {r.text}")
                    wall = time.perf_counter() - t0
                    after = _memory_mb(node.pid)
                    time.sleep(IDLE_TRIM_S * 1.25 + 2)
                    quiet = _memory_mb(node.pid)
            finally:
                node.terminate()
                node.wait(timeout=10)
        out["backends"][backend] = {"load_s": load_s, "start": start, "after": after,
                                    "quiet": quiet,
                                    "statuses": statuses, "tasks_s": wall}
    out["machine"] = run_machine_memory()
    return out


def run_machine_memory(nodes: int = 3) -> list[dict[str, float]]:
    """``nodes`` nodes on one machine as ``colony up`` starts them (one process each, default
    embedding backend), each after loading its model and embedding one query: their memory."""
    env = dict(os.environ, COLONY_LOG_LEVEL="error")
    procs: list[tuple[subprocess.Popen[bytes], str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for i in range(nodes):
                port = _free_port()
                procs.append((subprocess.Popen(
                    [sys.executable, "-m", "colony", "node", "--port", str(port), "--data",
                     f"{tmp}/n{i}", "--name", f"n{i}", "--no-mdns"], cwd=ROOT, env=env),
                    f"http://127.0.0.1:{port}"))
            for proc, url in procs:
                _wait(url, proc, timeout=120)
                _wait_semantic(url, proc)
                r = httpx.post(url + "/v1/tasks", timeout=60, json={
                    "description": "adds two integers", "signature": "(i32, i32) -> i32",
                    "args": [1, 2], "synthesize": False})  # empty library: 404, query embedded
                if r.status_code not in (200, 404):
                    raise RuntimeError(f"{url} answered {r.status_code}: {r.text}")
            time.sleep(1.0)
            return [_memory_mb(proc.pid) for proc, _ in procs]
        finally:
            for proc, _ in procs:
                proc.terminate()
            for proc, _ in procs:
                proc.wait(timeout=10)


def memory_markdown(res: dict[str, Any]) -> str:
    rows = []
    for backend, r in res["backends"].items():
        s, a = r["start"], r["after"]
        q = r["quiet"]
        rows.append(f"| {backend} | {r['load_s']:.1f} | {s['rss']:.0f} | {s['anon']:.0f} | "
                    f"{s['pss']:.0f} | {a['rss']:.0f} | {a['anon']:.0f} | {a['file']:.0f} | "
                    f"{a['pss']:.0f} | {q['rss']:.0f} | {r['tasks_s'] / res['tasks'] * 1e3:.1f} |")
    statuses = ", ".join(f"{b}: " + " / ".join(f"{n}× {code}" for code, n in
                                               sorted(r["statuses"].items()))
                         for b, r in res["backends"].items())
    return "\n".join([
        f"Memory of one node with its embedding model (MB): at start (model loaded, one "
        f"function) and after {res['tasks']:,} tasks (half cached `add`, half by description "
        "only, every text distinct: each embeds its query and searches). RSS counts the "
        "memory-mapped model file (`file`), which the page cache holds once for every node "
        "of the machine (PSS divides shared pages among their processes); `anon` is the "
        "node's own. Start: model loaded, `add` synthesized, then a quiet spell (a quiet node "
        "gives its free heap back after 10 s); after: right after the tasks; quiet: after the "
        "next quiet spell.",
        "",
        "| backend | model load s | start RSS | start anon | start PSS | after RSS | after anon "
        "| after file | after PSS | quiet RSS | ms per task |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Goal ≤ 300 MB RSS after 1,000 tasks. Replies: {statuses}.",
        *_machine_markdown(res.get("machine")),
    ])


def _machine_markdown(nodes: list[dict[str, float]] | None) -> list[str]:
    if not nodes:
        return []
    rss, pss = sum(n["rss"] for n in nodes), sum(n["pss"] for n in nodes)
    each = ", ".join(f"{n['rss']:.0f} / {n['anon']:.0f} / {n['pss']:.0f}" for n in nodes)
    return [
        "",
        f"{len(nodes)} nodes on one machine, one process each as `colony up` starts them, each "
        f"with its model loaded and one query embedded (RSS / anon / PSS, MB): {each}. "
        f"Together RSS {rss:.0f} MB, PSS {pss:.0f} MB: the model's weights are one "
        "memory-mapped file in the page cache, read by every node's embedder and loaded once "
        "per machine; what each node holds alone is its `anon` part.",
    ]


def arrays_markdown(res: dict[str, Any]) -> str:
    numpy_ms = res["numpy_ms"]
    rows = []
    for key, label in (("plain", "httpx + `msgpack.packb`"), ("tuned", "tuned client")):
        r = res[key]
        for what, name in (("bare_ms", "bare quart-trio endpoint doing the numpy add"),
                           ("run_ms", "node `POST /v1/functions/vadd/run`"),
                           ("task_ms", "node `POST /v1/tasks` (cached)")):
            cpu = r[what.replace("_ms", "_cpu_ms")]
            rows.append(f"| {label} | {name} | {r[what]:.1f} | {r[what] / numpy_ms:.0f} | "
                        f"{cpu:.1f} |")
    rss = res.get("rss_mb")
    tail = [] if rss is None else [
        "", f"Node RSS before the array calls {rss['before']['rss']:.0f} MB, after "
            f"{rss['after']['rss']:.0f} MB (anon {rss['before']['anon']:.0f} → "
            f"{rss['after']['anon']:.0f} MB: glibc keeps up to 32 MB of freed heap per arena "
            "for the next big body instead of unmapping it; a node quiet for 10 s gives it "
            "back)."]
    best = res["tuned"]["run_ms"]
    if "json_ms" in res:
        rows.append(f"| httpx, JSON both ways (one call) | node `POST /v1/functions/vadd/run` | "
                    f"{res['json_ms']:.0f} | {res['json_ms'] / numpy_ms:.0f} | |")
    return "\n".join([
        f"`vadd` of two f32[{res['n']:,}] over HTTP, msgpack with f32[] as raw little-endian "
        f"float32 (`bin`) both ways; median of {res['reps']} calls, end to end (encode, send, "
        "run, receive, decode into numpy), one connection. Servers: hypercorn reads 1 MiB per "
        "socket read and glibc malloc keeps blocks up to 32 MB in the heap (`colony/_root.py`; "
        "the bare endpoint runs with the same settings). Clients: httpx with `msgpack.packb` "
        "as they come, then the tuned client (the body written around the arrays' own buffers, "
        "1 MiB reads, the same malloc settings: `bench/http_bench.py`).",
        "",
        "| client | server | ms | × numpy | server CPU ms/call |",
        "|---|---|---:|---:|---:|",
        f"| — | numpy `a + b` in process (baseline) | {numpy_ms:.2f} | 1 | |",
        *rows,
        "",
        f"Goal ≤ 15 ms end to end: node run {best:.1f} ms with the tuned client "
        f"({'met' if best <= 15 else 'not met'}); the bare endpoint shows what hypercorn and "
        "quart alone cost for the same bytes. Where the 204–480 ms of earlier runs went "
        "(profiled): glibc's defaults gave every multi-megabyte buffer a fresh mmap whose "
        "pages fault in on each copy (an 8 MB copy 7–10 ms instead of 0.3 ms), hypercorn's "
        "64 KiB reads pushed ~190 chunks per call through h11, hypercorn and quart, quart "
        "copied each body twice, and the client packed and read in the same small steps.",
        *tail,
    ])


def wrk_markdown(res: dict[str, Any]) -> str:
    w = res.get("wrk")
    if w is None:
        return ("wrk rows skipped: `wrk` is not installed (`apt-get install wrk`, or "
                "`make apt`); the httpx rows above are measured without it.")
    rows, ratios, pairs = [], [], []
    for c in (1, 8):
        b, n = w["rows"][f"bare@{c}"], w["rows"][f"node@{c}"]
        ratios.append(f"c={c}: {n['req_s'] / b['req_s']:.2f}×")
        paired = w.get("paired", {}).get(str(c))
        if paired:
            pairs.append(f"c={c}: **{_median(paired):.2f}×** (rounds: "
                         f"{', '.join(f'{r:.2f}' for r in paired)})")
        for label, r in (("bare quart-trio endpoint", b), ("node, cached `add` task", n)):
            rows.append(f"| {c} | {label} | {r['req_s']:.0f} | {r['p50_ms']:.2f} | "
                        f"{r['p99_ms']:.2f} | {r['cpu_ms_per_req']:.3f} | {r['requests']} |")
    p99 = w["rows"]["node@8"]["p99_ms"]
    cpu = w["rows"]["bare@8"]["cpu_ms_per_req"] / w["rows"]["node@8"]["cpu_ms_per_req"]
    return "\n".join([
        f"wrk (one thread, keep-alive connections = concurrency), {w['rounds']} rounds of "
        f"{w['seconds']:g} s per server and concurrency, alternating: req/s over all rounds, "
        "the median round's p50, the worst round's p99; server CPU: the server process's "
        "user + system time per request (less sensitive to the machine's other load than "
        "req/s). Both servers freeze their heap after start-up (`gc.freeze()`: the node after "
        "its model loads, the bare endpoint after its imports), so neither pays collections "
        "over start-up objects the other does not.",
        "",
        "| concurrency | server | req/s | p50 ms | p99 ms | server CPU ms/req | requests |",
        "|---:|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        *([f"Ratio node / bare (req/s), the median of the rounds' back-to-back pairs: "
           f"{'; '.join(pairs)} (goal ≥ 0.9×)."] if pairs else []),
        f"Ratio over all rounds (req/s): {', '.join(ratios)}; node p99 at c=8: "
        f"{p99:.2f} ms (goal ≤ 20 ms). CPU per request, bare / node at c=8: {cpu:.2f}× (the "
        "req/s ratio the node would reach with a core to itself).",
    ])


def to_markdown(res: dict[str, Any]) -> str:
    n, b = res["node"], res["bare"]
    arrays = ["", arrays_markdown(res["arrays"])] if "arrays" in res else []
    memory = ["", memory_markdown(res["memory"])] if "memory" in res else []
    return "\n".join([
        "Two CPU cores shared with other work while measured: absolute figures are noisy, the "
        "ratios (same run, servers alternating) less so.",
        "",
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
        "",
        wrk_markdown(res),
        *(["", instructions_markdown(res["instructions"])] if "instructions" in res else []),
        *arrays,
        *memory,
    ])


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if "--arrays" in sys.argv:  # only the array benchmark
        print(arrays_markdown(run_arrays(quick=quick)))
    elif "--memory" in sys.argv:  # only the memory benchmark
        print(memory_markdown(run_memory(quick=quick)))
    else:
        print(to_markdown(run_all(quick=quick)))
