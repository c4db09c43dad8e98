"""Scale: one node over a library of 1k / 10k (/ 100k) functions, and a fresh peer joining it.

For each library size N, a library of N distinct functions (one signed, verified scalar variant
and two tests each) is written straight into a data directory, then real ``colony node``
processes run on loopback (static seeds, no mDNS, keyword search: no embedding model) and we
measure, from the outside:

- start-up to serving: from the process start until ``/health`` answers (a node over an empty
  library, started the same way in the same run, is the baseline: the ratio is what the library
  costs);
- RSS of the node after start-up and after its first task;
- the first task (a cold lookup of a stored function) and a cached one;
- search p50: the node's own keyword search over the library (in-process, same file);
- a fresh peer joining: time until it has stored every entry of the library, then until it
  serves every function (each variant verified in its own sandbox: the immune check), a task
  for the function that arrived last sent while the checks are under way (demand goes ahead of
  the backlog), the CPU both processes used meanwhile, the protocol bytes moved, the joiner's
  RSS;
- after the join: the CPU of both over the next 15 s (the last checks, the selection pass over
  the new library), then idle for 30 s: CPU of each and protocol bytes per gossip round.

Keyword search by default (no embedding model); ``--embeddings`` runs both nodes with it.

The joiner's progress is read from its SQLite file (read-only; WAL lets a reader in), so the
polling costs the nodes nothing.
"""

from __future__ import annotations

import os
import socket
import sqlite3
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

SIG = "(i32, i32) -> i32"
GOSSIP_S = 1.0
SETTLE_S = 15.0  # after the join: three selection passes (5 s apart)
IDLE_S = 30.0  # then the idle measurement
_WORDS = ("adds", "sums", "totals", "combines", "accumulates", "joins", "merges", "counts")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [int(s.getsockname()[1]) for s in socks]
    for s in socks:
        s.close()
    return ports


def _name(i: int) -> str:
    return f"f{i:07d}"


def library_items(identity: Any, lo: int, hi: int) -> list[tuple[Any, Any, Any, Any]]:
    """Functions ``lo``..``hi - 1`` as ``Library.save_many`` takes them: each with one variant
    signed and verified by ``identity`` (a node's) and two tests."""
    from node._records import FunctionRecord, TestCase, VariantRecord, Verdict
    from node._wat import wat_to_wasm
    from protocol import fingerprint

    def wat(i: int) -> str:
        # a + b + i: every function behaves differently (functions that behave alike are
        # merged into one on arrival, so copies of one body would measure merging, not a join)
        return (f'(module (func (export "{_name(i)}") (param i32 i32) (result i32) '
                f'local.get 0 local.get 1 i32.add i32.const {i} i32.add))')

    key = identity.node_key
    now = time.time()
    out: list[tuple[Any, Any, Any, Any]] = []
    for i in range(lo, hi):
        name = _name(i)
        wasm = wat_to_wasm(wat(i))
        fp = fingerprint(wasm)
        word = _WORDS[i % len(_WORDS)]
        fn = FunctionRecord(name, f"{word} two integers, variant {i}", SIG, "scalar", now)
        v = VariantRecord(fingerprint=fp, function=name, tier="scalar", wasm=wasm,
                          wat=wat(i), origin_node=identity.node_id,
                          origin_signature=key.sign_variant(fp, name, SIG, "scalar", []),
                          generator="offline", created_at=now)
        tests = [TestCase(name, SIG, (1, 2), 3 + i), TestCase(name, SIG, (5, 7), 12 + i)]
        out.append((fn, v, tests, Verdict(fp, True, 2, 0, node=identity.node_id, at=now)))
    return out


def build_library(data_dir: Path, n: int) -> str:
    """Write ``n`` functions into a node's data directory; returns the node's id."""
    from node._identity import load_or_create_identity
    from node._store import Library

    data_dir.mkdir(parents=True, exist_ok=True)
    identity = load_or_create_identity(data_dir)
    lib = Library.open(data_dir / "library.db", node_id=identity.node_id)
    try:
        for lo in range(0, n, 5000):  # bulk: one transaction per 5000 functions
            lib.save_many(library_items(identity, lo, min(n, lo + 5000)))
    finally:
        lib.close()
    return identity.node_id


