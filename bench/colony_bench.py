"""Colony propagation: how long a new variant takes to reach every node.

Real: three ``colony node`` processes on loopback sharing a fresh colony key (static seeds, so
mDNS start-up does not enter the figure). A task synthesizes a new function on node 1; we poll
nodes 2 and 3 until each serves the variant with its *own* passing verdict (signature checked,
tests re-run in its sandbox). The clock starts when node 1's task reply arrives, so synthesis
time is not counted: what is measured is push + store + immune check. Target: <= 2 s.

Simulated: ``colony._sim.run_propagation`` (the real sync state machine and codec over an
in-memory network, fanout 3) for 50 and 1,000 nodes: rounds until every node holds a new record
and bytes per node per round.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [int(s.getsockname()[1]) for s in socks]
    for s in socks:
        s.close()
    return ports


def _task(name: str, k: int) -> dict[str, Any]:
    # a behaviourally new function per round (a + b + k), so search and duplicate detection
    # cannot answer it from an earlier round: each round really synthesizes and propagates
    return {"description": f"adds two integers and then {k}", "name": name,
            "signature": "(i32, i32) -> i32", "args": [10, 20],
            "examples": [{"args": [1, 2], "result": 3 + k}, {"args": [5, 7], "result": 12 + k},
                         {"args": [-4, 4], "result": k}]}


def _serving(client: httpx.Client, url: str, name: str, fp: str) -> bool:
    r = client.get(f"{url}/v1/functions/{name}")
    if r.status_code != 200:
        return False
    return any(v["fingerprint"] == fp and v["verified"] and v.get("status", "active") == "active"
               for v in r.json()["variants"])


def real_propagation(functions: int = 5, timeout_s: float = 10.0) -> dict[str, Any]:
    from protocol import colony_key_to_text, generate_colony_key

    with tempfile.TemporaryDirectory(prefix="colony-bench-") as tmp:
        base = Path(tmp)
        key_file = base / "colony.key"
        key_file.write_text(colony_key_to_text(generate_colony_key()))
        ports = _free_ports(3)
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        procs = []
        env = {**os.environ, "COLONY_COLONY_GOSSIP_INTERVAL_S": "1.0"}
        for i, port in enumerate(ports):
            cmd = [sys.executable, "-m", "colony", "node", "--port", str(port), "--data",
                   str(base / f"n{i}"), "--name", f"n{i}", "--colony-key-file", str(key_file),
                   "--no-mdns"]
            for j, u in enumerate(urls):
                if j != i:
                    cmd += ["--peer", u]
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        try:
            with httpx.Client(timeout=60) as c:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # all up and met
                    try:
                        views = [c.get(f"{u}/v1/colony").json() for u in urls]
                        if all(sum(p["state"] == "up" for p in v["peers"]) == 2 for v in views):
                            break
                    except (httpx.HTTPError, ValueError, KeyError):
                        pass
                    time.sleep(0.1)
                else:
                    raise RuntimeError("the 3 nodes did not meet in 60 s")
                times, synth = [], []
                for k in range(functions):
                    name = f"bench_add_{k}_{int(time.time() * 1000) % 100000}"
                    t0 = time.monotonic()
                    r = c.post(f"{urls[0]}/v1/tasks", json=_task(name, k + 1))
                    if r.status_code != 200:
                        raise RuntimeError(f"task failed: {r.status_code} {r.text[:300]}")
                    fp = r.json()["function"]["fingerprint"]
                    t1 = time.monotonic()
                    synth.append(t1 - t0)
                    pending = set(urls[1:])
                    while pending and time.monotonic() - t1 < timeout_s:
                        pending = {u for u in pending if not _serving(c, u, name, fp)}
                        if pending:
                            time.sleep(0.01)
                    times.append(time.monotonic() - t1 if not pending else float("inf"))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    finite = [t for t in times if t != float("inf")]
    return {"nodes": 3, "functions": functions, "reached_all": len(finite),
            "median_s": statistics.median(finite) if finite else None,
            "max_s": max(times) if times else None,
            "synthesis_median_s": statistics.median(synth) if synth else None,
            "target_s": 2.0, "met_target": bool(times) and max(times) <= 2.0}


def simulated(n_nodes: int) -> dict[str, Any]:
    from colony._sim import run_propagation

    t0 = time.perf_counter()
    out = run_propagation(n_nodes, seed=1)
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    return out


def run_all(quick: bool = False) -> dict[str, Any]:
    return {"real": real_propagation(3 if quick else 10),
            "simulated": [simulated(n) for n in ((50,) if quick else (50, 1000))]}


def to_markdown(result: dict[str, Any]) -> str:
    r = result["real"]
    lines = [
        "Propagation of a new variant (pushed at once, then gossip every 1 s, fanout 3).",
        "",
        "| colony | variants | reached all | median | max | target |",
        "|---|---|---|---|---|---|",
        f"| 3 real nodes (loopback processes) | {r['functions']} | {r['reached_all']} | "
        f"{_s(r['median_s'])} | {_s(r['max_s'])} | ≤ 2 s "
        f"{'met' if r['met_target'] else 'NOT met'} |",
        "",
        "Real: from node 1's task reply until nodes 2 and 3 both serve the variant with their "
        "own verdict (signature checked, tests re-run locally); synthesis "
        f"(median {_s(r['synthesis_median_s'])}) is not counted.",
        "",
        "| simulated nodes | rounds to reach all | bytes/node/round (busy) | "
        "bytes/node/round (idle) | idle bytes per exchange |",
        "|---|---|---|---|---|",
    ]
    for s in result["simulated"]:
        lines.append(f"| {s['nodes']} | {s['rounds']} | {s['bytes_per_node_per_round']} | "
                     f"{s['idle_bytes_per_node_per_round']} | {s['idle_bytes_per_exchange']} |")
    lines += ["", "Simulated: `colony/_sim.run_propagation` (real codec, in-memory network, "
              "MockClock, no loss)."]
    return "\n".join(lines)


def _s(v: float | None) -> str:
    return "—" if v is None else ("never" if v == float("inf") else f"{v:.3f} s")


if __name__ == "__main__":
    print(to_markdown(run_all("--quick" in sys.argv)))
