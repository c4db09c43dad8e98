"""The API token: writes of the tool API need it when the node has one (real HTTP, real CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from colony import RunningNode
from node import ApiLimits, ColonyError
from tests.conftest import node_config, start_node
from tests.test_api import ADD, assert_problem, functions

TOKEN = "t0ken-for-the-tests-" + "x" * 24
ADD_WAT = """(module (func (export "add") (param i32 i32) (result i32)
  (i32.add (local.get 0) (local.get 1))))"""


async def _node(nursery: trio.Nursery, tmp_path: Path, **api: object) -> RunningNode:
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN + "\n")
    return await start_node(nursery, node_config(
        tmp_path, api=ApiLimits(token_file=str(token_file), **api)))  # type: ignore[arg-type]


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_writes_need_the_token_and_change_nothing_without_it(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    running = await _node(nursery, tmp_path)
    async with httpx.AsyncClient(base_url=running.url, timeout=60) as c:
        # tasks stay open
        r = await c.post("/v1/tasks", json=ADD)
        assert r.status_code == 200, r.text
        before = await c.get("/v1/functions/add")
        create = {k: v for k, v in ADD.items() if k != "args"}
        create = {**create, "name": "add2", "wat": ADD_WAT.replace('"add"', '"add2"'),
                  "description": "integer addition, again"}
        for headers in ({}, _auth("wrong-token-of-some-length"), {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}):
            for method, path, body in (("POST", "/v1/functions", create),
                                       ("POST", "/v1/functions/add/mutate", {}),
                                       ("DELETE", "/v1/functions/add", None),
                                       ("POST", "/v1/functions/BAD/mutate", {})):
                r = await c.request(method, path, json=body, headers=headers)
                assert_problem(r, 401, "API token")
                assert r.headers["www-authenticate"].startswith("Bearer")
        assert [f["name"] for f in await functions(c)] == ["add"]
        after = (await c.get("/v1/functions/add")).json()
        assert [v["fingerprint"] for v in after["variants"]] == [
            v["fingerprint"] for v in before.json()["variants"]]
        assert after["tests"] == before.json()["tests"]
        # runs, benches and reads are open
        assert (await c.post("/v1/functions/add/run", json={"args": [1, 1]})).json()["result"] == 2
        assert (await c.post("/v1/functions/add/bench", json={"iterations": 5})).status_code == 200
        # with the token, the writes go through
        r = await c.delete("/v1/functions/add", headers=_auth())
        assert r.status_code == 204
        assert await functions(c) == []


async def test_calls_can_be_guarded_too(nursery: trio.Nursery, tmp_path: Path) -> None:
    running = await _node(nursery, tmp_path, token_for_calls=True)
    async with httpx.AsyncClient(base_url=running.url, timeout=60) as c:
        assert_problem(await c.post("/v1/tasks", json=ADD), 401)
        assert await functions(c) == []
        assert (await c.post("/v1/tasks", json=ADD, headers=_auth())).status_code == 200
        assert_problem(await c.post("/v1/functions/add/run", json={"args": [1, 1]}), 401)
        r = await c.post("/v1/functions/add/run", json={"args": [1, 1]}, headers=_auth())
        assert r.json()["result"] == 2
        assert (await c.get("/health")).status_code == 200


async def test_unreadable_or_short_token_file_stops_the_node(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    (tmp_path / "short").write_text("abc\n")
    for path in (tmp_path / "missing", tmp_path / "short"):
        with pytest.raises(BaseException) as info:
            await start_node(nursery, node_config(tmp_path, api=ApiLimits(token_file=str(path))))
        errors = info.value.exceptions if isinstance(info.value, BaseExceptionGroup) else [
            info.value]
        assert any(isinstance(e, ColonyError) and "API token" in e.detail for e in errors)


async def test_cli_delete_sends_the_token(nursery: trio.Nursery, tmp_path: Path) -> None:
    running = await _node(nursery, tmp_path)
    async with httpx.AsyncClient(base_url=running.url, timeout=60) as c:
        assert (await c.post("/v1/tasks", json=ADD)).status_code == 200
    env = {k: v for k, v in os.environ.items() if k != "COLONY_API_TOKEN"}
    work = tmp_path / "cwd"  # no .colony/api.token here
    work.mkdir()

    async def colony(*args: str) -> tuple[int, str]:
        res = await trio.run_process([sys.executable, "-m", "colony", *args], cwd=work, env=env,
                                     capture_stdout=True, capture_stderr=True, check=False)
        return res.returncode, (res.stdout + res.stderr).decode()

    code, out = await colony("delete", "add", "--node", running.url)
    assert code == 1 and "401" in out and "API token" in out
    code, out = await colony("delete", "add", "--node", running.url,
                             "--token-file", str(tmp_path / "api.token"))
    assert code == 0 and "deleted add" in out, out
    async with httpx.AsyncClient(base_url=running.url) as c:
        assert await functions(c) == []


async def test_colony_node_flag_sets_the_token(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN + "\n")
    env = dict(os.environ, COLONY_EMBEDDINGS="false", COLONY_LOG_LEVEL="error")
    url = f"http://127.0.0.1:{port}"
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(lambda task_status: trio.run_process(
            [sys.executable, "-m", "colony", "node", "--port", str(port), "--data",
             str(tmp_path / "data"), "--no-mdns", "--api-token-file", str(token_file)],
            env=env, check=False, stdout=subprocess.DEVNULL, task_status=task_status))
        try:
            async with httpx.AsyncClient(base_url=url) as c:
                with trio.fail_after(120):
                    while True:
                        try:
                            if (await c.get("/health")).status_code == 200:
                                break
                        except httpx.HTTPError:
                            await trio.sleep(0.2)
                assert_problem(await c.delete("/v1/functions/add"), 401)
                assert_problem(await c.delete("/v1/functions/add", headers=_auth()), 404)
        finally:
            proc.terminate()
