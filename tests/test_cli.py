"""The ``colony`` command against a real node (subprocesses, real HTTP on loopback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

from colony import RunningNode

ROOT = Path(__file__).resolve().parent.parent


async def colony(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = await trio.run_process(
        [sys.executable, "-m", "colony", *args], cwd=ROOT, capture_stdout=True,
        capture_stderr=True, check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"colony {' '.join(args)} failed: {result.stderr.decode()}")
    return result


async def test_cli_flow(node: RunningNode) -> None:
    url = ["--node", node.url]
    out = (await colony("submit", "multiplies two integers", "--sig", "(i32, i32) -> i32",
                        "--name", "mul", "-e", "2,3=6", "-e", "4,5=20", "--example=-3,3=-9",
                        "--args", "[6, 7]", *url)).stdout.decode()
    assert "result: 42" in out and "source: synthesized" in out

    out = (await colony("submit", "multiplies two integers", "--sig", "(i32, i32) -> i32",
                        "--name", "mul", "--args", "[3, 3]", *url)).stdout.decode()
    assert "result: 9" in out and "source: cache" in out

    out = (await colony("list", *url)).stdout.decode()
    assert "mul" in out and "(i32, i32) -> i32" in out
    out = (await colony("info", "mul", *url)).stdout.decode()
    assert "verified" in out and "3/3 tests" in out
    out = (await colony("source", "mul", *url)).stdout.decode()
    assert out.startswith("(module") and "i32.mul" in out
    out = (await colony("tests", "mul", *url)).stdout.decode()
    assert "[2, 3] -> 6" in out and "3 test(s)" in out
    out = (await colony("bench", "mul", "200", *url)).stdout.decode()
    assert "×200" in out and "µs" in out
    out = (await colony("delete", "mul", *url)).stdout.decode()
    assert "deleted mul" in out
    r = await colony("info", "mul", *url, check=False)
    assert r.returncode == 1 and "no function named 'mul'" in r.stderr.decode()


async def test_cli_errors_are_clear(node: RunningNode) -> None:
    r = await colony("submit", "x", "--sig", "(i32) -> i32", "-e", "nonsense",
                     "--node", node.url, check=False)
    assert r.returncode == 1 and "ARGS=RESULT" in r.stderr.decode()
    r = await colony("submit", "x", "--sig", "(i9) -> i32", "--node", node.url, check=False)
    assert r.returncode == 1 and "error 422" in r.stderr.decode()
    r = await colony("list", "--node", "http://127.0.0.1:9", check=False)
    assert r.returncode == 1 and "cannot reach a node" in r.stderr.decode()
    assert "Traceback" not in r.stderr.decode()


async def test_cli_status_shows_the_gpu_adapter(node: RunningNode) -> None:
    out = (await colony("status", "--node", node.url)).stdout.decode()
    assert node.node.node_id[:12] in out and "offline" in out
    assert "gpu: not started yet" in out
    out = (await colony("status", "--gpu", "--node", node.url)).stdout.decode()
    # started: the adapter line (lavapipe on CI: "llvmpipe ... (Vulkan, CPU fallback)")
    assert "cached pipelines" in out and "live buffers" in out, out


async def test_cli_submit_with_a_grammar(node: RunningNode) -> None:
    words = [0x0123456789ABCDEF, 0x7EDCBA9876543210, 0x0F0F0F0F0F0F0F0F, 0x1122334455667788,
             0x0000FFFF0000FFFF, 0x6A09E667F3BCC908, 0x3C6EF372FE94F82B, 0x510E527FADE682D1]
    examples = [f"-e {w}={w >> 4}" for w in words]
    grammar = "0 1 not shl1 shr1 shr4 shr16 and or xor add if1"
    out = (await colony("submit", "a word shifted right by a nibble", "--sig", "(i64) -> i64",
                        "--name", "nibble_down", *" ".join(examples).split(), "--grammar",
                        grammar, "--args", "[4096]", "--node", node.url)).stdout.decode()
    assert "result: 256" in out and "source: synthesized" in out
    r = await colony("submit", "x", "--sig", "(i64) -> i64", "-e", "1=2", "--grammar",
                     "and mul", "--node", node.url, check=False)
    assert r.returncode == 1 and "error 422" in r.stderr.decode()
    assert "unknown grammar token 'mul'" in r.stderr.decode()
