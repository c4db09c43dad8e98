"""The curriculum export: every verified function of the library as training data.

``GET /v1/export`` and ``colony export`` (docs/api.md, docs/colony.md). One JSON object per line
(NDJSON), one per function that this node verified (at least one active variant with a passing
local verdict), in sequence order. ``seq`` is the function's row id in the library, which only
grows; ``since=SEQ`` resumes after the last line received, so an interrupted export of a large
library continues where it stopped.

Streamed: the library is read in batches (keyset pagination on ``functions.id``, each batch in its
own short read snapshot, so a slow reader never holds a snapshot open and the WAL can be
checkpointed meanwhile); memory use is one batch, whatever the library's size.

Formats:

- ``jsonl``: the function (name, description, aliases, signature, tier family), its verified
  variants (tier, WAT, WGSL, generator, origin node, parents, evidence, and every node's verdict
  on it — who verified what), its tests (with their origin), and ``computed`` examples: the
  serving variant run by this node's runtime on the tests' inputs, each naming the variant and
  the node that computed it.
- ``worldmodel``: one training text per function — the task, the WAT (and WGSL), and for each
  computed example the call and the ``<computed>`` result the runtime produced.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import apsw
import msgpack
import numpy as np
import trio
from quart import Response, request

from node._errors import ColonyError, RequestError
from protocol import Signature, SignatureError

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from node._node import Node
    from node._runtime import Runtime
    from node._store import Library

__all__ = ["EXPORT_FORMATS", "export_library", "export_lines", "export_records", "fetch_export",
           "register_export_routes", "render_worldmodel"]

#: The export formats.
EXPORT_FORMATS = ("jsonl", "worldmodel")
#: Functions read per library snapshot.
BATCH = 100
#: Computed examples per function (the first tests' inputs).
COMPUTED = 16
#: Lines handed from the worker thread to the event loop at once.
_LINES_PER_HOP = 32

_VERIFIED = ("EXISTS (SELECT 1 FROM variants v JOIN verdicts d ON d.fingerprint = v.fingerprint"
             " AND d.node = ? AND d.passed WHERE v.function = f.name AND v.status = 'active')")


def _jsonable(value: Any) -> Any:
    """Plain JSON: numpy values as lists/numbers, non-finite floats as "nan", "inf", "-inf"."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _tables(r: apsw.Connection) -> set[str]:
    return {str(n) for (n,) in r.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _record(r: apsw.Connection, row: tuple[Any, ...], node_id: str, tables: set[str]
            ) -> dict[str, Any]:
    fid, name, description, signature, family, created_at = row
    aliases = ([str(a) for (a,) in r.execute(
        "SELECT alias FROM aliases WHERE function = ? ORDER BY alias", (name,))]
        if "aliases" in tables else [])
    champions = ({str(fp) for (fp,) in r.execute(
        "SELECT fingerprint FROM champions WHERE function = ?", (name,))}
        if "champions" in tables else set())
    evidence = ({str(fp): {"disambiguated_on": int(n), "basis": str(b)} for fp, n, b in r.execute(
        "SELECT e.fingerprint, e.disambiguated_on, e.basis FROM variant_evidence e"
        " JOIN variants v ON v.fingerprint = e.fingerprint WHERE v.function = ?", (name,))}
        if "variant_evidence" in tables else {})
    variants = []
    for fp, tier, wat, wgsl, generator, origin, vcreated in r.execute(
            "SELECT v.fingerprint, v.tier, v.wat, v.wgsl, v.generator, v.origin_node,"
            " v.created_at FROM variants v JOIN verdicts d ON d.fingerprint = v.fingerprint"
            " AND d.node = ? AND d.passed WHERE v.function = ? AND v.status = 'active'"
            " ORDER BY v.created_at DESC, v.rowid DESC", (node_id, name)):
        verdicts = [{"node": str(n), "passed": bool(p), "tests_run": int(run),
                     "tests_failed": int(failed), "at": float(at)}
                    for n, p, run, failed, at in r.execute(
                        "SELECT node, passed, tests_run, tests_failed, at FROM verdicts"
                        " WHERE fingerprint = ? ORDER BY node", (fp,))]
        parents = [str(p) for (p,) in r.execute(
            "SELECT parent FROM variant_parents WHERE child = ? ORDER BY ordinal", (fp,))]
        variants.append({
            "fingerprint": fp, "tier": tier, "champion": fp in champions,
            "generator": generator, "origin_node": origin, "parents": parents,
            "created_at": vcreated, "wat": wat, "wgsl": wgsl,
            "evidence": evidence.get(fp, {"disambiguated_on": 0, "basis": "fits-examples"}),
            "verdicts": verdicts, "verified_by": [v["node"] for v in verdicts if v["passed"]]})
    # champions first, then newest (the order the node serves them in)
    variants.sort(key=lambda v: not v["champion"])
    tests = [{"id": tid, "args": _jsonable(msgpack.unpackb(a, raw=False)),
              "expected": _jsonable(msgpack.unpackb(e, raw=False)), "origin": origin}
             for tid, a, e, origin in r.execute(
                 "SELECT id, args, expected, origin FROM tests WHERE function = ? ORDER BY rowid",
                 (name,))]
    return {"seq": int(fid), "name": name, "description": description, "aliases": aliases,
            "signature": signature, "tier_family": family, "created_at": created_at,
            "node": node_id, "variants": variants, "tests": tests}


def _computing_variant(rec: dict[str, Any], runtime: Runtime) -> dict[str, Any] | None:
    """The variant the examples are computed with: the first CPU-tier one (scalar or simd),
    else a gpu one when this runtime has the gpu tier."""
    cpu = [v for v in rec["variants"] if v["tier"] != "gpu"]
    if cpu:
        return cpu[0]
    if rec["variants"] and getattr(runtime, "_gpu", None) is not None:
        return rec["variants"][0]
    return None


def _compute(rec: dict[str, Any], runtime: Runtime, library: Library) -> list[dict[str, Any]]:
    chosen = _computing_variant(rec, runtime)
    if chosen is None or not rec["tests"]:
        return []
    variant = library.variant(chosen["fingerprint"])
    if variant is None:  # deleted since the batch was read
        return []
    try:
        sig = Signature.parse(rec["signature"])
        loaded = runtime.load(variant.wasm, name=rec["name"], signature=sig, tier=chosen["tier"])
    except (ColonyError, SignatureError):
        return []
    out = []
    for test in rec["tests"][:COMPUTED]:
        example: dict[str, Any] = {"args": test["args"], "variant": chosen["fingerprint"],
                                   "tier": chosen["tier"], "node": rec["node"]}
        try:
            example["result"] = _jsonable(runtime.call(loaded, tuple(sig.coerce_args(
                test["args"]))))
        except (ColonyError, SignatureError) as exc:  # a trap is a computed fact too
            example["error"] = f"{type(exc).__name__}: {exc}"
        out.append(example)
    return out


def export_records(library: Library, *, since: int = 0, limit: int | None = None,
                   runtime: Runtime | None = None, batch: int = BATCH
                   ) -> Iterator[dict[str, Any]]:
    """Every function this node verified with ``seq > since``, in seq order (blocking: run it
    in a worker thread). With ``runtime``, each record has ``computed`` examples."""
    last, sent = since, 0
    while limit is None or sent < limit:
        with library.read() as r:
            tables = _tables(r)
            rows = r.execute(
                "SELECT f.id, f.name, f.description, f.signature, f.tier_family, f.created_at"
                f" FROM functions f WHERE f.id > ? AND {_VERIFIED} ORDER BY f.id LIMIT ?",
                (last, library.node_id, batch)).fetchall()
            records = [_record(r, tuple(row), library.node_id, tables) for row in rows]
        if not records:
            return
        for rec in records:
            rec["computed"] = [] if runtime is None else _compute(rec, runtime, library)
            yield rec  # values (args, results) are JSON-plain already
            sent += 1
            if limit is not None and sent >= limit:
                return
        last = records[-1]["seq"]


def _call_text(name: str, args: list[Any]) -> str:
    import json

    return f"{name}({', '.join(json.dumps(a) for a in args)})"


def render_worldmodel(rec: dict[str, Any]) -> dict[str, Any] | None:
    """A ``jsonl`` record as one training text: the task, the WAT (WGSL), the computed calls.
    None when nothing was computed (no tests, or no tier this node can run)."""
    import json

    if not rec.get("computed"):
        return None
    fp = rec["computed"][0]["variant"]
    variant = next(v for v in rec["variants"] if v["fingerprint"] == fp)
    lines = ["<task>", rec["description"], f"name: {rec['name']}",
             f"signature: {rec['signature']}", f"tier: {variant['tier']}", "</task>",
             "<wat>", variant["wat"].strip(), "</wat>"]
    if variant.get("wgsl"):
        lines += ["<wgsl>", variant["wgsl"].strip(), "</wgsl>"]
    for ex in rec["computed"]:
        lines.append(f"<call>{_call_text(rec['name'], ex['args'])}</call>")
        if "error" in ex:
            lines.append(f"<computed>trap: {ex['error']}</computed>")
        else:
            lines.append(f"<computed>{json.dumps(ex['result'])}</computed>")
    return {"seq": rec["seq"], "name": rec["name"], "fingerprint": fp, "tier": variant["tier"],
            "verified_by": variant["verified_by"], "text": "\n".join(lines)}


def export_lines(library: Library, *, format: str = "jsonl", since: int = 0,
                 limit: int | None = None, runtime: Runtime | None = None
                 ) -> Generator[str, None, None]:
    """The export as NDJSON lines (each ends in a newline)."""
    import json

    if format not in EXPORT_FORMATS:
        raise RequestError(f"unknown export format {format!r}; use {' or '.join(EXPORT_FORMATS)}")
    for rec in export_records(library, since=since, limit=limit, runtime=runtime):
        out = rec if format == "jsonl" else render_worldmodel(rec)
        if out is not None:
            yield json.dumps(out, ensure_ascii=False, allow_nan=False) + "\n"


def _int_arg(name: str, default: int | None, low: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(f"'{name}' must be an integer, got {raw!r}") from None
    if value < low:
        raise RequestError(f"'{name}' must be at least {low}")
    if value > _MAX_ARG:  # SQLite integers are 64-bit
        raise RequestError(f"'{name}' must be at most {_MAX_ARG}")
    return value


_MAX_ARG = 2**63 - 1


def register_export_routes(app: QuartTrio, node: Node) -> None:
    """``GET /v1/export?format=jsonl|worldmodel&since=SEQ&limit=N`` (NDJSON, streamed)."""

    @app.get("/v1/export")
    async def export() -> Response:
        fmt = request.args.get("format", "jsonl")
        if fmt not in EXPORT_FORMATS:
            raise RequestError(f"unknown export format {fmt!r}; use "
                               f"{' or '.join(EXPORT_FORMATS)}")
        since = _int_arg("since", 0, 0) or 0
        limit = _int_arg("limit", None, 1)
        lines = export_lines(node.library, format=fmt, since=since, limit=limit,
                             runtime=node.runtime)

        def pull() -> str:
            chunk = []
            for line in lines:
                chunk.append(line)
                if len(chunk) >= _LINES_PER_HOP:
                    break
            return "".join(chunk)

        async def body() -> Any:
            try:
                while True:
                    chunk = await trio.to_thread.run_sync(pull)
                    if not chunk:
                        return
                    yield chunk.encode()
            finally:
                lines.close()

        resp = Response(body(), status=200, content_type="application/x-ndjson; charset=utf-8",
                        headers={"Cache-Control": "no-store"})
        resp.timeout = None  # a large library streams for longer than Quart's default 60 s
        return resp


def fetch_export(node_url: str, out: Any, *, format: str = "jsonl", since: int = 0,
                 limit: int | None = None, retries: int = 5, timeout_s: float = 60.0) -> int:
    """``colony export``: stream a node's ``/v1/export`` into ``out`` (a text file), resuming
    after the last complete line when the connection breaks. Returns the lines written."""
    import json

    import httpx

    written, last, failures = 0, since, 0
    while True:
        params: dict[str, Any] = {"format": format, "since": last}
        if limit is not None:
            params["limit"] = limit - written
        try:
            with httpx.stream("GET", node_url.rstrip("/") + "/v1/export", params=params,
                              timeout=timeout_s) as r:
                if r.status_code != 200:
                    r.read()
                    try:
                        detail = r.json().get("detail", r.text)
                    except ValueError:
                        detail = r.text
                    raise RequestError(f"the node answered {r.status_code}: {detail}")
                for line in r.iter_lines():
                    if not line.strip():
                        continue
                    last = int(json.loads(line)["seq"])  # a cut-off line fails here: resume
                    out.write(line + "\n")
                    written += 1
                    failures = 0
            return written
        except (httpx.TransportError, ValueError, KeyError) as exc:
            failures += 1
            if failures > retries:
                raise RequestError(f"export from {node_url} failed after {written} line(s) "
                                   f"(resume with --since {last}): {exc}") from None


def export_library(path: str, out: Any, *, format: str = "jsonl", since: int = 0,
                   limit: int | None = None, node_id: str | None = None) -> int:
    """``colony export --library FILE``: export a library file without a node (it may be in use
    by one: reads take their own snapshots). Verified means verified by ``node_id``, default the
    node whose data directory holds the file (its ``node.key``), else the node with most passing
    verdicts in the file."""
    from pathlib import Path

    from node._config import SandboxLimits
    from node._runtime import Runtime
    from node._store import Library

    file = Path(path)
    if not file.is_file():
        raise RequestError(f"no library file at {path}")
    library = Library.open(file, node_id=node_id or "")
    try:
        if not library.node_id:
            library.node_id = _local_node(library, file)
        runtime = Runtime(SandboxLimits())
        try:
            written = 0
            for line in export_lines(library, format=format, since=since, limit=limit,
                                     runtime=runtime):
                out.write(line)
                written += 1
            return written
        finally:
            runtime.close()
    finally:
        library.close()


def _local_node(library: Library, file: Any) -> str:
    key = file.parent / "node.key"
    if key.is_file():
        from node._identity import load_or_create_identity

        return str(load_or_create_identity(file.parent).node_id)
    with library.read() as r:
        row = r.execute("SELECT node FROM verdicts WHERE passed GROUP BY node"
                        " ORDER BY count(*) DESC LIMIT 1").fetchone()
    return str(row[0]) if row else ""
