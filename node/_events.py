"""The node's event bus and its server-sent-events stream (``GET /v1/events``, issue 7).

What happens on a node (tasks answered or failed, synthesis started/finished/failed, variants
stored/adopted/quarantined/retired, peers up/down) is published here as small JSON events. The bus
keeps the last ``capacity`` events in a ring (a new subscriber can replay them, and a browser that
reconnects with ``Last-Event-ID`` misses nothing still in the ring), running totals and a timeline
of 10-second buckets (so a freshly opened dashboard can draw the last hour).

Publishing never blocks and never fails the task path: each subscriber has a bounded trio memory
channel; a subscriber that does not keep up loses events (counted, then told with one ``lagged``
event so it can re-read the full state). ``emit`` must be called from the trio thread (every
caller is async code of the node or the colony service).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import trio

from node._errors import ColonyError, NotFoundError, RequestError

if TYPE_CHECKING:
    from quart import Response
    from quart_trio import QuartTrio

    from node._node import Node

log = logging.getLogger("colony.events")

#: Every kind the node publishes (docs/api.md lists them with their fields).
KINDS = (
    "task", "task.failed",
    "synthesis.started", "synthesis.finished", "synthesis.failed", "synthesis.ambiguous",
    "synthesis.guess", "function.corrected", "function.aliased",
    "variant.stored", "variant.adopted", "variant.quarantined", "variant.retired",
    "variant.failed",
    "peer.up", "peer.down",
    "test.conflict", "test.resolved",
)
_KIND_SET = frozenset(KINDS)
BUCKET_S = 10.0
TIMELINE_BUCKETS = 360  # one hour of 10-second buckets
KEEPALIVE_S = 15.0
DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboards"
_ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8",
                ".json": "application/json", ".png": "image/png", ".ico": "image/x-icon"}


class Event(NamedTuple):
    """One published event (a named tuple: one is made for every task answered)."""

    seq: int
    kind: str
    at: float  # unix seconds
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "at": round(self.at, 3), **self.data}

    def sse(self) -> bytes:
        """One SSE frame: ``id`` lets a reconnecting EventSource resume after it."""
        return _frame(self.kind, self.as_dict(), self.seq)


def _frame(kind: str, doc: dict[str, Any], seq: int | None = None) -> bytes:
    text = json.dumps(doc, separators=(",", ":"), default=str, allow_nan=False)
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {text}\n\n".encode()


#: Value types that are JSON as they are (floats too when finite): most events carry only these.
_PLAIN_TYPES = frozenset({str, int, bool, float, type(None)})


def _clean_data(data: dict[str, Any]) -> dict[str, Any]:
    """:func:`_clean` of an event's fields, without rebuilding the usual flat ones (this runs
    for every task answered)."""
    for v in data.values():
        if type(v) not in _PLAIN_TYPES or (type(v) is float and not math.isfinite(v)):
            return {str(k): _clean(v) for k, v in data.items()}
    return data


def _clean(value: Any) -> Any:
    """Event data must be JSON: non-finite floats become strings, tuples lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@dataclass
class Subscriber:
    send: trio.MemorySendChannel[Event]
    recv: trio.MemoryReceiveChannel[Event]
    kinds: tuple[str, ...] = ()
    dropped: int = 0

    def wants(self, kind: str) -> bool:
        return _matches(self.kinds, kind)


def _matches(kinds: tuple[str, ...], kind: str) -> bool:
    """An empty filter takes everything; ``task`` takes ``task`` and ``task.failed``."""
    return not kinds or any(kind == k or kind.startswith(k + ".") for k in kinds)


#: ``task:<source>`` counter keys by source (made once, not for every task).
_BY_SOURCE: dict[Any, str] = {}


@dataclass
class _Bucket:
    start: float
    counts: dict[str, int] = field(default_factory=dict)


