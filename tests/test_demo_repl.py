"""``colony demo`` twice (the second run synthesizes nothing) and ``colony repl`` driven through
stdin, both against a real node."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from tests.conftest import node_config, start_node

ROOT = Path(__file__).resolve().parent.parent


async def colony(*args: str, stdin: bytes | None = None) -> str:
    r = await trio.run_process([sys.executable, "-m", "colony", *args], cwd=ROOT,
                               capture_stdout=True, capture_stderr=True, check=False,
                               stdin=stdin)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


async def test_demo_twice(nursery: trio.Nursery, tmp_path: Path) -> None:
    node = await start_node(nursery, node_config(tmp_path, embeddings=True))
    await trio.to_thread.run_sync(node.node.search_index.embedder.wait, 120)
    first = await colony("demo", "--node", node.url)
    assert "add(10, 20) = 30" in first
    assert "sum of two numbers" in first and "add(19, 23) = 42   [scalar, search" in first
    assert "saxpy2" in first and "[simd, synthesized" in first
    assert "dot" in first and "[gpu, synthesized" in first
    assert "synthesis calls this run: 3" in first
    second = await colony("demo", "--node", node.url)
    assert "synthesis calls this run: 0" in second
    assert "synthesized" not in second.split("library:")[0]


async def test_repl(nursery: trio.Nursery, tmp_path: Path) -> None:
    node = await start_node(nursery, node_config(tmp_path))
    script = b"\n".join([
        b"add = adds two integers : (i32, i32) -> i32 with 1,2=3; 5,7=12 on 10,20",
        b"add(40, 2)",
        b"add(1)",
        b".list",
        b".tests add",
        b".bench add 50",
        b"gibberish without a signature",
        b".quit",
        b"add(1, 1)",  # never reached
    ]) + b"\n"
    out = await colony("repl", "--node", node.url, stdin=script)
    assert "30    (add (i32, i32) -> i32 [scalar], synthesized" in out
    assert "\n42\n" in out or "colony> 42" in out
    assert "error 422" in out and "takes 2" in out
    assert "add" in out and "[1, 2] -> 3" in out and "×50" in out
    assert "not understood" in out
    assert out.count("colony> ") == 8  # stopped at .quit
