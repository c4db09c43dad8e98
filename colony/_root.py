"""The composition root: builds a node, its colony service and the HTTP app, serves them.

This is the only place the two layers meet. ``node`` knows nothing of ``colony``: the node is
built with a factory for its :class:`node.ColonyHooks`, which receives the node as a
:class:`node.NodePort`; the colony's ``/protocol/v1/`` routes join the node's app here.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, cast

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from colony._http import register_routes
from colony._mcp import ASGIApp, McpEndpoint, with_mcp
from colony._service import ColonyService, load_colony_key
from node import Node, NodeConfig, NodePort, create_app

log = logging.getLogger("colony.root")

#: Bytes hypercorn asks of a socket per read (its own ``MAX_RECV`` is 64 KiB). A 12 MB array
#: call read in 64 KiB steps passes ~190 chunks through h11, hypercorn's stream, a trio channel
#: and quart's body one by one; 1 MiB reads take what the kernel holds in a few steps. A small
#: request costs the same: the read buffer is shrunk to what arrived.
RECV_BYTES = 1 << 20
#: glibc malloc settings for a node process (``mallopt``): blocks under ``MMAP_THRESHOLD`` come
#: from the heap, and up to ``TRIM_THRESHOLD`` of free heap stays mapped. glibc's defaults give
#: every multi-megabyte body, array and reply its own fresh ``mmap``, and each copy of one then
#: pays a page fault per 4 KiB (an 8 MB copy: 7-10 ms instead of 0.3 ms measured here).
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 32 << 20  # one big call's buffers; 16 MB measured twice the CPU per call
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h


def tune_http_reads(recv_bytes: int = RECV_BYTES) -> bool:
    """Make hypercorn's trio server read ``recv_bytes`` per socket read (process-wide: the
    module constant it reads on every receive). False if this hypercorn has no such constant."""
    from hypercorn.trio import tcp_server

    if not isinstance(getattr(tcp_server, "MAX_RECV", None), int):
        log.warning("hypercorn.trio.tcp_server has no MAX_RECV: large bodies are read in its "
                    "own steps")
        return False
    tcp_server.MAX_RECV = max(tcp_server.MAX_RECV, recv_bytes)
    return True


def tune_allocator(mmap_threshold: int = MMAP_THRESHOLD,
                   trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Apply :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD` to glibc's malloc (a node
    process's entry point calls it once). False where it does not apply: not glibc, or
    ``GLIBC_TUNABLES`` already sets malloc's own values (the operator's choice wins)."""
    if not sys.platform.startswith("linux") or "glibc.malloc" in os.environ.get(
            "GLIBC_TUNABLES", ""):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    global _TUNED
    _TUNED = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    return _TUNED


_TUNED = False
#: Seconds without an HTTP request after which a tuned node gives its free heap back to the
#: system (``malloc_trim``), once per quiet spell: the 32 MB per arena a busy node keeps for the next big
#: body (and what a synthesis left behind) is not held by an idle one.
IDLE_TRIM_S = 10.0


def trim_heap() -> bool:
    """Give free heap pages back to the system (glibc ``malloc_trim(0)``); False without it.
    Blocking, a few ms: it holds malloc's lock, so it runs only when the node is quiet."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


class QuietTracker:
    """ASGI wrapper noting when the last HTTP request ended and how many are in flight."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.active = 0
        self.last = 0.0
        #: Requests seen since the last trim (an idle node is trimmed once, not every spell).
        self.seen = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.active += 1
        self.seen += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            self.last = trio.current_time()

    def quiet_for(self) -> float:
        return 0.0 if self.active else trio.current_time() - self.last


async def trim_when_quiet(tracker: QuietTracker, idle_s: float = IDLE_TRIM_S) -> None:
    """Forever: once the node has had no request for ``idle_s``, trim the heap (in a thread),
    then wait for the next busy spell to end."""
    while True:
        await trio.sleep(idle_s / 4)
        if tracker.seen and tracker.quiet_for() >= idle_s:
            tracker.seen = 0
            await trio.to_thread.run_sync(trim_heap)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (structured, grep- and jq-friendly)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str = "warning") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger("colony")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # hypercorn's own loggers stay quiet unless asked
    logging.getLogger("hypercorn.error").setLevel(max(logging.WARNING, root.level))


