"""Correction across a colony of three real nodes: node A stored an overfit variant that every
node serves; examples sent to node C correct it there, and through the tests and the variant
the colony syncs, A and B stop serving the overfit variant and serve the corrected one."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from tests.test_colony import describe, serving, start_colony, wait_for
from tests.test_trust import SIGN, SIGN_OVERFIT_WAT


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


CORRECT = [{"args": [x], "result": _sign(x)}
           for x in (-4, 0, 1, 7, -9, 100, 2, -1, 13, -300, 5, -2)]


async def _run(url: str, x: int) -> int | None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        r = await c.post("/v1/functions/sign/run", json={"args": [x]})
        return r.json()["result"] if r.status_code == 200 else None


async def test_examples_sent_to_one_node_correct_the_colony(nursery: trio.Nursery,
                                                            tmp_path: Path) -> None:
    (a, b, c), _key = await start_colony(nursery, tmp_path, 3)
    async with httpx.AsyncClient(base_url=a.url, timeout=60) as ca:
        created = await ca.post("/v1/functions", json={**SIGN, "wat": SIGN_OVERFIT_WAT})
        assert created.status_code == 201, created.text
    overfit = created.json()["created"]

    async def everywhere_overfit() -> bool:
        docs = [await describe(n.url, "sign") for n in (a, b, c)]
        return all(serving(d, overfit) for d in docs)

    await wait_for(everywhere_overfit, timeout=20)
    assert await _run(b.url, 7) == 7  # the overfit answer, on every node

    async with httpx.AsyncClient(base_url=c.url, timeout=120) as cc:
        examples = list(CORRECT)
        for _ in range(4):  # a user answering the distinguishing inputs, as `colony submit` asks
            r = await cc.post("/v1/tasks", json={**SIGN, "args": [7], "examples": examples})
            if r.status_code != 422 or not r.json()["type"].endswith("/ambiguous"):
                break
            examples += [{"args": d["args"], "result": _sign(d["args"][0])}
                         for d in r.json()["distinguishing"]]
        assert r.status_code == 200, r.text
        # corrected on the first try, or synthesized over the kept tests after answering
        assert r.json()["result"] == 1 and r.json()["source"] == "synthesized"
        fixed = r.json()["function"]["fingerprint"]

    async def everywhere_corrected() -> bool:
        for n in (a, b, c):
            doc = await describe(n.url, "sign")
            if doc is None or serving(doc, overfit) or not serving(doc, fixed):
                return False
            if len(doc["tests"]) < len(CORRECT):
                return False
        return True

    await wait_for(everywhere_corrected, timeout=30)
    for n in (a, b, c):
        assert await _run(n.url, 7) == 1
        assert await _run(n.url, -50) == -1
