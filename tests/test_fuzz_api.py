"""Schemathesis against a live node, bounded: generated requests for every operation of the
OpenAPI document (JSON and msgpack bodies), checking that none is answered with a 5xx and that
every response conforms to the document (status codes, content types, bodies).

The node runs as a real ``colony node`` process on loopback, with a small synthesis budget so
that generated tasks stay cheap. The default run is a few examples per operation (well under
two minutes on two cores); ``-m slow`` runs many more.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck, reject, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from node import ApiLimits, openapi_document
from tests.test_api import ADD, VADD

ROOT = Path(__file__).resolve().parent.parent


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """``not_a_server_error``, except the contract's 503s for a healthy node: ``no-synthesizer``
    (a task that needs synthesis this node has no synthesizer for) and ``memory-busy`` (the
    node-wide memory budget stayed full for a call's time budget: retry later; a loaded CI
    machine running hostile fuzzed calls can get there)."""
    if response.status_code == 503:
        doc = response.json()
        assert doc.get("type", "").endswith(("/no-synthesizer", "/memory-busy")), \
            response.text[:300]
        return True
    return not_a_server_error(ctx, response, case)


def _framing_refused(case: Any, response: Any) -> bool:
    """A 501 for a request whose ``Transfer-Encoding`` is not ``chunked``: the HTTP server's
    own answer (h11, before any of the node's code runs), and the one RFC 9112 (section 6.1)
    asks for a transfer coding the server does not understand. The fuzzer sends such headers
    at random."""
    if response.status_code != 501:
        return False
    given = {k.lower(): v for k, v in (case.headers or {}).items()}
    coding = given.get("transfer-encoding")
    return coding is not None and str(coding).strip().lower() != "chunked"


def _unless_framing_refused(check: Any) -> Any:
    def checked(ctx: Any, response: Any, case: Any) -> bool | None:
        if _framing_refused(case, response):
            return True
        result: bool | None = check(ctx, response, case)
        return result

    checked.__name__ = getattr(check, "__name__", "check")
    return checked


CHECKS = [_unless_framing_refused(c) for c in (no_server_error, status_code_conformance,
                                               content_type_conformance,
                                               response_schema_conformance)]
QUICK_EXAMPLES = 8
SLOW_EXAMPLES = 150


@schemathesis.serializer("application/msgpack")
def _to_msgpack(ctx: Any, value: Any) -> bytes:
    try:
        return bytes(msgpack.packb(value, use_bin_type=True))
    except OverflowError:
        reject()  # msgpack has no spelling for an integer past 64 bits: not a request to send


@schemathesis.deserializer("application/msgpack", "application/problem+msgpack")
def _from_msgpack(ctx: Any, response: Any) -> Any:
    def plain(v: Any) -> Any:  # f32[] results arrive as raw float32 bytes: a string to JSON
        if isinstance(v, bytes):
            return v.hex()
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    return plain(msgpack.unpackb(response.content, raw=False))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    data = tmp_path_factory.mktemp("fuzz-node")
    env = dict(os.environ, COLONY_LOG_LEVEL="error", COLONY_EMBEDDINGS="false",
               COLONY_SYNTH_TIMEOUT_S="3", COLONY_SYNTH_MAX_PROGRAMS="300000",
               COLONY_SYNTH_AFTER_FIT_PROGRAMS="50000", COLONY_SANDBOX_TIMEOUT_S="2",
               COLONY_API_MAX_PAGE_SIZE="50")
    # the node's log goes to a file: an unread pipe fills up and blocks the node
    log = (data / "node.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "colony", "node", "--port", str(port),
                             "--data", str(data), "--name", "fuzz", "--no-mdns"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (data / "node.log").read_text()[-4000:]
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.2)
        # something to find: the fuzzer's examples name `add` (the schema's example name)
        for task in (ADD, VADD):
            r = httpx.post(url + "/v1/tasks", json=task, timeout=120)
            assert r.status_code == 200, r.text
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        # an exception the app raised past its error handlers is a defect even when the
        # client saw a reply
        assert "Traceback" not in (data / "node.log").read_text(errors="replace"), \
            (data / "node.log").read_text(errors="replace")[-4000:]


# The document the fuzzed node serves (built from the same settings; checked in _call), loaded
# at import: schemathesis' lazy fixture loader does not run under pytest 9.
DOCUMENT = openapi_document(replace(ApiLimits(), max_page_size=50))
schema = schemathesis.openapi.from_dict(DOCUMENT)
# the event stream never ends: its own tests (test_events.py) cover it
fuzzed = schema.exclude(path="/v1/events")
_served: dict[str, bool] = {}


def _call(case: Any, live_node: str) -> None:
    if live_node not in _served:
        _served[live_node] = httpx.get(live_node + "/openapi.json").json() == DOCUMENT
    assert _served[live_node], "the node serves another OpenAPI document than the fuzzed one"
    response = case.call(base_url=live_node, timeout=60)
    case.validate_response(response, checks=CHECKS)


@fuzzed.parametrize()
@settings(max_examples=QUICK_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_fuzz_no_5xx_and_conforms(case: Any, live_node: str) -> None:
    _call(case, live_node)


@pytest.mark.slow
@fuzzed.parametrize()
@settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_long(case: Any, live_node: str) -> None:
    _call(case, live_node)
