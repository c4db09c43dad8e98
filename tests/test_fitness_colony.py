"""Champions are the colony's: after a mutation on one node, three real nodes name the same
champion for the function and tier, and each serves it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.test_colony import describe, start_colony, wait_for

TIMES8 = {"description": "multiply by 8", "name": "times8", "signature": "(i32) -> i32",
          "args": [5], "examples": [{"args": [1], "result": 8}, {"args": [3], "result": 24},
                                    {"args": [-2], "result": -16}, {"args": [100], "result": 800}]}


@pytest.mark.slow  # timing-sensitive convergence of 3 nodes: flaky on a loaded 2-core machine
async def test_three_nodes_name_the_same_champion_after_a_mutation(nursery: trio.Nursery,
                                                                    tmp_path: Path) -> None:
    nodes, _ = await start_colony(nursery, tmp_path, 3, selection_interval_s=0.3)
    urls = [n.url for n in nodes]
    async with httpx.AsyncClient(base_url=urls[0], timeout=60) as c:
        r = await c.post("/v1/tasks", json=TIMES8)
        assert r.status_code == 200, r.text
        r = await c.post("/v1/functions/times8/mutate", json={"description": "faster"})
        assert r.status_code == 201, r.text
        child = r.json()["created"]
    docs: list[dict[str, Any] | None] = []

    async def agreed() -> bool:
        docs[:] = [await describe(u, "times8") for u in urls]
        if any(d is None or len(d["variants"]) < 2 for d in docs):
            return False
        champs = [d["champions"].get("scalar") for d in docs if d is not None]
        return champs[0] is not None and len(set(champs)) == 1

    await wait_for(agreed, timeout=30)
    champ = docs[0]["champions"]["scalar"] if docs[0] else None
    assert champ in {v["fingerprint"] for v in docs[0]["variants"]} if docs[0] else False
    async def each_serves_the_champion() -> bool:
        # the champion is re-read each time: a selection pass may still be settling, and a
        # node's serving cache follows its champion on the next lookup
        if not await agreed():
            return False
        champ = docs[0]["champions"]["scalar"] if docs[0] else None
        for u in urls:
            async with httpx.AsyncClient(base_url=u, timeout=30) as c:
                r = await c.post("/v1/functions/times8/run", json={"args": [-7]})
                assert r.status_code == 200 and r.json()["result"] == -56, (u, child)
                if r.json()["function"]["fingerprint"] != champ:
                    return False
        return True

    await wait_for(each_serves_the_champion, timeout=30)