@dataclass
class RunningNode:
    """A node being served: its :class:`node.Node`, its colony service and its URL."""

    node: Node
    colony: ColonyService
    url: str
    cancel_scope: trio.CancelScope

    def stop(self) -> None:
        self.cancel_scope.cancel()


async def serve_node(config: NodeConfig, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve one node until cancelled. ``task_status.started`` receives a :class:`RunningNode`."""
    colony_key = load_colony_key(config.colony.key_file)
    services: list[ColonyService] = []

    def build_colony(port: NodePort) -> ColonyService:
        service = ColonyService(port, config.colony, colony_key=colony_key)
        services.append(service)
        return service

    tune_http_reads()
    node = await trio.to_thread.run_sync(lambda: Node.open(config, colony=build_colony))
    colony = services[0]
    try:
        app = create_app(node)
        # the colony layer runs alone without a colony key; its routes exist either way
        register_routes(app, colony)
        asgi = cast(ASGIApp, app)  # quart's own scope types are narrower than ASGI's
        mcp = McpEndpoint(asgi, host=config.host)  # the tool API for agents, at /mcp
        hyper = HyperConfig()
        hyper.bind = [f"{config.host}:{config.port}"]
        hyper.accesslog = None
        hyper.errorlog = logging.getLogger("hypercorn.error")
        hyper.keep_alive_timeout = 30
        hyper.graceful_timeout = 2
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run_background)
                await nursery.start(mcp.run)
                served: ASGIApp = with_mcp(asgi, mcp)
                if _TUNED:  # a node process with the big-block malloc settings
                    tracker = QuietTracker(served)
                    served = tracker
                    nursery.start_soon(trim_when_quiet, tracker)
                binds: list[str] = await nursery.start(serve, served, hyper)
                url = binds[0].replace("0.0.0.0", "127.0.0.1")
                node.config = _with_port(node.config, url)
                colony.api_url = _advertised(url, config)
                await nursery.start(colony.run)
                task_status.started(RunningNode(node, colony, url, scope))
    finally:
        await node.aclose()


def _advertised(url: str, config: NodeConfig) -> str:
    """The URL peers reach this node at: the first mDNS interface when serving on every
    address."""
    if config.host in ("0.0.0.0", "") and config.colony.interfaces:
        return f"http://{config.colony.interfaces[0]}:{url.rsplit(':', 1)[1]}"
    return url


def _with_port(config: NodeConfig, url: str) -> NodeConfig:
    from dataclasses import replace

    port = int(url.rsplit(":", 1)[1])
    return replace(config, port=port)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop a plain (non-trio) program with KeyboardInterrupt.

    A process started in the background by a non-interactive shell inherits SIGINT ignored, and
    a parent may have left signals blocked: both are undone explicitly. A second SIGTERM while
    stopping exits at once.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signals = 0

    def on_term(signum: int, frame: object) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:  # a second SIGTERM while stopping: the caller means it
            os._exit(1)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)


async def _stop_on_sigterm(scope: trio.CancelScope) -> None:
    """Inside trio: the first SIGTERM cancels the node's scope (a clean stop, like Ctrl-C);
    a second one exits at once."""
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            if scope.cancel_called:
                os._exit(1)
            print("SIGTERM: stopping", file=sys.stderr, flush=True)
            scope.cancel()


def run_node_forever(config: NodeConfig) -> None:
    """Blocking entry point for ``colony node``: serve until Ctrl-C."""
    setup_logging(config.log_level)
    tune_allocator()  # process-wide, so only here (the process is the node's own)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_sigterm, nursery.cancel_scope)
            running: RunningNode = await nursery.start(serve_node, config)
            where = running.url
            if config.host in ("0.0.0.0", "::"):
                where += f" (bound to all interfaces, {config.host})"
            print(f"node {running.node.config.name} ({running.node.node_id[:12]}) serving on "
                  f"{where}  data: {config.data_dir}", flush=True)

    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.default_int_handler)  # trio turns it into a clean stop
    started = time.time()
    try:
        trio.run(main)
    except* KeyboardInterrupt:  # trio wraps Ctrl-C in an exception group (a clean stop)
        pass
    print(f"stopped after {time.time() - started:.0f}s", file=sys.stderr)
    # Everything that matters is closed by now (library, metrics flushed, peers told). Exit at
    # once: interpreter finalization can otherwise wait on a background import (the embedding
    # model loading in a daemon thread takes many seconds on a busy machine).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