class EventBus:
    """Bounded ring + fan-out of a node's events (see the module doc)."""

    def __init__(self, node_id: str = "", *, capacity: int = 1000, buffer: int = 256) -> None:
        if capacity < 1 or buffer < 1:
            raise ValueError("capacity and buffer must be positive")
        self.node_id = node_id
        self.capacity = capacity
        self.buffer = buffer
        self.seq = 0
        self.started_at = time.time()
        self.ring: deque[Event] = deque(maxlen=capacity)
        self.totals: dict[str, int] = {}
        self.timeline: deque[_Bucket] = deque(maxlen=TIMELINE_BUCKETS)
        self.subscribers: list[Subscriber] = []
        self.dropped = 0

    # ------------------------------------------------------------------ publishing
    def emit(self, kind: str, **data: Any) -> Event:
        """Publish one event; O(subscribers), never blocks, never raises for a subscriber."""
        return self.emit_plain(kind, _clean_data(data))

    def emit_plain(self, kind: str, data: dict[str, Any]) -> Event:
        """:meth:`emit` of a fresh dict whose values are already JSON as they are (strings,
        ints, bools, None, finite floats): the bus keeps it without looking at each value."""
        if kind not in _KIND_SET:
            raise ValueError(f"unknown event kind {kind!r}")
        self.seq += 1
        event = Event(self.seq, kind, time.time(), data)
        self.ring.append(event)
        self._count(event)
        if self.subscribers:
            for sub in list(self.subscribers):
                if sub.wants(kind):
                    self._deliver(sub, event)
        return event

    def failed(self, kind: str, exc: ColonyError, **data: Any) -> None:
        """Publish ``<kind>.failed`` for a request that ended in ``exc``: its status, type and
        detail, with ``data``."""
        self.emit(f"{kind}.failed", status=exc.status, type=exc.slug, detail=exc.detail[:500],
                  **data)

    def _deliver(self, sub: Subscriber, event: Event) -> None:
        try:
            sub.send.send_nowait(event)
        except trio.WouldBlock:  # a slow reader: drop for it, never wait
            sub.dropped += 1
            self.dropped += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._remove(sub)

    def _count(self, event: Event) -> None:
        kind, at = event.kind, event.at
        timeline = self.timeline
        if not timeline or timeline[-1].start + BUCKET_S <= at:
            timeline.append(_Bucket(at - at % BUCKET_S))
        totals, bucket = self.totals, timeline[-1].counts
        totals[kind] = totals.get(kind, 0) + 1
        bucket[kind] = bucket.get(kind, 0) + 1
        if kind == "task":
            source = event.data.get("source", "?")
            by_source = _BY_SOURCE.get(source) or _BY_SOURCE.setdefault(source, f"task:{source}")
            totals[by_source] = totals.get(by_source, 0) + 1
            bucket[by_source] = bucket.get(by_source, 0) + 1

    # ------------------------------------------------------------------ reading
    def recent(self, n: int | None = None, *, after: int = 0,
               kinds: tuple[str, ...] = ()) -> list[Event]:
        out = [e for e in self.ring if e.seq > after and _matches(kinds, e.kind)]
        return out if n is None else out[-n:] if n > 0 else []

    def snapshot(self) -> dict[str, Any]:
        """Totals and the timeline as of ``seq`` (events after it are deltas on top)."""
        return {
            "node": self.node_id, "seq": self.seq, "started_at": round(self.started_at, 3),
            "totals": dict(self.totals), "bucket_s": BUCKET_S,
            "timeline": [{"t": b.start, **b.counts} for b in self.timeline],
            "kinds": list(KINDS), "subscribers": len(self.subscribers), "dropped": self.dropped,
        }

    @contextmanager
    def subscribe(self, kinds: tuple[str, ...] = ()) -> Iterator[Subscriber]:
        send, recv = trio.open_memory_channel[Event](self.buffer)
        sub = Subscriber(send, recv, kinds)
        self.subscribers.append(sub)
        try:
            yield sub
        finally:
            self._remove(sub)
            send.close()
            recv.close()

    def _remove(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    # ------------------------------------------------------------------ helpers for callers
    async def stream(self, *, backlog: int = 0, after: int | None = None,
                     kinds: tuple[str, ...] = (),
                     keepalive_s: float = KEEPALIVE_S) -> AsyncGenerator[bytes, None]:
        """The SSE byte stream of one subscriber: a ``snapshot`` event, the replayed events
        (after ``after`` when the client resumes, else the last ``backlog``), then live events,
        with a comment line every ``keepalive_s`` so proxies and dead clients are noticed."""
        with self.subscribe(kinds) as sub:
            snap = self.snapshot()
            yield b"retry: 2000\n\n" + _frame("snapshot", snap)
            replay = (self.recent(after=after, kinds=kinds) if after is not None
                      else self.recent(backlog, kinds=kinds))
            for event in replay:
                yield event.sse()
            reported = 0
            while True:
                with trio.move_on_after(keepalive_s) as timer:
                    event = await sub.recv.receive()
                if timer.cancelled_caught:
                    yield b": keepalive\n\n"
                    continue
                if sub.dropped > reported:
                    yield _frame("lagged", {"dropped": sub.dropped - reported, "seq": event.seq})
                    reported = sub.dropped
                yield event.sse()


# ---------------------------------------------------------------------- HTTP (node/_app.py)
def _int_arg(raw: str | None, name: str, lo: int, hi: int, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(f"'{name}' must be an integer from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise RequestError(f"'{name}' must be an integer from {lo} to {hi}")
    return value


def _kinds_arg(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    kinds = tuple(k.strip() for k in raw.split(",") if k.strip())
    families = {k.split(".")[0] for k in KINDS}
    for k in kinds:
        if k not in KINDS and k not in families:
            raise RequestError(f"unknown event kind {k!r}; known: {', '.join(KINDS)} "
                               f"(or a family: {', '.join(sorted(families))})")
    return kinds


def register_routes(app: QuartTrio, node: Node) -> None:
    """``GET /v1/events`` (SSE) and ``GET /dashboard/{file}`` (the dashboard's own assets).
    Nothing here touches ``node`` until a request comes (the route tests build the app with a
    stand-in node)."""
    from quart import Response, request

    @app.get("/v1/events")
    async def events() -> Response:
        bus: EventBus = node.events
        backlog = _int_arg(request.args.get("backlog"), "backlog", 0, bus.capacity, 0)
        last = request.headers.get("Last-Event-ID") or request.args.get("after")
        after = None if last in (None, "") else _int_arg(last, "Last-Event-ID", 0, 2**62, 0)
        kinds = _kinds_arg(request.args.get("kinds"))
        resp = Response(bus.stream(backlog=backlog, after=after, kinds=kinds), status=200,
                        content_type="text/event-stream; charset=utf-8",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                 # read-only: any node's dashboard merges every peer's stream
                                 "Access-Control-Allow-Origin": "*"})
        resp.timeout = None  # a stream lives until the client leaves (Quart's default is 60 s)
        return resp

    @app.get("/dashboard/<path:file>")
    async def dashboard_asset(file: str) -> Response:
        return _asset(file)


def _asset(file: str) -> Response:
    from quart import Response

    path = (DASHBOARD_DIR / file).resolve()
    ctype = _ASSET_TYPES.get(path.suffix)
    # only plain files inside dashboards/ with a known type: no traversal, no directory listing
    if ctype is None or not path.is_relative_to(DASHBOARD_DIR) or not path.is_file():
        raise NotFoundError(f"no dashboard file {file!r}")
    return Response(path.read_bytes(), content_type=ctype,
                    headers={"Cache-Control": "no-cache"})
