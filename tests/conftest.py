"""Shared fixtures: real nodes on loopback (hypercorn + quart-trio), real SQLite files."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from node._config import NodeConfig, SandboxLimits, SynthLimits  # noqa: E402

if TYPE_CHECKING:
    from colony import RunningNode


def node_config(tmp_path: Path, **changes: Any) -> NodeConfig:
    cfg = NodeConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "node", name="test",
                     sandbox=SandboxLimits(timeout_s=10.0), synth=SynthLimits(timeout_s=20.0),
                     metrics_flush_s=0.2, embeddings=False)
    return replace(cfg, **changes)


async def start_node(nursery: trio.Nursery, cfg: NodeConfig) -> RunningNode:
    from colony import serve_node

    running: RunningNode = await nursery.start(serve_node, cfg)
    return running


@pytest.fixture
async def node(nursery: trio.Nursery, tmp_path: Path) -> RunningNode:
    return await start_node(nursery, node_config(tmp_path))


@pytest.fixture
async def client(node: RunningNode) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        yield c
