"""A bare quart-trio endpoint on hypercorn's trio worker: the baseline for the HTTP benchmark.

It parses the same JSON body and answers a reply of the same shape as ``POST /v1/tasks``, doing
no work: the difference to a node is exactly what the node adds per cached task. It runs with a
node process's own settings (hypercorn's read size and glibc malloc, ``colony/_root.py``), so
that difference is the node's work, not a configuration. Like a node (``node/_embed.py``:
``freeze_heap``), it collects and freezes its heap once its imports are done, so that neither
server's collections walk what start-up left behind.
"""

from __future__ import annotations

import argparse
import gc
import json

import msgpack
import numpy as np
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

app = QuartTrio("bare")
REPLY = {"result": 30, "function": {"name": "add", "fingerprint": "sha256:" + "0" * 64,
                                    "tier": "scalar", "signature": "(i32, i32) -> i32",
                                    "verified": True},
         "source": "cache", "llm_calls": 0, "node": "0" * 32, "elapsed_ms": 0.1,
         # the node's reply says how much to trust it (node/_serving.py: Serving.evidence)
         "evidence": {"tests_passed": 2, "tests_total": 2, "from_caller": 0,
                      "verified_by": ["0" * 32], "disambiguated": False,
                      "distinguishing_inputs": 0, "basis": "fits-examples", "search": None}}


@app.post("/v1/tasks")
async def task() -> Response:
    body = json.loads(await request.get_data(cache=False))
    reply = dict(REPLY, result=sum(body["args"]))
    return Response(json.dumps(reply, separators=(",", ":")), content_type="application/json")


@app.post("/v1/functions/vadd/run")
async def vadd() -> Response:
    """The same array call as the node's ``vadd``, done by numpy: msgpack in and out, f32[] as
    raw little-endian float32 bytes (the baseline of the array-over-HTTP benchmark)."""
    body = msgpack.unpackb(await request.get_data(cache=False), raw=False)
    a, b = (np.frombuffer(x, dtype="<f4") for x in body["args"])
    out = msgpack.packb({"result": (a + b).tobytes()}, use_bin_type=True)
    return Response(out, content_type="application/msgpack")


@app.get("/health")
async def health() -> Response:
    return Response('{"ok":true}', content_type="application/json")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    from colony._root import tune_allocator, tune_http_reads

    tune_allocator()
    tune_http_reads()
    # what a serious server does after its one-time loads, and what a node does (freeze_heap):
    # without it the baseline alone pays for collections walking its imported modules
    gc.collect()
    gc.freeze()
    cfg = Config()
    cfg.bind = [f"127.0.0.1:{args.port}"]
    cfg.accesslog = None
    cfg.loglevel = "WARNING"  # no "Running on" line in the benchmark's output
    trio.run(serve, app, cfg)


if __name__ == "__main__":
    main()
