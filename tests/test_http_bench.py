"""The HTTP benchmark's own parts (``colony bench --suite http``): the tuned client's msgpack
frame against a real node, wrk's output read back, and the rows skipped without wrk.

Speed goals are the benchmark's to report, never asserted here."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx
import msgpack
import numpy as np

from tests.conftest import ROOT
from tests.test_api import VADD

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:1234/v1/tasks
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.01ms    5.20ms  80.11ms   93.10%
    Req/Sec     1.20k   100.00     1.40k    70.00%
  Latency Distribution
     50%  850.00us
     75%    7.10ms
     90%   10.20ms
     99%    1.02s
  3600 requests in 3.00s, 2.10MB read
Requests/sec:   1200.00
"""


def _bench() -> ModuleType:
    name = "bench_http_bench"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "http_bench.py")
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def test_msgpack_parts_is_one_valid_map() -> None:
    bench = _bench()
    for n in (0, 3, 100, 20_000):  # bin 8, bin 16 and bin 32 headers
        a = np.arange(n, dtype="<f4")
        parts = bench.msgpack_parts({"name": "vadd", "tier": "simd"}, [a, -a])
        body = msgpack.unpackb(b"".join(bytes(p) for p in parts))
        assert body["name"] == "vadd" and body["tier"] == "simd"
        assert [np.frombuffer(x, "<f4").tolist() for x in body["args"]] == [a.tolist(),
                                                                            (-a).tolist()]


async def test_tuned_client_frame_against_a_node(client: httpx.AsyncClient) -> None:
    bench = _bench()
    assert (await client.post("/v1/tasks", json=VADD)).status_code == 200
    a = np.linspace(0, 1, 5000, dtype="<f4")
    parts = bench.msgpack_parts({}, [a, a])
    r = await client.post("/v1/functions/vadd/run", content=b"".join(bytes(p) for p in parts),
                          headers=bench.MSGPACK)
    assert r.status_code == 200, r.content[:300]
    assert np.array_equal(np.frombuffer(msgpack.unpackb(r.content)["result"], "<f4"), a + a)


def test_wrk_output_read_back() -> None:
    bench = _bench()
    assert bench._wrk_ms(WRK_OUTPUT, "50%") == 0.85
    assert bench._wrk_ms(WRK_OUTPUT, "99%") == 1020.0
    summary = bench._wrk_summary([
        {"requests": 3600, "seconds": 3.0, "p50_ms": 0.85, "p99_ms": 9.0, "cpu_s": 1.8},
        {"requests": 2400, "seconds": 3.0, "p50_ms": 1.25, "p99_ms": 30.0, "cpu_s": 1.2}])
    assert summary["req_s"] == 1000.0 and summary["p99_ms"] == 30.0
    assert summary["cpu_ms_per_req"] == 0.5


def test_wrk_ratio_pairs_rounds_back_to_back() -> None:
    bench = _bench()
    bare = [{"requests": 1000, "seconds": 1.0}, {"requests": 500, "seconds": 1.0},
            {"requests": 900, "seconds": 1.0}]
    node = [{"requests": 900, "seconds": 1.0}, {"requests": 480, "seconds": 1.0},
            {"requests": 450, "seconds": 0.5}]
    assert bench.paired_ratios(bare, node) == [0.9, 0.96, 1.0]
    assert bench._median([0.9, 1.0, 0.96]) == 0.96 and bench._median([1.0, 0.5]) == 0.75
    row = {"req_s": 1000.0, "p50_ms": 1.0, "p99_ms": 5.0, "cpu_ms_per_req": 0.5,
           "requests": 100}
    text = bench.wrk_markdown({"wrk": {
        "rounds": 3, "seconds": 1.0, "paired": {"1": [0.9, 0.96, 1.0], "8": [0.8, 0.7, 0.9]},
        "rows": {f"{label}@{c}": row for label in ("bare", "node") for c in (1, 8)}}})
    assert "c=1: **0.96×** (rounds: 0.90, 0.96, 1.00)" in text
    assert "c=8: **0.80×**" in text


def test_wrk_rows_skipped_with_a_message_without_wrk() -> None:
    text = _bench().wrk_markdown({"wrk": None})
    assert "wrk rows skipped" in text and "apt-get install wrk" in text


def test_wrk_is_in_the_makefiles_apt_list() -> None:
    line = next(x for x in (ROOT / "Makefile").read_text().splitlines()
                if x.startswith("APT_PKGS"))
    assert "wrk" in line.split()


def test_run_wrk_against_a_real_server(tmp_path: Path) -> None:
    """wrk run as the suite runs it, against the bare endpoint (``make apt`` installs wrk;
    without it the suite skips its wrk rows, the test above)."""
    bench = _bench()
    wrk = bench.wrk_binary()
    assert wrk is not None and wrk == shutil.which("wrk"), "wrk is missing: `make apt`"
    port = bench._free_port()
    url = f"http://127.0.0.1:{port}"
    bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port",
                             str(port)], cwd=ROOT)
    try:
        bench._wait(url, bare)
        script = tmp_path / "task.lua"
        script.write_text(bench.WRK_SCRIPT.format(body='{"args": [1, 2]}'))
        run = bench.run_wrk(wrk, url, script, 2, 1.0, bare.pid)
        assert run["requests"] > 0 and run["p99_ms"] >= run["p50_ms"] > 0
    finally:
        bare.terminate()
        bare.wait(timeout=10)


def test_callgrind_dumps_read_in_order(tmp_path: Path) -> None:
    bench = _bench()
    for i, total in ((2, 700), (1, 1500), (10, 9)):
        (tmp_path / f"cg.node.{i}").write_text(
            f"# callgrind format\nevents: Ir\nsummary: {total * 2}\ntotals: {total}\n")
    (tmp_path / "cg.node").write_text("events: Ir\ntotals: 5\n")  # the exit dump: not a window
    assert bench._dump_totals(tmp_path / "cg.node") == [1500, 700, 9]


def test_instruction_rows() -> None:
    bench = _bench()
    assert "valgrind" in bench.instructions_markdown(None)
    text = bench.instructions_markdown({
        "requests": 300, "bare": {"per_request": 3.0e6}, "node": {"per_request": 3.2e6}})
    assert "bare 3.000 M, node 3.200 M" in text and "**0.94×**" in text