class Proc:
    """A ``colony node`` process and what /proc says about it."""

    def __init__(self, data: Path, port: int, key_file: Path, peers: list[str],
                 name: str, *, embeddings: bool = False) -> None:
        env = {**os.environ, "COLONY_COLONY_GOSSIP_INTERVAL_S": str(GOSSIP_S),
               "COLONY_EMBEDDINGS": "true" if embeddings else "false", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "colony", "node", "--port", str(port), "--data", str(data),
               "--name", name, "--colony-key-file", str(key_file), "--no-mdns"]
        for p in peers:
            cmd += ["--peer", p]
        self.url = f"http://127.0.0.1:{port}"
        self.data = data
        self.started = time.monotonic()
        self.p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)

    def wait_serving(self, c: httpx.Client, timeout: float = 120) -> float:
        while time.monotonic() - self.started < timeout:
            try:
                if c.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            if self.p.poll() is not None:
                raise RuntimeError(f"node at {self.url} exited with {self.p.returncode}")
            time.sleep(0.02)
        raise RuntimeError(f"node at {self.url} did not serve in {timeout} s")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.p.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.p.terminate()
        try:
            self.p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def _db(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{data / 'library.db'}?mode=ro", uri=True, timeout=5)


def _joiner_progress(data: Path, origin: str, joiner: str) -> tuple[int, int]:
    """(origin's head held by the joiner, variants the joiner verified itself)."""
    try:
        with _db(data) as db:
            row = db.execute("SELECT seq FROM log_heads WHERE origin = ?", (origin,)).fetchone()
            ok = db.execute("SELECT count(*) FROM verdicts WHERE node = ? AND passed = 1",
                            (joiner,)).fetchone()
        return (int(row[0]) if row else 0, int(ok[0]) if ok else 0)
    except sqlite3.Error:
        return (0, 0)


def _sync_bytes(c: httpx.Client, url: str) -> int:
    view = c.get(f"{url}/v1/colony", timeout=60).json()["sync"]
    return int(view.get("bytes_sent", 0)) + int(view.get("bytes_received", 0))


def _search_p50(data: Path, node_id: str, n: int) -> float:
    from node._search import SearchIndex
    from node._store import Library

    lib = Library.open(data / "library.db", node_id=node_id)
    try:
        index = SearchIndex(lib, None)
        times = []
        for i in range(30):
            q = f"{_WORDS[i % len(_WORDS)]} two integers, variant {(i * 7919) % n}"
            t0 = time.perf_counter()
            index.search(q, signature=SIG, tier="scalar", k=5)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000
    finally:
        lib.close()


def _search_task_ms(c: httpx.Client, url: str, n: int) -> float:
    """p50 of a task answered by search through the API: a description and a signature, no
    name (the node finds the function by its keyword search, then runs it). The generated
    descriptions differ only by a number, so the description names the function (search
    scores an exact name 1: confident), which still takes the whole search path."""
    times = []
    for i in range(20):
        k = (i * 7919) % n
        task = {"description": _name(k), "signature": SIG, "args": [40, 2], "synthesize": False}
        t0 = time.perf_counter()
        r = c.post(f"{url}/v1/tasks", json=task)
        times.append(time.perf_counter() - t0)
        if r.status_code != 200 or r.json().get("result") != 42 + k:
            raise RuntimeError(f"search task failed: {r.status_code} {r.text[:300]}")
    return round(statistics.median(times) * 1000, 2)


def _wait_semantic(c: httpx.Client, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while c.get(f"{url}/v1/colony", timeout=60).json().get("search") != "semantic":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not embed its library in {timeout} s")
        time.sleep(1)


def _cpu_pct(p: Proc, cpu0: float, t0: float) -> float:
    return round(100 * (p.cpu_s() - cpu0) / max(1e-9, time.monotonic() - t0), 1)


def _join(c: httpx.Client, a: Proc, b_dir: Path, port: int, key_file: Path, origin: str,
          n: int, head: int, timeout: float, embeddings: bool,
          started: list[Proc]) -> dict[str, Any]:
    """A fresh peer joins ``a`` (seeded with its URL): time until it stored every entry and
    until it serves every function, a task for the last function asked meanwhile (demand goes
    ahead of the backlog), the CPU of both processes during the join, right after it (the
    last checks, the selection pass over the new library) and idle after that."""
    out: dict[str, Any] = {}
    a_cpu0 = a.cpu_s()
    b = Proc(b_dir, port, key_file, [a.url], "b", embeddings=embeddings)
    started.append(b)
    b.wait_serving(c)
    joiner = ""
    while not joiner:
        joiner = c.get(f"{b.url}/v1/colony").json().get("node", "")
    t_join = b.started
    stored_s = verified_s = None
    verified = 0
    last = _name(n - 1)
    report = time.monotonic()
    while time.monotonic() - t_join < timeout:
        held, verified = _joiner_progress(b.data, origin, joiner)
        now = time.monotonic() - t_join
        if stored_s is None and held >= head:
            stored_s = now
            # the function that arrived last, asked for while the backlog is being checked
            task = {"description": "adds two integers", "name": last, "signature": SIG,
                    "args": [40, 2], "synthesize": False}
            t = time.monotonic()
            r = c.post(f"{b.url}/v1/tasks", json=task, timeout=120)
            out["join_demand_task_ms"] = round((time.monotonic() - t) * 1000, 1)
            body = r.json()
            out["join_demand_ok"] = r.status_code == 200 and body.get("result") == 42 + n - 1
            out["join_demand_source"] = body.get("source")
            out["join_demand_backlog"] = n - _joiner_progress(b.data, origin, joiner)[1]
        if verified >= n:
            verified_s = now
            break
        if time.monotonic() - report > 30:
            report = time.monotonic()
            print(f"scale: join of {n}: {now:.0f} s, {held:,}/{head:,} entries stored, "
                  f"{verified:,} verified", file=sys.stderr, flush=True)
        time.sleep(0.25)
    elapsed = time.monotonic() - t_join
    out["join_stored_s"] = None if stored_s is None else round(stored_s, 1)
    out["join_serving_s"] = None if verified_s is None else round(verified_s, 1)
    out["join_verified"] = verified
    out["join_cpu_origin_pct"] = round(100 * (a.cpu_s() - a_cpu0) / elapsed, 1)
    out["join_cpu_joiner_pct"] = round(100 * b.cpu_s() / elapsed, 1)
    out["join_bytes"] = _sync_bytes(c, a.url) + _sync_bytes(c, b.url)
    out["rss_joiner_mb"] = round(b.rss_mb(), 1)

    # right after: what the join left to do (selection over the new library, the view)
    cpu_a, cpu_b, t0 = a.cpu_s(), b.cpu_s(), time.monotonic()
    time.sleep(SETTLE_S)
    out["after_cpu_origin_pct"] = _cpu_pct(a, cpu_a, t0)
    out["after_cpu_joiner_pct"] = _cpu_pct(b, cpu_b, t0)

    # idle: both hold the same log, nothing to check; gossip rounds go on
    before = _sync_bytes(c, a.url) + _sync_bytes(c, b.url)
    cpu_a, cpu_b, t0 = a.cpu_s(), b.cpu_s(), time.monotonic()
    time.sleep(IDLE_S)
    out["idle_cpu_origin_pct"] = _cpu_pct(a, cpu_a, t0)
    out["idle_cpu_joiner_pct"] = _cpu_pct(b, cpu_b, t0)
    out["idle_cpu_pct"] = max(out["idle_cpu_origin_pct"], out["idle_cpu_joiner_pct"])
    after = _sync_bytes(c, a.url) + _sync_bytes(c, b.url)
    # both nodes gossip every round; every byte is counted by the side that sent the request
    # (its request plus the reply), once
    out["idle_bytes_per_round"] = round((after - before) / (IDLE_S / GOSSIP_S))
    return out


def one_size(n: int, base: Path, key_file: Path, join_timeout: float,
             embeddings: bool = False) -> dict[str, Any]:
    a_dir = base / f"a{n}"
    t0 = time.monotonic()
    origin = build_library(a_dir, n)
    built = time.monotonic() - t0
    pa, pb = _free_ports(2)
    out: dict[str, Any] = {"functions": n, "build_s": round(built, 1)}
    with httpx.Client(timeout=60) as c:
        a = Proc(a_dir, pa, key_file, [], "a", embeddings=embeddings)
        joiners: list[Proc] = []
        try:
            out["startup_s"] = round(a.wait_serving(c), 2)
            out["rss_start_mb"] = round(a.rss_mb(), 1)
            task = {"description": "adds two integers", "name": _name(n // 2), "signature": SIG,
                    "args": [40, 2], "synthesize": False}
            t = time.monotonic()
            r = c.post(f"{a.url}/v1/tasks", json=task)
            out["first_task_ms"] = round((time.monotonic() - t) * 1000, 1)
            if r.status_code != 200 or r.json().get("result") != 42 + n // 2:
                raise RuntimeError(f"first task failed: {r.status_code} {r.text[:300]}")
            t = time.monotonic()
            c.post(f"{a.url}/v1/tasks", json=task)
            out["cached_task_ms"] = round((time.monotonic() - t) * 1000, 1)
            out["rss_after_task_mb"] = round(a.rss_mb(), 1)
            out["search_task_ms"] = _search_task_ms(c, a.url, n)
            out["search_p50_ms"] = round(_search_p50(a_dir, origin, n), 2)
            with _db(a_dir) as db:
                head = int(db.execute("SELECT seq FROM log_heads WHERE origin = ?",
                                      (origin,)).fetchone()[0])
            out["log_entries"] = head

            if embeddings:  # the origin embeds its library first: the join measures the joiner
                _wait_semantic(c, a.url, join_timeout)
            out.update(_join(c, a, base / f"b{n}", pb, key_file, origin, n, head, join_timeout,
                             embeddings, joiners))
        finally:
            a.stop()
            for b in joiners:
                b.stop()
    return out


def baseline(base: Path, key_file: Path) -> dict[str, Any]:
    """An empty node started the same way: the start-up and RSS the library is compared to."""
    (port,) = _free_ports(1)
    with httpx.Client(timeout=60) as c:
        p = Proc(base / "empty", port, key_file, [], "empty")
        try:
            return {"startup_s": round(p.wait_serving(c), 2), "rss_start_mb": round(p.rss_mb(), 1)}
        finally:
            p.stop()


def run_all(quick: bool = False, limit: int | None = None, timeout: float | None = None,
            sizes: list[int] | None = None, embeddings: bool = False) -> dict[str, Any]:
    """1k and 10k functions (``quick``: 1k; ``limit``: the sizes up to it, 100k included);
    ``sizes`` picks them outright (``python bench/scale_bench.py --sizes 100000``).
    ``timeout``: seconds the join may take (default: 300, or 30 ms per function if more)."""
    from protocol import colony_key_to_text, generate_colony_key

    if sizes is None:
        top = limit or (1000 if quick else 10000)
        sizes = [s for s in (1000, 10000, 100000) if s <= top]
    with tempfile.TemporaryDirectory(prefix="colony-scale-") as tmp:
        base = Path(tmp)
        key_file = base / "colony.key"
        key_file.write_text(colony_key_to_text(generate_colony_key()))
        result: dict[str, Any] = {"baseline": baseline(base, key_file), "sizes": [],
                                  "embeddings": embeddings}
        for n in sizes:
            print(f"scale: {n} functions", file=sys.stderr, flush=True)
            result["sizes"].append(one_size(n, base, key_file, timeout or max(300.0, 0.03 * n),
                                            embeddings))
        result["load_average"] = round(os.getloadavg()[0], 1)
        result["cpus"] = os.cpu_count()
    return result


def to_markdown(r: dict[str, Any]) -> str:
    b = r["baseline"]
    lines = [
        f"Baseline (empty library, same run): start-up {b['startup_s']} s, RSS "
        f"{b['rss_start_mb']} MB.",
        "",
        "| functions | start-up s (× empty) | RSS start MB (vs empty) | RSS after 1st task MB "
        "| 1st task ms | cached task ms | search p50 ms | search task (API) p50 ms | log entries |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["sizes"]:
        lines.append(
            f"| {s['functions']:,} | {s['startup_s']} ({s['startup_s'] / b['startup_s']:.2f}×) "
            f"| {s['rss_start_mb']} ({s['rss_start_mb'] - b['rss_start_mb']:+.1f}) "
            f"| {s['rss_after_task_mb']} | {s['first_task_ms']} | {s['cached_task_ms']} "
            f"| {s['search_p50_ms']} | {s.get('search_task_ms', '-')} | {s['log_entries']:,} |")
    lines += [
        "",
        "A fresh peer joins (seeded with the node's URL). Demand: a task for the function "
        "that arrived last, sent once every entry is stored (the checks still under way: it is "
        "checked out of turn); after: the 15 s right after the join; idle: the 30 s after "
        "that (gossip rounds go on, nothing to check):",
        "",
        "| functions | all stored s | all serving s (verified here) | demand task ms "
        "(backlog) | CPU origin / joiner % | after % | idle % | bytes moved | joiner RSS MB "
        "| idle bytes/round |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["sizes"]:
        serving = s["join_serving_s"] if s["join_serving_s"] is not None else \
            f"> timeout ({s['join_verified']:,} verified)"
        demand = "-" if "join_demand_task_ms" not in s else (
            f"{s['join_demand_task_ms']} ({s['join_demand_backlog']:,})"
            + ("" if s["join_demand_ok"] else " failed"))
        lines.append(
            f"| {s['functions']:,} | {s['join_stored_s']} | {serving} | {demand} "
            f"| {s['join_cpu_origin_pct']} / {s['join_cpu_joiner_pct']} "
            f"| {s['after_cpu_origin_pct']} / {s['after_cpu_joiner_pct']} "
            f"| {s['idle_cpu_origin_pct']} / {s['idle_cpu_joiner_pct']} "
            f"| {s['join_bytes']:,} | {s['rss_joiner_mb']} | {s['idle_bytes_per_round']:,} |")
    search = ("embeddings on (both nodes load the model; the origin embeds its library before "
              "the join, the joiner embeds what arrives)" if r.get("embeddings") else
              "search is keyword-only (no embedding model loaded)")
    lines += ["", f"CPU % is of one core over the period; {search}; the machine is shared with "
              f"other work (load average {r.get('load_average', '?')} on {r.get('cpus', '?')} "
              "CPUs at the end of the run). 100k functions: `colony bench --suite scale --limit "
              "100000`, or that size alone: `python bench/scale_bench.py --sizes 100000` (the "
              "library is built in bulk transactions: ~30 s at 100k)."]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description="the scale suite (colony bench --suite scale)")
    ap.add_argument("--quick", action="store_true", help="1k functions only")
    ap.add_argument("--sizes", type=lambda t: [int(x) for x in t.split(",")],
                    help="library sizes, comma-separated (e.g. 100000)")
    ap.add_argument("--timeout", type=float, help="seconds a join may take")
    ap.add_argument("--embeddings", action="store_true", help="nodes load the embedding model")
    ns = ap.parse_args()
    res = run_all(quick=ns.quick, timeout=ns.timeout, sizes=ns.sizes, embeddings=ns.embeddings)
    print(json.dumps(res, indent=2))
    print(to_markdown(res))
