"""The dashboard in a real browser: Debian's chromium driven by Playwright (Python), against two
real colony nodes. The page must render both nodes and update live over SSE when a task runs.

Needs the apt package ``chromium`` and the PyPI package ``playwright`` (which drives the system
browser: ``playwright install`` is never run). Without them the test fails and says how to
install them.
"""

from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from colony import RunningNode
from tests.test_events import ADD, start_pair

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen


def _require_browser() -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: the dashboard test needs Debian's chromium; install it "
                    "with `apt-get install -y chromium`", pytrace=False)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the dashboard test needs Playwright for Python: `.venv/bin/pip install "
                    "playwright` (it drives /usr/bin/chromium; no `playwright install`)",
                    pytrace=False)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_screenshot(path: Path, min_height: int) -> None:
    width, height = png_size(path)
    assert width == VIEWPORT["width"] and min_height <= height <= 6000, (width, height)
    # a blank or unstyled page compresses to a few kB; the dashboard has text, charts, tables
    assert path.stat().st_size > 40_000, path.stat().st_size


def browse(a: RunningNode, b: RunningNode, shots: Path) -> dict[str, Any]:
    """The browser session (blocking; runs in a worker thread while trio serves the nodes)."""
    from playwright.sync_api import expect, sync_playwright

    out: dict[str, Any] = {"console": []}
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(shots / "profile"), executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport=VIEWPORT)  # type: ignore[arg-type]
        try:
            page = ctx.new_page()
            page.on("console", lambda m: out["console"].append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: out["console"].append(f"pageerror: {e}"))
            page.goto(a.url + "/")
            # both nodes, this one and its peer (up), with their names
            expect(page.locator("#conn")).to_have_text("live", timeout=10_000)
            expect(page.locator("#node-name")).to_have_text("n1")
            peer = page.locator(f'#peers tr[data-node="{b.node.node_id}"]')
            expect(peer).to_have_attribute("data-state", "up", timeout=10_000)
            expect(peer).to_contain_text("n2")
            expect(page.locator(f'#peers tr[data-node="{a.node.node_id}"]')).to_contain_text("n1")
            expect(page.locator("#kpi-synthesized .value")).to_have_text("0")
            expect(page.locator("#kpi-peers .value")).to_have_text("1 / 1")
            page.screenshot(path=str(shots / "before.png"), full_page=True)

            # a task over HTTP: the page learns of it over SSE, well before the 12 s refresh
            started = time.monotonic()
            r = httpx.post(a.url + "/v1/tasks", json=ADD, timeout=30)
            assert r.status_code == 200 and r.json()["source"] == "synthesized", r.text
            row = page.locator('#recent-tasks tbody tr[data-source="synthesized"]')
            expect(row).to_have_count(1, timeout=5_000)
            expect(row).to_contain_text("add")
            expect(page.locator("#kpi-synthesized .value")).to_have_text("1", timeout=5_000)
            out["task_to_row_s"] = time.monotonic() - started
            # the debounced refresh after synthesis fills the functions table and the lineage
            expect(page.locator('#functions tr[data-function="add"]')).to_contain_text(
                "(i32, i32) -> i32", timeout=5_000)
            fp = r.json()["function"]["fingerprint"]
            expect(page.locator(f'#lineage g.variant[data-fp="{fp}"]')).to_have_count(
                1, timeout=5_000)
            expect(page.locator("#activity")).to_contain_text("synthesized")

            # the same task again: served from the library, one more row, counter unchanged
            r = httpx.post(a.url + "/v1/tasks", json={**ADD, "args": [2, 3]}, timeout=30)
            assert r.json()["source"] == "cache"
            expect(page.locator('#recent-tasks tbody tr[data-source="cache"]')).to_have_count(
                1, timeout=5_000)
            expect(page.locator("#kpi-tasks .value")).to_have_text("2")
            expect(page.locator("#kpi-synthesized .value")).to_have_text("1")
            # a failing task shows under failures
            # (a description nothing in the library matches: search must not answer it)
            r = httpx.post(a.url + "/v1/tasks", json={
                **ADD, "name": "nothing_here", "description": "frobnicates quux",
                "synthesize": False}, timeout=30)
            assert r.status_code == 404
            expect(page.locator('#failures li[data-kind="task.failed"]')).to_contain_text(
                "nothing_here", timeout=5_000)
            page.screenshot(path=str(shots / "after.png"), full_page=True)
            out["charts"] = page.locator("#chart-tasks rect").count()
        finally:
            ctx.close()
    return out


async def test_dashboard_renders_nodes_and_updates_live(nursery: trio.Nursery,
                                                        tmp_path: Path) -> None:
    _require_browser()
    a, b = await start_pair(nursery, tmp_path)
    with trio.fail_after(10):  # the peers have met: the page shows them up from the start
        while not any(p.up for p in a.node.colony.peers.peers.values()):  # type: ignore[union-attr]
            await trio.sleep(0.05)
    shots = tmp_path / "shots"
    shots.mkdir()
    started = time.monotonic()
    out = await trio.to_thread.run_sync(browse, a, b, shots)
    elapsed = time.monotonic() - started
    errors = [m for m in out["console"] if m.startswith(("error", "pageerror"))]
    assert errors == [], errors
    assert out["task_to_row_s"] < 5, out
    assert out["charts"] >= 1  # the task shows as a bar in the tasks-by-source chart
    check_screenshot(shots / "before.png", VIEWPORT["height"])
    check_screenshot(shots / "after.png", VIEWPORT["height"])
    assert (shots / "before.png").read_bytes() != (shots / "after.png").read_bytes()
    assert elapsed < 30, f"the browser session took {elapsed:.1f} s"


# ---------------------------------------------------------------- the Grafana dashboard
GRAFANA = Path(__file__).resolve().parent.parent / "dashboards" / "grafana" / "qt45-colony.json"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def _documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `(colony_\w+)` \|", DOCS.read_text(), re.M))


def test_grafana_dashboard_uses_every_documented_metric_and_only_those() -> None:
    from node._metrics import NodeMetrics

    doc = json.loads(GRAFANA.read_text())
    documented = _documented_metrics()
    # the docs name what a node really exports
    exported = set(re.findall(r"^# HELP (colony_\w+) ", NodeMetrics().render().decode(), re.M))
    exported -= {m for m in exported if m.endswith("_created")}  # prometheus-client extras
    assert documented == exported, documented ^ exported
    used: set[str] = set()
    panels = doc["panels"]
    for p in panels:
        for t in p.get("targets", []):
            expr = t["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            assert 'instance=~"$instance"' in expr, f"{p['title']}: ignores the node selector"
            assert t["datasource"]["uid"] == "${datasource}"
            for name in re.findall(r"\bcolony_\w+", expr):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                assert base in documented, f"{p['title']}: {name} is not in docs/metrics.md"
                used.add(base)
    assert used == documented, f"metrics without a panel: {documented - used}"
    assert len({p["id"] for p in panels}) == len(panels)
    assert doc["uid"] == "qt45-colony" and doc["title"]
    names = [v["name"] for v in doc["templating"]["list"]]
    assert names == ["datasource", "instance"]


def test_grafana_panels_fit_the_grid_without_overlap() -> None:
    doc = json.loads(GRAFANA.read_text())
    cells: dict[tuple[int, int], str] = {}
    for p in doc["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] >= 1 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
