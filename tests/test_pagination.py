"""Cursor pagination of ``GET /v1/functions`` (real HTTP, real SQLite) and the CLI's use of it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import trio

from colony import RunningNode
from node import ApiLimits
from tests.conftest import node_config, start_node
from tests.test_api import assert_problem

N = 23


def _create(k: int) -> dict[str, Any]:
    # distinct behaviours (a + k), so none is refused as a twin of another
    name = f"plus_{k:02d}"
    wat = (f'(module (func (export "{name}") (param i32) (result i32) '
           f'(i32.add (local.get 0) (i32.const {k}))))')
    return {"name": name, "description": f"adds {k} to an integer", "signature": "(i32) -> i32",
            "wat": wat, "examples": [{"args": [1], "result": 1 + k},
                                     {"args": [-5], "result": -5 + k}]}


async def _library(nursery: trio.Nursery, tmp_path: Path) -> RunningNode:
    running = await start_node(nursery, node_config(tmp_path, api=ApiLimits(
        page_size=10, max_page_size=50)))
    async with httpx.AsyncClient(base_url=running.url, timeout=60) as c:
        for k in range(N):
            r = await c.post("/v1/functions", json=_create(k))
            assert r.status_code == 201, r.text
    return running


async def _walk(c: httpx.AsyncClient, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        doc = (await c.get("/v1/functions", params=params)).json()
        pages.append([f["name"] for f in doc["functions"]])
        cursor = doc["next_cursor"]
        if cursor is None:
            return pages


async def test_pages_cover_the_library_once_in_order(nursery: trio.Nursery,
                                                     tmp_path: Path) -> None:
    running = await _library(nursery, tmp_path)
    names = [f"plus_{k:02d}" for k in range(N)]
    async with httpx.AsyncClient(base_url=running.url, timeout=60) as c:
        doc = (await c.get("/v1/functions")).json()
        assert len(doc["functions"]) == 10 and doc["next_cursor"]  # the default page size
        assert doc["functions"][0]["verified_variants"] == 1
        pages = await _walk(c, 7)
        assert [len(p) for p in pages] == [7, 7, 7, 2]
        assert [n for p in pages for n in p] == names
        assert await _walk(c, 50) == [names]
        # a larger ask is served the node's largest page
        doc = (await c.get("/v1/functions", params={"limit": 10**9})).json()
        assert len(doc["functions"]) == N and doc["next_cursor"] is None
        assert await _walk(c, N) == [names]  # an exactly full page ends the walk

        # keyset cursor: a deletion between pages neither repeats nor skips the others
        first = (await c.get("/v1/functions", params={"limit": 5})).json()
        assert (await c.delete("/v1/functions/plus_03")).status_code == 204
        assert (await c.delete("/v1/functions/plus_05")).status_code == 204
        rest = (await c.get("/v1/functions", params={"limit": 50,
                                                     "cursor": first["next_cursor"]})).json()
        got = [f["name"] for f in first["functions"] + rest["functions"]]
        assert got == [n for n in names if n != "plus_05"]


async def test_bad_page_parameters_are_400(node: RunningNode, client: httpx.AsyncClient) -> None:
    for params in ({"limit": "0"}, {"limit": "1.5"}, {"limit": "x"}, {"limit": "-1"},
                   {"cursor": "not-a-cursor"}, {"cursor": "bjpCQUQ"}, {"cursor": "!!"}):
        assert_problem(await client.get("/v1/functions", params=params), 400)
    doc = (await client.get("/v1/functions")).json()
    assert doc == {"functions": [], "next_cursor": None}


async def test_cli_list_pages_through(nursery: trio.Nursery, tmp_path: Path) -> None:
    running = await _library(nursery, tmp_path)

    async def colony(*args: str) -> str:
        res = await trio.run_process([sys.executable, "-m", "colony", *args],
                                     capture_stdout=True, capture_stderr=True, check=False)
        assert res.returncode == 0, res.stderr.decode()
        return res.stdout.decode()

    out = await colony("list", "--node", running.url)
    assert [line.split()[0] for line in out.splitlines()] == [f"plus_{k:02d}" for k in range(N)]
    out = await colony("list", "--node", running.url, "--limit", "12")
    assert len(out.splitlines()) == 12
