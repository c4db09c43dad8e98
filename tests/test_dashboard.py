"""The dashboard in a real browser: Debian's chromium driven by Playwright (Python), against two
real colony nodes. The page must render both nodes and update live over SSE when a task runs.

Needs the apt package ``chromium`` and the PyPI package ``playwright`` (which drives the system
browser: ``playwright install`` is never run). Without them the test fails and says how to
install them.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from colony import RunningNode
from node._config import ColonySettings, SynthLimits
from node._records import TestCase
from protocol import (
    AUTH_HEADER,
    WireTest,
    auth_header,
    colony_key_to_text,
    generate_colony_key,
)
from tests.conftest import node_config, start_node
from tests.test_colony import ADD_SIG, FakeOrigin, free_ports, wait_for
from tests.test_events import ADD, start_pair

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen
# where the screenshots go when a person wants to look at them (else the test's tmp_path)
SHOTS = Path(os.environ["DASHBOARD_SHOTS"]) if os.environ.get("DASHBOARD_SHOTS") else None


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


# three examples that fit several programs: with "best", the reply is a guess, never stored
SIGN_GUESS = {"name": "sign", "description": "sign of x", "signature": "(i32) -> i32", "args": [7],
              "examples": [{"args": [-4], "result": -1}, {"args": [0], "result": 0},
                           {"args": [1], "result": 1}], "on_ambiguity": "best"}
# a seed that never answers, with a long address (a LAN IP and port): the Nodes table must still
# fit its card (an unbreakable URL made it overflow by ~15 px at 1366 px)
DEAD_SEED = "http://[::ffff:127.0.0.1]:8819"


async def start_two(nursery: trio.Nursery, tmp_path: Path, *, extra_seeds: tuple[str, ...] = (),
                    synth: SynthLimits | None = None) -> tuple[list[RunningNode], bytes]:
    """Two colony members seeded with each other (mDNS off, fast gossip), and the colony key."""
    key = generate_colony_key()
    key_file = tmp_path / "colony.key"
    key_file.write_text(colony_key_to_text(key))
    ports = free_ports(2)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    nodes: list[RunningNode] = []
    for i, port in enumerate(ports):
        settings = ColonySettings(key_file=str(key_file), mdns=False, gossip_interval_s=0.2,
                                  backoff_s=0.2, backoff_max_s=1.0, selection_interval_s=0.5)
        base = node_config(tmp_path, **({"synth": synth} if synth else {}))
        cfg = replace(base, port=port, data_dir=tmp_path / f"n{i + 1}", name=f"n{i + 1}",
                      peers=(urls[1 - i], *extra_seeds), colony=settings)
        nodes.append(await start_node(nursery, cfg))
    return nodes, key


def layout_problems(page: Any) -> list[str]:
    """What overflows at this viewport: the Nodes table past its card, chart labels past their
    SVG (measured in the browser, in CSS pixels)."""
    return list(page.evaluate("""() => {
      const out = [];
      const panel = document.getElementById('nodes-panel');
      const table = document.getElementById('peers');
      const pr = panel.getBoundingClientRect(), tr = table.getBoundingClientRect();
      const pad = parseFloat(getComputedStyle(panel).paddingRight);
      if (tr.right > pr.right - pad + 0.5)
        out.push(`Nodes table overflows its card by ${(tr.right - pr.right + pad).toFixed(1)} px`);
      if (panel.scrollWidth > panel.clientWidth)
        out.push(`Nodes card scrolls: ${panel.scrollWidth} > ${panel.clientWidth}`);
      const tasks = document.querySelector('#tasks-panel .scroll');
      if (tasks.scrollWidth > tasks.clientWidth)
        out.push(`Recent tasks scroll sideways: ${tasks.scrollWidth} > ${tasks.clientWidth}`);
      // a node older than the 15-minute window draws 90 buckets: its last label must fit too
      const probe = Charts.svgEl('svg', {class: 'chart', id: 'probe-90'});
      document.getElementById('tasks-chart-panel').appendChild(probe);
      const now = Math.floor(Date.now() / 10000) * 10;
      Charts.stackedBars(probe, [...Array(90).keys()].map(i => ({t: now - (89 - i) * 10,
                                                                 values: {}})),
                         [{key: 'x', label: 'x', color: '#000'}], {});
      for (const svg of document.querySelectorAll('svg.chart')) {
        const r = svg.getBoundingClientRect();
        const labels = svg.querySelectorAll('text.axis');
        if (!labels.length) out.push(`${svg.id}: no axis labels`);
        for (const t of labels) {
          const b = t.getBoundingClientRect();
          if (b.left < r.left - 0.5 || b.right > r.right + 0.5)
            out.push(`${svg.id}: label ${t.textContent} is cut off (${b.left.toFixed(1)}..` +
                     `${b.right.toFixed(1)} outside ${r.left.toFixed(1)}..${r.right.toFixed(1)})`);
        }
      }
      probe.remove();
      return out;
    }"""))


def browse(a: RunningNode, b: RunningNode, shots: Path, key: bytes) -> dict[str, Any]:
    """The browser session (blocking; runs in a worker thread while trio serves the nodes)."""
    from playwright.sync_api import expect, sync_playwright

    out: dict[str, Any] = {"console": []}
    ida, idb = a.node.node_id, b.node.node_id
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
            peer = page.locator(f'#peers tr[data-node="{idb}"]')
            expect(peer).to_have_attribute("data-state", "up", timeout=10_000)
            expect(peer).to_contain_text("n2")
            expect(page.locator(f'#peers tr[data-node="{ida}"]')).to_contain_text("n1")
            expect(page.locator("#kpi-synthesized .value")).to_have_text("0")
            expect(page.locator("#kpi-peers .value")).to_have_text("1 / 2")
            expect(page.locator("#peers tbody tr")).to_have_count(3)
            # every node's search readiness, as its own /health says it
            for node, row in ((a, f'#peers tr[data-node="{ida}"]'), (b, peer)):
                mode = httpx.get(node.url + "/health", timeout=10).json()["search"]
                assert mode in ("keyword-only", "semantic")
                loc = page.locator(row) if isinstance(row, str) else row
                expect(loc).to_have_attribute("data-search", mode, timeout=15_000)
                expect(loc).to_contain_text(mode)
            # the page reads the peer's stream too
            expect(page.locator("#streams")).to_have_text("2 / 2 streams", timeout=10_000)
            out["layout_before"] = layout_problems(page)
            page.screenshot(path=str(shots / "before.png"), full_page=True)

            # a task on this node: the page learns of it over SSE (rows only come from events)
            r = httpx.post(a.url + "/v1/tasks", json=ADD, timeout=30)
            assert r.status_code == 200 and r.json()["source"] == "synthesized", r.text
            basis = r.json()["evidence"]["basis"]
            row = page.locator('#recent-tasks tbody tr[data-source="synthesized"]')
            expect(row).to_have_count(1, timeout=10_000)
            expect(row).to_contain_text("add")
            expect(row).to_have_attribute("data-node", ida)
            expect(row.locator("td.evidence")).to_have_attribute("data-basis", basis)
            expect(page.locator("#kpi-synthesized .value")).to_have_text("1", timeout=5_000)
            # one function's row, fitness and lineage follow the events, before any full reload
            expect(page.locator('#functions tr[data-function="add"]')).to_contain_text(
                "(i32, i32) -> i32", timeout=10_000)
            fp = r.json()["function"]["fingerprint"]
            expect(page.locator(f'#lineage g.variant[data-fp="{fp}"]')).to_have_count(
                1, timeout=10_000)
            expect(page.locator('#functions tr[data-function="add"]')).to_contain_text(
                "★", timeout=10_000)
            expect(page.locator("#activity")).to_contain_text("synthesized")

            # the peer's activity shows on this node's page, named: it adopts the variant and
            # answers a task from its library
            expect(page.locator(f'#activity li[data-kind="variant.adopted"][data-node="{idb}"]'))\
                .to_contain_text("n2", timeout=15_000)
            r = httpx.post(b.url + "/v1/tasks", json={**ADD, "args": [2, 3]}, timeout=30)
            assert r.status_code == 200 and r.json()["source"] in ("cache", "peer"), r.text
            peer_row = page.locator(f'#recent-tasks tbody tr[data-node="{idb}"]')
            expect(peer_row).to_have_count(1, timeout=10_000)
            expect(peer_row).to_contain_text("n2")
            expect(peer_row.locator("td.evidence")).to_have_attribute(
                "data-basis", r.json()["evidence"]["basis"])
            expect(page.locator("#kpi-tasks .value")).to_have_text("2")  # the colony's tasks
            expect(page.locator("#kpi-synthesized .value")).to_have_text("1")
            # a failing task on the peer shows under failures, with its node
            r = httpx.post(b.url + "/v1/tasks", json={
                **ADD, "name": "nothing_here", "description": "frobnicates quux",
                "synthesize": False}, timeout=30)
            assert r.status_code == 404
            expect(page.locator(f'#failures li[data-kind="task.failed"][data-node="{idb}"]'))\
                .to_contain_text("nothing_here", timeout=10_000)

            # a best guess (the examples fit several programs) is shown as one, not as verified
            r = httpx.post(b.url + "/v1/tasks", json=SIGN_GUESS, timeout=60)
            assert r.status_code == 200 and r.json()["evidence"]["basis"] == "guess", r.text
            guess = page.locator('#recent-tasks tbody tr[data-guess="true"]')
            expect(guess).to_have_count(1, timeout=10_000)
            expect(guess).to_have_attribute("data-node", idb)
            expect(guess.locator("td.evidence")).to_have_attribute("data-basis", "guess")
            expect(guess.locator("td.evidence .badge.bad")).to_have_text("guess")
            expect(page.locator('#recent-tasks tbody tr[data-guess="false"]')).to_have_count(2)

            # a colony-key holder pushes a test that contradicts add's: held as a conflict,
            # listed with where it came from, and evented on every node
            fake = FakeOrigin(key)
            bad = TestCase("add", ADD_SIG, (2, 3), 7)
            fake.add(WireTest("add", ADD_SIG, bad.args, bad.expected, "user", bad.id))
            body = fake.push()
            pr = httpx.post(a.url + "/protocol/v1/sync", content=body, timeout=30, headers={
                "Content-Type": "application/msgpack",
                AUTH_HEADER: auth_header(key, "POST", "/protocol/v1/sync", body, time.time())})
            assert pr.status_code == 200, pr.text
            held = page.locator(f'#conflicts li[data-test="{bad.id}"]')
            expect(held).to_contain_text("add", timeout=15_000)
            expect(held).to_contain_text("[2,3]")
            expect(held).to_have_attribute("data-node", fake.id)
            expect(page.locator('#failures li[data-kind="test.conflict"]').first).to_contain_text(
                "add", timeout=10_000)
            out["layout_after"] = layout_problems(page)
            page.screenshot(path=str(shots / "after.png"), full_page=True)
            page.screenshot(path=str(shots / "viewport.png"))
            out["charts"] = page.locator("#chart-tasks rect").count()
        finally:
            ctx.close()
    return out


async def test_dashboard_shows_the_whole_colony_live(nursery: trio.Nursery,
                                                     tmp_path: Path) -> None:
    _require_browser()
    (a, b), key = await start_two(nursery, tmp_path, extra_seeds=(DEAD_SEED,))
    with trio.fail_after(10):  # the peers have met: the page shows them up from the start
        while not all(any(p.up for p in n.node.colony.peers.peers.values())  # type: ignore[union-attr]
                      for n in (a, b)):
            await trio.sleep(0.05)
    shots = SHOTS if SHOTS is not None else tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    out = await trio.to_thread.run_sync(browse, a, b, shots, key)
    errors = [m for m in out["console"] if m.startswith(("error", "pageerror"))]
    assert errors == [], errors
    assert out["layout_before"] == [] and out["layout_after"] == [], out
    assert out["charts"] >= 1  # the tasks show as bars in the tasks-by-source chart
    check_screenshot(shots / "before.png", VIEWPORT["height"])
    check_screenshot(shots / "after.png", VIEWPORT["height"])
    assert (shots / "before.png").read_bytes() != (shots / "after.png").read_bytes()


async def test_event_stream_and_health_are_readable_from_another_origin(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    """What the merged page relies on: a peer's read-only /v1/events and /health carry CORS;
    the summary says where the details are."""
    a, _b = await start_pair(nursery, tmp_path)
    async with httpx.AsyncClient(timeout=30) as c:
        h = await c.get(f"{a.url}/health", headers={"Origin": "http://127.0.0.1:1"})
        assert h.headers.get("access-control-allow-origin") == "*"
        assert h.json()["search"] in ("keyword-only", "semantic")
        async with c.stream("GET", f"{a.url}/v1/events", headers={"Origin": "http://x"}) as r:
            assert r.headers.get("access-control-allow-origin") == "*"
        view = (await c.get(f"{a.url}/v1/colony")).json()
        assert view["search"] in ("keyword-only", "semantic")
        assert "fitness" not in view and view["fitness_summary"]["details"] == "/v1/colony/fitness"
        for path in ("fitness", "quarantined", "conflicts"):
            bad = await c.get(f"{a.url}/v1/colony/{path}?limit=0")
            assert bad.status_code == 400 and bad.headers["content-type"].startswith(
                "application/problem+json"), bad.text


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


def _panel_metrics() -> dict[str, set[str]]:
    """The series names each Grafana panel's PromQL reads (histograms by their ``_bucket`` etc.
    series: that is what must exist for the panel to draw)."""
    doc = json.loads(GRAFANA.read_text())
    out: dict[str, set[str]] = {}
    for p in doc["panels"]:
        names = {n for t in p.get("targets", []) for n in re.findall(r"\bcolony_\w+", t["expr"])}
        if names:
            out[p["title"]] = names
    return out


def _sampled(exposition: str) -> set[str]:
    """Series names with at least one sample (a labelled metric with no child has only HELP)."""
    return {m.group(1) for m in re.finditer(r"^(colony_\w+)(?:\{| )", exposition, re.M)}


def test_sampled_names_are_read_from_samples_not_help() -> None:
    text = ("# HELP colony_x_total X\n# TYPE colony_x_total counter\n"
            'colony_y_total{a="b"} 1.0\ncolony_z 0.0\n')
    assert _sampled(text) == {"colony_y_total", "colony_z"}


EVERY_NODE = {"colony_peers", "colony_sync_rounds_total", "colony_sync_bytes_total",
              "colony_library_functions", "colony_library_variants"}
UNSYNTHESIZABLE = {"name": "scramble", "description": "scrambles a number",
                   "signature": "(i32) -> i32", "args": [4],
                   "examples": [{"args": [1], "result": 982451653}, {"args": [2], "result": 17},
                                {"args": [3], "result": -5551}]}


async def test_every_grafana_panel_has_data_after_a_short_run(nursery: trio.Nursery,
                                                              tmp_path: Path) -> None:
    """A 2-node colony, a few tasks (synthesized, from the library, failed, one the offline
    synthesizer cannot find), a run; then each panel's series exist in each node's /metrics."""
    nodes, _ = await start_two(nursery, tmp_path, synth=SynthLimits(timeout_s=5.0, max_size=3))
    a, b = nodes
    async with httpx.AsyncClient(timeout=60) as c:
        r = await c.post(f"{a.url}/v1/tasks", json=ADD)
        assert r.status_code == 200, r.text
        assert (await c.post(f"{a.url}/v1/tasks", json={**ADD, "args": [2, 3]})).status_code == 200
        r = await c.post(f"{a.url}/v1/tasks", json={**ADD, "name": "nothing_here",
                                                    "description": "frobnicates quux",
                                                    "synthesize": False})
        assert r.status_code == 404
        r = await c.post(f"{a.url}/v1/tasks", json=UNSYNTHESIZABLE)
        assert r.status_code == 422, r.text
        assert (await c.post(f"{a.url}/v1/functions/add/run",
                             json={"args": [1, 2]})).status_code == 200

        async def served_on_b() -> bool:
            return (await c.get(f"{b.url}/v1/functions/add")).status_code == 200

        await wait_for(served_on_b, 20)
        wanted = _panel_metrics()
        missing: dict[str, dict[str, set[str]]] = {}

        async def all_sampled() -> bool:
            # the dashboard's default selection is every instance: a panel has data when some
            # node has its series; what each node does alone (gossip, peers) every node must have
            missing.clear()
            every: set[str] = set()
            for n in nodes:
                have = _sampled((await c.get(f"{n.url}/metrics")).text)
                every |= have
                alone = EVERY_NODE - have
                if alone:
                    missing[n.node.config.name] = {"(every node)": alone}
            panels = {t: names - every for t, names in wanted.items() if names - every}
            if panels:
                missing["colony"] = panels
            return not missing

        try:
            await wait_for(all_sampled, 15, 0.2)
        except AssertionError:
            raise AssertionError(f"Grafana panels without data: {missing}") from None


# ---------------------------------------------------------------- GET /v1/colony stays small
async def test_colony_view_is_a_summary_with_paged_details(nursery: trio.Nursery,
                                                           tmp_path: Path) -> None:
    """On a library of 300 functions the summary stays a few kB (the full view was ~313 B per
    function: 940 kB at 3,000), and the paged fitness covers every function exactly once."""
    from bench.scale_bench import build_library

    n = 300
    key_file = tmp_path / "colony.key"
    key_file.write_text(colony_key_to_text(generate_colony_key()))
    data = tmp_path / "n1"
    await trio.to_thread.run_sync(build_library, data, n)
    settings = ColonySettings(key_file=str(key_file), mdns=False, gossip_interval_s=0.2,
                              selection_interval_s=0.5)
    node = await start_node(nursery, replace(node_config(tmp_path), data_dir=data, name="n1",
                                             colony=settings))
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        async def viewed() -> bool:
            view = (await c.get("/v1/colony")).json()
            return bool(view["fitness_summary"]["functions"] == n)

        await wait_for(viewed, 60, 0.2)
        r = await c.get("/v1/colony")
        view = r.json()
        assert len(r.content) < 4000, len(r.content)
        assert "fitness" not in view
        summary = view["fitness_summary"]
        assert summary["variants"] == n and 0 <= summary["champions"] <= n
        assert view["quarantined_count"] == 0 and view["quarantined"] == []
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params = {"limit": "64", **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/v1/colony/fitness", params=params)).json()
            pages += 1
            assert len(page["fitness"]) <= 64
            seen += list(page["fitness"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 5 and len(seen) == n and len(set(seen)) == n and seen == sorted(seen)
        one = (await c.get("/v1/colony/fitness", params={"function": seen[7]})).json()
        tiers = one["fitness"][seen[7]]
        assert len(tiers["scalar"]["variants"]) == 1
        assert (await c.get("/v1/colony/fitness",
                            params={"function": "nope"})).json()["fitness"] == {}
        assert (await c.get("/v1/colony/quarantined")).json() == {"quarantined": [],
                                                                  "next_cursor": None}
        for bad in ("limit=0", "limit=501", "limit=x", "cursor=" + "a" * 401):
            r = await c.get(f"/v1/colony/fitness?{bad}")
            assert r.status_code == 400, (bad, r.text)
