"""One function, one name (issue 13, node/_alike.py): real nodes, real SQLite, HTTP on loopback.

- A variant that arrives by sync gets its behaviour recorded on the receiving node, so a
  function synthesized there later under another name that behaves like it is not stored twice.
- Two functions that behave alike, made on two nodes before they met, are merged the same way on
  both once they sync (the function with the oldest variant keeps its name, not the local one
  nor the smallest name); the other name is an alias and its variants show in the describe.
- A name a user gave to a function found by search that reproduced the user's examples is an
  alias: asked again by that name without examples, it is served.
- Functions that agree on the probes but not on each other's tests stay apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio

from colony import ColonyService
from tests.conftest import node_config, start_node
from tests.test_colony import colony_config, free_ports, wait_for, write_key

SIG = "(i32, i32) -> i32"
ADD = {"description": "adds two integers", "name": "add", "signature": SIG,
       "examples": [{"args": [1, 2], "result": 3}, {"args": [5, 7], "result": 12},
                    {"args": [-4, 9], "result": 5}]}
TWIN = {"description": "frobnicate the inputs", "name": "frob", "signature": SIG,
        "args": [2, 2],
        "examples": [{"args": [10, 1], "result": 11}, {"args": [-4, 4], "result": 0},
                     {"args": [-1, 0], "result": -1}, {"args": [3, 5], "result": 8},
                     {"args": [-2, -6], "result": -8}]}
ADD_WAT = ('(module (func (export "{name}") (param i32 i32) (result i32) '
           'local.get 0 local.get 1 i32.add))')
# the same behaviour, written the other way round (another module, another fingerprint)
ADD_WAT_SWAPPED = ('(module (func (export "{name}") (param i32 i32) (result i32) '
                   'local.get 1 local.get 0 i32.add))')


async def names(c: httpx.AsyncClient, url: str) -> list[str]:
    return [f["name"] for f in (await c.get(f"{url}/v1/functions")).json()["functions"]]


async def create(c: httpx.AsyncClient, url: str, name: str, wat: str,
                 examples: list[dict[str, Any]], description: str) -> httpx.Response:
    return await c.post(f"{url}/v1/functions", json={
        "name": name, "description": description, "signature": SIG,
        "wat": wat.format(name=name), "examples": examples})


async def test_a_synced_function_is_not_synthesized_again_under_another_name(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    key_file, _ = write_key(tmp_path)
    ports = free_ports(2)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    a = await start_node(nursery, colony_config(tmp_path, "a", ports[0], key_file, [urls[1]]))
    b = await start_node(nursery, colony_config(tmp_path, "b", ports[1], key_file, [urls[0]]))
    async with httpx.AsyncClient(timeout=60) as c:
        r = await c.post(f"{a.url}/v1/tasks", json=ADD)
        assert r.status_code == 200 and r.json()["source"] == "synthesized", r.text
        fp = r.json()["function"]["fingerprint"]

        async def b_serves_add() -> bool:
            doc = (await c.get(f"{b.url}/v1/functions/add")).json()
            return any(v["fingerprint"] == fp and v["verified"] for v in doc.get("variants", []))

        await wait_for(b_serves_add, timeout=30)
        # b has add only from a: the twin (other name, other words, examples add fits) is add
        r = await c.post(f"{b.url}/v1/tasks", json=TWIN)
        assert r.status_code == 200, r.text
        assert r.json()["function"]["name"] == "add" and r.json()["result"] == 4, r.text
        assert await names(c, b.url) == ["add"]
        # the user's name for it is an alias of add on b
        doc = (await c.get(f"{b.url}/v1/functions/frob")).json()
        assert doc["name"] == "add" and "frob" in doc["aliases"]


async def test_functions_made_apart_merge_the_same_way_on_every_node(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    key_file, _ = write_key(tmp_path)
    ports = free_ports(2)
    # no seeds: they have not met when each makes its function
    a = await start_node(nursery, colony_config(tmp_path, "a", ports[0], key_file, []))
    b = await start_node(nursery, colony_config(tmp_path, "b", ports[1], key_file, []))
    async with httpx.AsyncClient(timeout=60) as c:
        # made first, on a, under a name that sorts last: the oldest variant names the function
        r = await create(c, a.url, "zum", ADD_WAT, ADD["examples"], "zum of two integers")
        assert r.status_code == 201, r.text
        await trio.sleep(0.05)
        r = await create(c, b.url, "plus", ADD_WAT_SWAPPED, TWIN["examples"],
                         "one integer plus another")
        assert r.status_code == 201, r.text
        assert await names(c, a.url) == ["zum"] and await names(c, b.url) == ["plus"]
        for me, other in ((a, b), (b, a)):
            svc = me.node.colony
            assert isinstance(svc, ColonyService)
            assert svc.peers.add(other.url, "seed") is not None

        async def merged_everywhere() -> bool:
            for url in (a.url, b.url):
                if await names(c, url) != ["zum"]:
                    return False
                doc = (await c.get(f"{url}/v1/functions/plus")).json()
                if doc.get("merged_into") != "zum":
                    return False
            return True

        await wait_for(merged_everywhere, timeout=40)
        for url in (a.url, b.url):
            doc = (await c.get(f"{url}/v1/functions/zum")).json()
            assert doc["merged_into"] is None and "plus" in doc["aliases"]
            assert [m["name"] for m in doc["merged"]] == ["plus"]
            assert doc["merged"][0]["variants"]  # the lineage across names reads together
            # a task naming the merged function is a task for the function
            r = await c.post(f"{url}/v1/tasks", json={
                "name": "plus", "description": "one integer plus another", "signature": SIG,
                "args": [20, 22]})
            assert r.status_code == 200, r.text
            assert r.json()["function"]["name"] == "zum" and r.json()["result"] == 42
            assert r.json()["source"] == "cache"


async def test_a_name_that_reproduced_its_examples_is_served_without_them(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    node = await start_node(nursery, node_config(tmp_path))  # keyword search only
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        assert (await c.post("/v1/tasks", json=ADD)).status_code == 200
        r = await c.post("/v1/tasks", json={**ADD, "name": "plus", "args": [2, 3],
                                             "examples": [{"args": [9, 9], "result": 18}]})
        assert r.status_code == 200 and r.json()["source"] == "search", r.text
        # the same name later, no examples, words search would not be sure of: still add
        r = await c.post("/v1/tasks", json={"name": "plus", "description": "the usual",
                                             "signature": SIG, "args": [40, 2]})
        assert r.status_code == 200, r.text
        assert r.json()["function"]["name"] == "add" and r.json()["result"] == 42
        assert r.json()["source"] == "cache"
        assert [f["name"] for f in (await c.get("/v1/functions")).json()["functions"]] == ["add"]


# agree on the probes (they differ only where both operands are exactly 777), not on a test
ADD_BUT_777 = ('(module (func (export "{name}") (param i32 i32) (result i32) '
               '(select (i32.const 0) (i32.add (local.get 0) (local.get 1)) '
               '(i32.and (i32.eq (local.get 0) (i32.const 777)) '
               '(i32.eq (local.get 1) (i32.const 777))))))')


async def test_functions_alike_on_the_probes_but_not_on_their_tests_stay_apart(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    key_file, _ = write_key(tmp_path)
    ports = free_ports(2)
    a = await start_node(nursery, colony_config(tmp_path, "a", ports[0], key_file, []))
    b = await start_node(nursery, colony_config(tmp_path, "b", ports[1], key_file, []))
    async with httpx.AsyncClient(timeout=60) as c:
        r = await create(c, a.url, "zum", ADD_WAT, ADD["examples"], "zum of two integers")
        assert r.status_code == 201, r.text
        r = await create(c, b.url, "odd_plus", ADD_BUT_777,
                         [*TWIN["examples"], {"args": [777, 777], "result": 0}],
                         "plus, except for two sevens")
        assert r.status_code == 201, r.text
        for me, other in ((a, b), (b, a)):
            svc = me.node.colony
            assert isinstance(svc, ColonyService)
            assert svc.peers.add(other.url, "seed") is not None

        async def both_everywhere() -> bool:
            for url in (a.url, b.url):
                if await names(c, url) != ["odd_plus", "zum"]:
                    return False
                for n in ("odd_plus", "zum"):
                    doc = (await c.get(f"{url}/v1/functions/{n}")).json()
                    if not any(v["verified"] for v in doc["variants"]):
                        return False
            return True

        await wait_for(both_everywhere, timeout=40)
        for url in (a.url, b.url):
            doc = (await c.get(f"{url}/v1/functions/odd_plus")).json()
            assert doc["merged_into"] is None and doc["name"] == "odd_plus"


async def test_tests_learnt_on_one_node_are_rerun_on_the_serving_variant_of_another(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    """Issue 13: a test added by a later task (on another node) is re-run on the variant that
    serves here before it counts: the serving verdict covers every test the node holds."""
    key_file, _ = write_key(tmp_path)
    ports = free_ports(2)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    a = await start_node(nursery, colony_config(tmp_path, "a", ports[0], key_file, [urls[1]]))
    b = await start_node(nursery, colony_config(tmp_path, "b", ports[1], key_file, [urls[0]]))
    async with httpx.AsyncClient(timeout=60) as c:
        r = await c.post(f"{a.url}/v1/tasks", json=ADD)
        assert r.status_code == 200, r.text
        fp = r.json()["function"]["fingerprint"]
        more = {**ADD, "examples": [{"args": [100, 1], "result": 101},
                                    {"args": [-50, -50], "result": -100}]}

        async def b_verdict_covers_every_test() -> bool:
            doc = (await c.get(f"{b.url}/v1/functions/add")).json()
            v = next((v for v in doc.get("variants", []) if v["fingerprint"] == fp), None)
            return (v is not None and v["verified"] and len(doc["tests"]) == 5
                    and v["verdict"]["tests_run"] == 5)

        async def b_serves() -> bool:
            doc = (await c.get(f"{b.url}/v1/functions/add")).json()
            return any(v["fingerprint"] == fp and v["verified"] for v in doc.get("variants", []))

        await wait_for(b_serves, timeout=30)
        r = await c.post(f"{a.url}/v1/tasks", json=more)  # two new tests, learnt on a
        assert r.status_code == 200 and r.json()["source"] == "cache", r.text
        await wait_for(b_verdict_covers_every_test, timeout=30)


async def test_a_quarantined_variant_stops_serving_at_once(nursery: trio.Nursery,
                                                           tmp_path: Path) -> None:
    """What the node holds ready to serve drops a variant the moment it is evicted (the
    immune check quarantined it), not at the end of the check."""
    node = await start_node(nursery, node_config(tmp_path))
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        r = await c.post("/v1/tasks", json={**ADD, "args": [1, 1]})
        assert r.status_code == 200, r.text
    fp = r.json()["function"]["fingerprint"]
    key = ("add", SIG, "scalar")
    held = node.node.serving.get(key)
    assert held is not None and held.variant_fp == fp
    node.node.evict(fp)
    assert node.node.serving.get(key) is None


async def test_a_peer_answers_a_name_it_knows_as_an_alias(nursery: trio.Nursery,
                                                          tmp_path: Path) -> None:
    """A user's name that is an alias on one node (it reproduced the user's examples there) is
    found by that name from another node, even without examples."""
    key_file, _ = write_key(tmp_path)
    ports = free_ports(2)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    a = await start_node(nursery, colony_config(tmp_path, "a", ports[0], key_file, [urls[1]]))
    b = await start_node(nursery, colony_config(tmp_path, "b", ports[1], key_file, [urls[0]]))
    async with httpx.AsyncClient(timeout=60) as c:
        assert (await c.post(f"{a.url}/v1/tasks", json=ADD)).status_code == 200
        r = await c.post(f"{a.url}/v1/tasks", json={**ADD, "name": "plus", "args": [2, 3],
                                                     "examples": [{"args": [9, 9], "result": 18}]})
        assert r.status_code == 200 and r.json()["function"]["name"] == "add", r.text

        async def b_has_add() -> bool:
            return await names(c, b.url) == ["add"]

        await wait_for(b_has_add, timeout=30)
        r = await c.post(f"{b.url}/v1/tasks", json={"name": "plus", "description": "the usual",
                                                     "signature": SIG, "args": [40, 2]})
        assert r.status_code == 200, r.text
        assert r.json()["source"] == "peer" and r.json()["function"]["name"] == "add"
        assert r.json()["result"] == 42


MUL_WAT = ('(module (func (export "{name}") (param i32 i32) (result i32) '
           'local.get 0 local.get 1 i32.mul))')


async def test_a_local_alias_gives_way_to_the_colonys_function_of_that_name(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    """b took "plus" as a user's alias of add; a made a function called "plus" that multiplies.
    Once it arrives, "plus" means that function on b as on a (every node means one thing by a
    name)."""
    key_file, _ = write_key(tmp_path)
    ports = free_ports(2)
    a = await start_node(nursery, colony_config(tmp_path, "a", ports[0], key_file, []))
    b = await start_node(nursery, colony_config(tmp_path, "b", ports[1], key_file, []))
    async with httpx.AsyncClient(timeout=60) as c:
        assert (await c.post(f"{b.url}/v1/tasks", json=ADD)).status_code == 200
        r = await c.post(f"{b.url}/v1/tasks", json={**ADD, "name": "plus", "args": [2, 3],
                                                     "examples": [{"args": [9, 9], "result": 18}]})
        assert r.status_code == 200 and r.json()["function"]["name"] == "add", r.text
        r = await create(c, a.url, "plus", MUL_WAT, [{"args": [3, 4], "result": 12},
                                                     {"args": [-2, 5], "result": -10}],
                         "multiplies two integers")
        assert r.status_code == 201, r.text
        for me, other in ((a, b), (b, a)):
            svc = me.node.colony
            assert isinstance(svc, ColonyService)
            assert svc.peers.add(other.url, "seed") is not None

        async def b_has_plus() -> bool:
            doc = (await c.get(f"{b.url}/v1/functions/plus")).json()
            return doc.get("name") == "plus" and any(v["verified"] for v in doc["variants"])

        await wait_for(b_has_plus, timeout=40)
        assert await names(c, b.url) == ["add", "plus"]
        r = await c.post(f"{b.url}/v1/tasks", json={"name": "plus", "description": "the usual",
                                                     "signature": SIG, "args": [6, 7]})
        assert r.status_code == 200, r.text
        assert r.json()["function"]["name"] == "plus" and r.json()["result"] == 42


def test_merge_into_moves_a_name_and_its_aliases(tmp_path: Path) -> None:
    """The library's side of a merge: the merged function is hidden from the listing, its name
    and its aliases mean the function it joined, which is nobody's alias itself."""
    import time

    from node import FunctionRecord, Library

    lib = Library.open(tmp_path / "lib.db", node_id="n" * 32)
    try:
        now = time.time()
        for name in ("one", "two"):
            lib.transaction(lambda w, n=name: w.execute(
                "INSERT INTO functions (name, description, signature, tier_family, created_at)"
                " VALUES (?, ?, ?, 'scalar', ?)", (n, n, SIG, now)))
        assert lib.get_function("one") == FunctionRecord("one", "one", SIG, "scalar", now)
        assert lib.add_alias("uno", "one")
        assert lib.merge_into("one", "two")
        assert not lib.merge_into("one", "two")  # nothing changes the second time
        assert lib.canonical_name("one") == "two" and lib.canonical_name("uno") == "two"
        assert [f.name for f, _ in lib.list_functions()] == ["two"]
        assert lib.merged("two") == ["one"] and lib.aliases("two") == ["one", "uno"]
        assert lib.merge_into("two", "one")  # the other way round: two is the alias now
        assert lib.canonical_name("two") == "one" and lib.canonical_name("one") == "one"
        assert lib.canonical_name("uno") == "one"
        assert [f.name for f, _ in lib.list_functions()] == ["one"]
    finally:
        lib.close()
