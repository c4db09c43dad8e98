"""mDNS discovery: announce this node and find the colony's others (zeroconf).

Service type ``_qt45colony._tcp.local.``; the instance name is ``<node name>-<node id prefix>``
(unique per node); TXT: ``id`` (node id), ``v`` (protocol version), ``port`` (HTTP API port),
``colony`` (``colony_id(key)``, so nodes of other colonies on the same LAN are ignored).

Zeroconf runs on its own thread and is bound to explicitly chosen interface addresses only
(``interfaces=[ip]``): it never multicasts out of a network card nobody chose. Its callbacks hand
service names to trio through a memory channel (``trio.from_thread``); resolving a name is a
blocking zeroconf call, so it runs in a worker thread, never on the trio loop.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from protocol import PROTOCOL_VERSION

log = logging.getLogger("colony.discovery")

SERVICE_TYPE = "_qt45colony._tcp.local."
_RESOLVE_MS = 3000


@dataclass(frozen=True)
class Found:
    """A peer mDNS told us about."""

    url: str
    node_id: str
    name: str


def instance_name(node_name: str, node_id: str) -> str:
    label = re.sub(r"[^A-Za-z0-9-]", "-", node_name)[:40] or "node"
    return f"{label}-{node_id[:12]}.{SERVICE_TYPE}"


def parse_info(info: Any, *, colony: str) -> Found | None:
    """A resolved ServiceInfo as a peer of this colony and protocol version, or None."""
    if info is None:
        return None
    props = {(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)):
             (v.decode("utf-8", "replace") if isinstance(v, bytes) else "")
             for k, v in (info.properties or {}).items()}
    if props.get("v") != str(PROTOCOL_VERSION) or props.get("colony") != colony:
        return None
    node_id = props.get("id", "")
    if not re.fullmatch(r"[0-9a-f]{32}", node_id):
        return None
    addrs = [socket.inet_ntoa(a) for a in (info.addresses or []) if len(a) == 4]
    try:
        port = int(props.get("port") or info.port)
    except ValueError:
        return None
    if not addrs or not 0 < port < 65536:
        return None
    name = str(info.name).split(".", 1)[0]
    return Found(f"http://{addrs[0]}:{port}", node_id, name)


class Discovery:
    """Announce this node and report peers via ``on_found`` (called on the trio loop)."""

    def __init__(self, *, node_id: str, node_name: str, interfaces: list[str], port: int,
                 colony: str, on_found: Callable[[Found], None]) -> None:
        self.node_id = node_id
        self.node_name = node_name
        self.interfaces = interfaces
        self.port = port
        self.colony = colony
        self.on_found = on_found
        self.announced = False
        self.seen: dict[str, Found] = {}

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

        send, recv = trio.open_memory_channel[str](1024)
        token = trio.lowlevel.current_trio_token()

        def on_change(zeroconf: Any, service_type: str, name: str,
                      state_change: ServiceStateChange) -> None:
            # Runs on zeroconf's thread: only hand the name over; resolve it on our side.
            if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
                with contextlib.suppress(trio.WouldBlock, trio.RunFinishedError,
                                         trio.ClosedResourceError):
                    trio.from_thread.run_sync(send.send_nowait, name, trio_token=token)

        zc = await trio.to_thread.run_sync(
            lambda: Zeroconf(interfaces=list(self.interfaces), ip_version=IPVersion.V4Only))
        info = ServiceInfo(
            SERVICE_TYPE, instance_name(self.node_name, self.node_id),
            addresses=[socket.inet_aton(self.interfaces[0])], port=self.port,
            properties={"id": self.node_id, "v": str(PROTOCOL_VERSION), "port": str(self.port),
                        "colony": self.colony},
        )
        browser = None
        try:
            browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._register, zc, info)
                task_status.started()
                async for name in recv:
                    found = parse_info(await trio.to_thread.run_sync(
                        zc.get_service_info, SERVICE_TYPE, name, _RESOLVE_MS), colony=self.colony)
                    if found is None or found.node_id == self.node_id:
                        continue
                    self.seen[found.node_id] = found
                    self.on_found(found)
        finally:
            with trio.CancelScope(shield=True):
                def close() -> None:
                    if browser is not None:
                        browser.cancel()
                    zc.close()  # unregisters our service (goodbye packets) first

                await trio.to_thread.run_sync(close)

    async def _register(self, zc: Any, info: Any) -> None:
        try:
            await trio.to_thread.run_sync(
                lambda: zc.register_service(info, allow_name_change=True))
            self.announced = True
        except Exception as exc:  # zeroconf raises several unrelated classes; keep serving
            log.warning("mDNS announcement failed: %s", exc)
