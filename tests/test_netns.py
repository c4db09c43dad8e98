"""Three hosts in network namespaces: mDNS across a bridge, sync, a partition and its healing.

Topology (all created here, removed in ``finally``): a namespace ``qtbr<id>`` holding a bridge;
hosts ``qth<id>-1..3``, each with a veth pair whose other end is a bridge port, addresses
10.77.<id>.1-3/24; the test itself reaches them through one more veth (10.77.<id>.100) from the
root namespace. Each host runs a real ``colony node`` process bound to its own address, with mDNS
on that interface only and no ``--peer`` seeds: the nodes can only meet over mDNS.

The partition is a link down on host 3's interface (the kernel here has no netem); after it comes
back up, host 3 must converge (backoff retries + anti-entropy) without any help.
Needs root (CI and the dev machines run as root); skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol import colony_key_to_text, generate_colony_key

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux-only"),
    pytest.mark.skipif(os.geteuid() != 0 if hasattr(os, "geteuid") else True,
                       reason="network namespaces need root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 (`ip`) is not installed"),
]

ADD = {"description": "adds two integers", "name": "add", "signature": "(i32, i32) -> i32",
       "args": [1, 1], "examples": [{"args": [1, 2], "result": 3}, {"args": [5, 7], "result": 12},
                                    {"args": [-2, -2], "result": -4}, {"args": [1, 0], "result": 1},
                                    {"args": [10, -3], "result": 7}]}
SUB = {"description": "subtracts", "name": "sub", "signature": "(i32, i32) -> i32",
       "args": [5, 1], "examples": [{"args": [5, 2], "result": 3}, {"args": [1, 7], "result": -6},
                                    {"args": [-2, -2], "result": 0}, {"args": [0, 4], "result": -4},
                                    {"args": [9, -3], "result": 12}]}


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Net:
    """The namespaces, bridge and veths of one test run."""

    def __init__(self, n_hosts: int) -> None:
        self.id = os.getpid() % 200 + 20
        self.bridge_ns = f"qtbr{self.id}"
        self.hosts = [f"qth{self.id}-{i + 1}" for i in range(n_hosts)]
        self.ips = [f"10.77.{self.id}.{i + 1}" for i in range(n_hosts)]
        self.ctl = f"qtc{self.id}"
        self.made_ns: list[str] = []
        self.made_links: list[str] = []

    def host_if(self, i: int) -> str:
        return f"qtv{self.id}h{i + 1}"

    def up(self) -> None:
        b = self.bridge_ns
        sh("ip", "netns", "add", b)
        self.made_ns.append(b)
        sh("ip", "-n", b, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", b, "link", "set", "br0", "up")
        for i, host in enumerate(self.hosts):
            sh("ip", "netns", "add", host)
            self.made_ns.append(host)
            sh("ip", "-n", host, "link", "set", "lo", "up")
            hif, port = self.host_if(i), f"qtp{self.id}h{i + 1}"
            sh("ip", "link", "add", hif, "type", "veth", "peer", "name", port)
            sh("ip", "link", "set", hif, "netns", host)
            sh("ip", "link", "set", port, "netns", b)
            sh("ip", "-n", b, "link", "set", port, "master", "br0")
            sh("ip", "-n", b, "link", "set", port, "up")
            sh("ip", "-n", host, "addr", "add", f"{self.ips[i]}/24", "dev", hif)
            sh("ip", "-n", host, "link", "set", hif, "up")
        # the test's own way in, from the root namespace
        sh("ip", "link", "add", self.ctl, "type", "veth", "peer", "name", f"qtcp{self.id}")
        self.made_links.append(self.ctl)
        sh("ip", "link", "set", f"qtcp{self.id}", "netns", b)
        sh("ip", "-n", b, "link", "set", f"qtcp{self.id}", "master", "br0")
        sh("ip", "-n", b, "link", "set", f"qtcp{self.id}", "up")
        sh("ip", "addr", "add", f"10.77.{self.id}.100/24", "dev", self.ctl)
        sh("ip", "link", "set", self.ctl, "up")

    def down(self) -> None:
        for link in self.made_links:
            sh("ip", "link", "del", link, check=False)
        for ns in reversed(self.made_ns):
            sh("ip", "netns", "del", ns, check=False)

    def set_link(self, i: int, state: str) -> None:
        sh("ip", "-n", self.hosts[i], "link", "set", self.host_if(i), state)


def _get(url: str) -> Any:
    r = httpx.get(url, timeout=3)
    r.raise_for_status()
    return r.json()


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def _serves(url: str, name: str) -> bool:
    r = httpx.get(f"{url}/v1/functions/{name}", timeout=3)
    return r.status_code == 200 and any(v["verified"] and v.get("status") == "active"
                                        for v in r.json()["variants"])


def test_three_hosts_meet_over_mdns_sync_and_heal_a_partition(tmp_path: Path) -> None:
    net = Net(3)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        net.up()
        key_file = tmp_path / "colony.key"
        key_file.write_text(colony_key_to_text(generate_colony_key()))
        env = {**os.environ, "COLONY_COLONY_GOSSIP_INTERVAL_S": "0.3",
               "COLONY_COLONY_BACKOFF_S": "0.3", "COLONY_COLONY_BACKOFF_MAX_S": "1.0",
               "COLONY_COLONY_PEER_TIMEOUT_S": "1.0"}
        for i, host in enumerate(net.hosts):
            log = open(tmp_path / f"node{i}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", host, sys.executable, "-m", "colony", "node",
                 "--host", net.ips[i], "--port", "8450", "--data", str(tmp_path / f"n{i}"),
                 "--name", f"h{i + 1}", "--colony-key-file", str(key_file),
                 "--interface", net.ips[i]],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        urls = [f"http://{ip}:8450" for ip in net.ips]

        def all_met() -> bool:
            for u in urls:
                peers = _get(f"{u}/v1/colony")["peers"]
                if sum(p["state"] == "up" and p["source"] in ("mdns", "hello")
                       for p in peers) < 2:
                    return False
            return True

        _wait(all_met, 40, "the 3 hosts to meet over mDNS")
        view = _get(f"{urls[0]}/v1/colony")
        assert view["colony"]["mdns"]["interfaces"] == [net.ips[0]]
        assert sorted(p["url"] for p in view["peers"]) == sorted(urls[1:])

        r = httpx.post(f"{urls[0]}/v1/tasks", json=ADD, timeout=60)
        assert r.status_code == 200 and r.json()["source"] == "synthesized", r.text
        _wait(lambda: all(_serves(u, "add") for u in urls[1:]), 10, "add on hosts 2 and 3")

        # partition host 3 away, create something new on host 1
        net.set_link(2, "down")
        r = httpx.post(f"{urls[0]}/v1/tasks", json=SUB, timeout=60)
        assert r.status_code == 200 and r.json()["source"] == "synthesized", r.text
        _wait(lambda: _serves(urls[1], "sub"), 10, "sub on host 2")

        def h1_sees_h3_down() -> bool:
            peers = _get(f"{urls[0]}/v1/colony")["peers"]
            return any(p["url"] == urls[2] and p["state"] == "down" for p in peers)

        _wait(h1_sees_h3_down, 10, "host 1 to mark host 3 down")
        # heal: host 3 converges by itself (retries with backoff, then anti-entropy)
        net.set_link(2, "up")
        _wait(lambda: _serves(urls[2], "sub"), 20, "sub on host 3 after healing")
        r = httpx.post(f"{urls[2]}/v1/tasks", json={**SUB, "args": [9, 4],
                                                    "synthesize": False}, timeout=30)
        assert r.status_code == 200 and r.json()["result"] == 5
        assert r.json()["llm_calls"] == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        net.down()
