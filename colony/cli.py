"""The ``colony`` command line.

``colony node`` runs one node; ``colony up`` runs several; the rest talk to a node over HTTP
(``--node URL``, default ``$COLONY_NODE`` or http://127.0.0.1:8450).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx

from colony._ask import evidence_line, submit_until_settled

DEFAULT_NODE = "http://127.0.0.1:8450"


class CliError(Exception):
    """A message for the user; the command exits with status 1."""


# ----------------------------------------------------------------------------- HTTP client
class Client:
    def __init__(self, base: str, timeout: float = 120.0, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base, timeout=timeout, headers=headers)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.ConnectError:
            raise CliError(f"cannot reach a node at {self.base}: is one running? "
                           "(start one with `colony node` or `make run`)") from None
        except httpx.TimeoutException:
            raise CliError(f"the node at {self.base} did not answer in time") from None
        if resp.status_code >= 400:
            raise CliError(_problem_text(resp))
        return resp

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    def post(self, path: str, body: Any) -> httpx.Response:
        """POST a JSON body and return the reply as it is, errors included."""
        try:
            return self.http.post(path, json=body)
        except httpx.ConnectError:
            raise CliError(f"cannot reach a node at {self.base}: is one running? "
                           "(start one with `colony node` or `make run`)") from None
        except httpx.TimeoutException:
            raise CliError(f"the node at {self.base} did not answer in time") from None


DEFAULT_TOKEN_FILE = Path(".colony") / "api.token"  # the one `colony up` writes


def api_token(args: argparse.Namespace) -> str | None:
    """The node's API token for writes: ``--token-file``, else ``$COLONY_API_TOKEN``, else the
    token file `colony up` writes (``.colony/api.token``) when it exists."""
    path = getattr(args, "token_file", None)
    if not path:
        env = os.environ.get("COLONY_API_TOKEN")
        if env:
            return env.strip()
        path = DEFAULT_TOKEN_FILE if DEFAULT_TOKEN_FILE.is_file() else None
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise CliError(f"cannot read the API token file {path}: {exc}") from None


def _problem_text(resp: httpx.Response) -> str:
    try:
        doc = resp.json()
        return f"error {doc.get('status', resp.status_code)} ({doc.get('title', '')}): " \
               f"{doc.get('detail', '')}"
    except ValueError:
        return f"error {resp.status_code}: {resp.text[:300]}"


class Ticker:
    """Shows elapsed time on stderr while a long request runs (only on a terminal)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cli-ticker")
        self.enabled = sys.stderr.isatty()

    def _run(self) -> None:
        start = time.monotonic()
        while not self.done.wait(0.5):
            sys.stderr.write(f"\r{self.label} {time.monotonic() - start:4.1f}s")
            sys.stderr.flush()
        sys.stderr.write("\r" + " " * (len(self.label) + 8) + "\r")

    def __enter__(self) -> Ticker:
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.enabled:
            self.thread.join()


# ----------------------------------------------------------------------------- commands
def cmd_node(args: argparse.Namespace) -> None:
    from colony._root import run_node_forever
    from node._config import NodeConfig

    name = args.name or "node"
    data = Path(args.data) if args.data else Path(".colony") / name
    cfg = NodeConfig().with_env()
    from dataclasses import replace

    cfg = replace(cfg, host=args.host, port=args.port, data_dir=data, name=name,
                  llm=args.llm or cfg.llm, model=args.model or cfg.model,
                  peers=tuple(args.peer or cfg.peers), log_level=args.log_level or cfg.log_level)
    # issue 6: colony settings from flags (flags win over COLONY_COLONY_* variables)
    col = cfg.colony
    col = replace(col, key_file=args.colony_key_file or col.key_file,
                  mdns=col.mdns and not args.no_mdns,
                  interfaces=tuple(args.interface or col.interfaces))
    if args.api_token_file:
        if not Path(args.api_token_file).is_file():
            raise CliError(f"API token file {args.api_token_file} not found (`colony up` writes "
                           "one; or: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                           " > FILE)")
        cfg = replace(cfg, api=replace(cfg.api, token_file=args.api_token_file))
    if col.key_file and not Path(col.key_file).is_file():
        raise CliError(f"colony key file {col.key_file} not found (`colony up` writes one; "
                       "or: python -c 'import protocol as p; "
                       "print(p.colony_key_to_text(p.generate_colony_key()))' > FILE)")
    run_node_forever(replace(cfg, colony=col))


def cmd_up(args: argparse.Namespace) -> None:
    """N nodes on this machine sharing a fresh colony key; they meet over mDNS on loopback."""
    from colony._root import stop_on_signals
    from protocol import colony_key_to_text, generate_colony_key

    stop_on_signals()  # SIGTERM too: never leave the nodes behind
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    base = Path(args.data)
    base.mkdir(parents=True, exist_ok=True)
    key_file = base / "colony.key"
    if not key_file.exists():  # one colony per data dir: reuse its key across restarts
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(colony_key_to_text(generate_colony_key()) + "\n")
    token_file = base / "api.token"
    if not token_file.exists():  # like the key: one API token per colony, kept across restarts
        import secrets

        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    for i in range(args.n):
        name = f"node{i + 1}"
        port = args.base_port + i
        cmd = [sys.executable, "-m", "colony", "node", "--host", args.host, "--port", str(port),
               "--data", str(base / name), "--name", name, "--colony-key-file", str(key_file),
               "--interface", args.host, "--api-token-file", str(token_file)]
        if args.log_level:
            cmd += ["--log-level", args.log_level]
        procs.append(subprocess.Popen(cmd, start_new_session=True))
        urls.append(f"http://{args.host}:{port}")
    try:
        _wait_healthy(urls, timeout=60)
        _wait_colony(urls, timeout=30)
        for name_url in urls:
            print(f"node  {name_url}")
        print(f"dashboard  {urls[0]}/")
        print(f"colony key  {key_file}")
        print(f"api token  {token_file}  (writes need it: colony delete --token-file "
              f"{token_file}, or Authorization: Bearer <its content>)")
        print("Ctrl-C stops the colony", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        raise CliError("a node exited; stopping the colony")
    except KeyboardInterrupt:
        print("\nstopping…", file=sys.stderr)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_colony(urls: list[str], timeout: float) -> None:
    """Wait until every node sees every other one as an up peer (mDNS + hello)."""
    deadline = time.monotonic() + timeout
    need = len(urls) - 1
    with Ticker("nodes meeting…"):
        while time.monotonic() < deadline:
            counts = []
            for url in urls:
                try:
                    peers = httpx.get(url + "/v1/colony", timeout=2).json().get("peers", [])
                    counts.append(sum(1 for p in peers if p.get("state") == "up"))
                except (httpx.HTTPError, ValueError):
                    counts.append(0)
            if all(c >= need for c in counts):
                return
            time.sleep(0.3)
    raise CliError(f"the nodes did not all meet in {timeout:.0f}s (mDNS on {urls[0]}?)")


def _wait_healthy(urls: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(urls)
    with Ticker("starting nodes…"):
        while pending and time.monotonic() < deadline:
            for url in list(pending):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        pending.remove(url)
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
    if pending:
        raise CliError(f"nodes did not start in {timeout:.0f}s: {', '.join(pending)}")


def _parse_example(text: str) -> dict[str, Any]:
    """``1,2=3`` or ``[1,2],[3,4]=[4,6]`` → {"args": [...], "result": ...}."""
    if "=" not in text:
        raise CliError(f"example {text!r} must look like ARGS=RESULT, e.g. 1,2=3")
    left, right = text.rsplit("=", 1)
    try:
        return {"args": json.loads(f"[{left}]"), "result": json.loads(right)}
    except json.JSONDecodeError as exc:
        raise CliError(f"example {text!r}: {exc}") from None


def cmd_submit(args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"description": args.description, "signature": args.sig}
    if args.name:
        body["name"] = args.name
    if args.tier:
        body["tier"] = args.tier
    if args.args is not None:
        try:
            body["args"] = json.loads(args.args)
        except json.JSONDecodeError as exc:
            raise CliError(f"--args must be a JSON list: {exc}") from None
    examples = [_parse_example(e) for e in args.example or []]
    if args.examples:
        try:
            examples += json.loads(args.examples)
        except json.JSONDecodeError as exc:
            raise CliError(f"--examples must be JSON: {exc}") from None
    if examples:
        body["examples"] = examples
    if args.no_synthesize:
        body["synthesize"] = False
    if args.on_ambiguity:
        body["on_ambiguity"] = args.on_ambiguity
    client = Client(args.node)
    ask = input if sys.stdin.isatty() and not args.no_ask else (lambda _prompt: "")

    def post(task: dict[str, Any]) -> httpx.Response:
        with Ticker("working…"):
            return client.post("/v1/tasks", task)

    resp = submit_until_settled(post, body, ask=ask, say=lambda m: print(m, file=sys.stderr))
    if resp.status_code >= 400:
        raise CliError(_problem_text(resp))
    out = resp.json()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    fn = out["function"]
    print(f"result: {json.dumps(out['result'])}")
    print(f"function: {fn['name']} {fn['signature']} [{fn['tier']}] {fn['fingerprint'][:19]}… "
          f"{'verified' if fn['verified'] else 'UNVERIFIED'}")
    print(f"source: {out['source']}  llm_calls: {out['llm_calls']}  node: {out['node'][:12]}  "
          f"{out['elapsed_ms']} ms")
    print(evidence_line(out.get("evidence")))


def list_pages(client: Client, limit: int | None = None,
               page_size: int = 500) -> Iterator[list[dict[str, Any]]]:
    """The library's functions page by page (``GET /v1/functions`` with its ``next_cursor``),
    at most ``limit`` in all (None: every function)."""
    cursor: str | None = None
    seen = 0
    while limit is None or seen < limit:
        size = page_size if limit is None else min(page_size, limit - seen)
        params: dict[str, Any] = {"limit": size}
        if cursor:
            params["cursor"] = cursor
        doc = client.json("GET", "/v1/functions", params=params)
        rows: list[dict[str, Any]] = doc["functions"]
        seen += len(rows)
        if rows:
            yield rows
        cursor = doc.get("next_cursor")
        if not cursor:
            return


def cmd_list(args: argparse.Namespace) -> None:
    pages = list_pages(Client(args.node), getattr(args, "limit", None))
    if args.json:
        print(json.dumps([r for page in pages for r in page], indent=2))
        return
    shown = 0
    for rows in pages:  # printed as they come: a 100k library starts printing at once
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['signature']:<28} {r['verified_variants']} "
                  f"verified  {r['description']}")
        shown += len(rows)
    if not shown:
        print("the library is empty: submit a task (colony submit --help)")


def _describe(args: argparse.Namespace, source: bool = False) -> dict[str, Any]:
    q = "?source=1" if source else ""
    out: dict[str, Any] = Client(args.node).json("GET", f"/v1/functions/{args.name}{q}")
    return out


def cmd_info(args: argparse.Namespace) -> None:
    d = _describe(args)
    if args.json:
        print(json.dumps(d, indent=2))
        return
    print(f"{d['name']}: {d['description']}")
    print(f"  signature {d['signature']}  family {d['tier_family']}  tests {len(d['tests'])}")
    for v in d["variants"]:
        verdict = v["verdict"] or {}
        m = v["metrics"]
        mean = m["total_ns"] / m["calls"] if m["calls"] else 0
        print(f"  {v['tier']:<6} {v['fingerprint'][:23]}…  "
              f"{'verified' if v['verified'] else 'not verified'} "
              f"({verdict.get('tests_run', 0) - verdict.get('tests_failed', 0)}/"
              f"{verdict.get('tests_run', 0)} tests)  {v['size']} B  by {v['generator']}  "
              f"calls {m['calls']}  mean {mean / 1000:.1f} µs")
        if v.get("status"):  # issue 6: colony status and fitness (docs/colony.md)
            fit = v.get("fitness") or {}
            print(f"         {v['status']}{' CHAMPION' if v.get('champion') else ''}"
                  f"  fitness {fit.get('fitness', 0):.3f}"
                  + (f"  ({v['status_reason']})" if v.get("status_reason") else ""))
        if v.get("program"):
            print(f"         program: {v['program'].splitlines()[0]}")  # line 2: IR JSON
        for p in v["parents"]:
            print(f"         parent {p[:23]}…")


def _pick_variant(d: dict[str, Any], tier: str | None) -> dict[str, Any]:
    cands = [v for v in d["variants"] if (tier is None or v["tier"] == tier)]
    cands.sort(key=lambda v: (not v["verified"], -v["created_at"]))
    if not cands:
        raise CliError(f"{d['name']} has no {tier or ''} variant".replace("  ", " "))
    return cands[0]


def cmd_source(args: argparse.Namespace) -> None:
    v = _pick_variant(_describe(args, source=True), args.tier)
    print(v["wat"])


def cmd_shader(args: argparse.Namespace) -> None:
    d = _describe(args, source=True)
    v = _pick_variant(d, "gpu")
    if not v.get("wgsl"):
        raise CliError(f"{d['name']} has no GPU variant with a shader")
    print(v["wgsl"])


def cmd_tests(args: argparse.Namespace) -> None:
    d = _describe(args)
    if args.json:
        print(json.dumps(d["tests"], indent=2))
        return
    for t in d["tests"]:
        print(f"{json.dumps(t['args'])} -> {json.dumps(t['expected'])}   ({t['origin']})")
    print(f"{len(d['tests'])} test(s)")


def cmd_status(args: argparse.Namespace) -> None:
    q = "?gpu=1" if args.gpu else ""
    with Ticker("asking the node…"):
        v = Client(args.node).json("GET", f"/v1/colony{q}")
    if args.json:
        print(json.dumps(v, indent=2))
        return
    print(f"node {v['name']} {v['node'][:12]}  {v['url']}  up {v['uptime_s']:.0f}s")
    print(f"  synthesizers: {', '.join(v['synthesizers'])}   synthesis calls: "
          f"{v['synthesis_calls']} ({v['synthesis_failures']} failed)")
    by = v.get("tasks_by_source") or {}
    print("  tasks: " + (", ".join(f"{k} {n}" for k, n in sorted(by.items())) or "none yet"))
    mode = (v.get("colony") or {}).get("detail", "alone")
    print(f"  colony: {mode}")
    for p in v.get("peers") or []:
        print(f"    peer {p.get('name') or '?':<8} {p['url']:<26} {p['state']}")
    quarantined = v.get("quarantined") or []
    if quarantined:
        print(f"  quarantined variants: {v.get('quarantined_count', len(quarantined))}")
    gpu = v.get("gpu") or {}
    if gpu.get("started"):
        kind = "CPU fallback" if gpu.get("cpu_fallback") else gpu.get("device_type", "")
        print(f"  gpu: {gpu.get('adapter')} ({gpu.get('backend')}, {kind}), "
              f"{gpu.get('cached_pipelines', 0)} cached pipelines, "
              f"{gpu.get('live_buffers', 0)} live buffers")
    elif gpu.get("available") is False:
        print(f"  gpu: unavailable ({gpu.get('error', 'no adapter')})")
    else:
        print("  gpu: not started yet (colony status --gpu starts it)")


def cmd_delete(args: argparse.Namespace) -> None:
    Client(args.node, token=api_token(args)).request("DELETE", f"/v1/functions/{args.name}")
    print(f"deleted {args.name}")


def cmd_bench(args: argparse.Namespace) -> None:
    if args.suite:
        from colony._bench import run_suites

        run_suites(args.suite, quick=args.quick, write=args.write,
                   options={"limit": args.limit, "timeout": args.timeout})
        return
    if not args.name:
        raise CliError("usage: colony bench NAME N  (or colony bench --suite runtime|http|all)")
    n = args.n or 1000
    body: dict[str, Any] = {"iterations": n, "size": args.size}
    if args.tier:
        body["tier"] = args.tier
    with Ticker(f"running {args.name} ×{n}…"):
        out = Client(args.node, timeout=600).json("POST", f"/v1/functions/{args.name}/bench",
                                                  json=body)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    fn = out["function"]
    size = f" n={out['size']}" if out["size"] else ""
    print(f"{fn['name']} [{fn['tier']}] ×{out['iterations']}{size}: mean "
          f"{out['mean_ns'] / 1000:.2f} µs  p50 {out['p50_ns'] / 1000:.2f} µs  "
          f"p99 {out['p99_ns'] / 1000:.2f} µs  {out['ns_per_element']:.3f} ns/element")


def cmd_demo(args: argparse.Namespace) -> None:
    from colony._demo import run_demo

    run_demo(args.node)


def cmd_repl(args: argparse.Namespace) -> None:
    from colony._repl import run_repl

    run_repl(args.node)


def cmd_eval(args: argparse.Namespace) -> None:
    from colony._eval import llm_synthesizer, run_eval, to_markdown
    from node._config import SynthLimits
    from node.synth import OfflineSynthesizer

    synths: list[Any] = [OfflineSynthesizer(SynthLimits())]
    if args.llm:
        if not args.model:
            raise CliError("--llm needs --model")
        synths.append(llm_synthesizer(args.llm, args.model))
    res = run_eval(args.tier, args.quick, synths,
                   progress=None if args.json else (lambda s: print(s, file=sys.stderr)))
    print(json.dumps(res, indent=2) if args.json else to_markdown(res))


def cmd_mcp(args: argparse.Namespace) -> None:
    """MCP tools on stdin/stdout, proxied to a node (docs/mcp.md)."""
    from colony._mcp import run_stdio_blocking

    run_stdio_blocking(args.node, token=api_token(args))


def cmd_export(args: argparse.Namespace) -> None:
    """The curriculum export (NDJSON) of a node, or of a library file, to stdout or a file."""
    import contextlib

    from node import ColonyError, export_library, fetch_export

    target = (open(args.output, "w", encoding="utf-8") if args.output  # noqa: SIM115
              else contextlib.nullcontext(sys.stdout))
    try:
        with target as out:
            if args.library:
                n = export_library(args.library, out, format=args.format, since=args.since,
                                   limit=args.limit)
            else:
                n = fetch_export(args.node, out, format=args.format, since=args.since,
                                 limit=args.limit)
    except ColonyError as exc:
        raise CliError(exc.detail) from None
    print(f"exported {n} line(s)", file=sys.stderr)


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="colony",
        description="qt45-colony: a colony of nodes that grows a shared library of verified "
                    "WebAssembly functions. `colony up` starts a local colony; the other "
                    "commands talk to a node (--node URL, default $COLONY_NODE or "
                    f"{DEFAULT_NODE}).")
    sub = p.add_subparsers(dest="command", required=True)
    node_default = os.environ.get("COLONY_NODE", DEFAULT_NODE)

    def with_node(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--node", default=node_default, help=f"node URL (default {node_default})")
        sp.add_argument("--json", action="store_true", help="print the raw JSON reply")
        return sp

    sp = sub.add_parser("node", help="run one node")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8450)
    sp.add_argument("--data", help="data directory (default ./.colony/NAME)")
    sp.add_argument("--name", help="node name (default: node)")
    sp.add_argument("--llm", help="LLM server URL (Ollama or OpenAI-compatible)")
    sp.add_argument("--model", help="LLM model name")
    sp.add_argument("--peer", action="append", help="static peer URL (repeatable)")
    sp.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sp.add_argument("--colony-key-file",
                    help="file with the colony key (hex); without one the node runs alone")
    sp.add_argument("--interface", action="append",
                    help="IPv4 address mDNS may use (repeatable; default: the --host address)")
    sp.add_argument("--no-mdns", action="store_true", help="no mDNS (use --peer seeds)")
    sp.add_argument("--api-token-file",
                    help="file with the API token the tool API's writes need (create, mutate, "
                         "delete, conflict resolution); without one they are open")
    sp.set_defaults(func=cmd_node)

    sp = sub.add_parser("up", help="run N local nodes")
    sp.add_argument("-n", type=int, default=3)
    sp.add_argument("--base-port", type=int, default=8450)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--data", default=".colony", help="parent of the nodes' data directories")
    sp.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sp.set_defaults(func=cmd_up)

    sp = with_node(sub.add_parser("submit", help="submit a task"))
    sp.add_argument("description")
    sp.add_argument("--sig", required=True, help="signature, e.g. '(i32, i32) -> i32'")
    sp.add_argument("--name")
    sp.add_argument("--tier", choices=["scalar", "simd", "gpu"])
    sp.add_argument("--args", help="the call's arguments as a JSON list, e.g. '[10, 20]'")
    sp.add_argument("-e", "--example", action="append",
                    help="example ARGS=RESULT, e.g. 1,2=3 (a negative first value: "
                    "--example=-1,2=1)")
    sp.add_argument("--examples", help="examples as JSON [{\"args\": [...], \"result\": ...}]")
    sp.add_argument("--no-synthesize", action="store_true", help="reuse only, never synthesize")
    sp.add_argument("--on-ambiguity", choices=["ask", "best"],
                    help="when the examples fit several functions: ask (default: show "
                    "distinguishing inputs and ask for their results) or best (a guess, never "
                    "stored)")
    sp.add_argument("--no-ask", action="store_true",
                    help="never prompt: an ambiguous task ends with its distinguishing inputs")
    sp.set_defaults(func=cmd_submit)

    sp = with_node(sub.add_parser("status", help="the node: peers, tasks, synthesis, GPU"))
    sp.add_argument("--gpu", action="store_true", help="start the GPU tier to show its adapter")
    sp.set_defaults(func=cmd_status)
    sp = with_node(sub.add_parser("list", help="list the library's functions"))
    sp.add_argument("--limit", type=int, help="show at most this many (default: all, paged)")
    sp.set_defaults(func=cmd_list)
    for name, func, helptext in (("info", cmd_info, "describe a function"),
                                 ("tests", cmd_tests, "show a function's tests"),
                                 ("delete", cmd_delete, "delete a function")):
        sp = with_node(sub.add_parser(name, help=helptext))
        sp.add_argument("name")
        if func is cmd_delete:
            sp.add_argument("--token-file", help="file with the node's API token (default "
                            f"$COLONY_API_TOKEN, then {DEFAULT_TOKEN_FILE} if it exists)")
        sp.set_defaults(func=func)
    sp = with_node(sub.add_parser("source", help="print a variant's WAT"))
    sp.add_argument("name")
    sp.add_argument("--tier", choices=["scalar", "simd", "gpu"])
    sp.set_defaults(func=cmd_source)
    sp = with_node(sub.add_parser("shader", help="print a GPU variant's WGSL"))
    sp.add_argument("name")
    sp.set_defaults(func=cmd_shader)

    sp = with_node(sub.add_parser("bench", help="time a function (NAME N) or run a suite"))
    sp.add_argument("name", nargs="?")
    sp.add_argument("n", nargs="?", type=int)
    sp.add_argument("--size", type=int, default=1024, help="array length for array functions")
    sp.add_argument("--tier", choices=["scalar", "simd", "gpu"])
    sp.add_argument("--suite", choices=["runtime", "http", "gpu", "search", "colony", "eval",
                                                   "generalization", "sygus", "scale", "learning",
                                                   "all"],
                    help="run a project benchmark suite instead")
    sp.add_argument("--limit", type=int,
                    help="suite option: how many problems to sample (sygus)")
    sp.add_argument("--timeout", type=float,
                    help="suite option: seconds per problem and solver (sygus)")
    sp.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    sp.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    sp.set_defaults(func=cmd_bench)

    sp = with_node(sub.add_parser("demo", help="the demo: add, search, SIMD, GPU; run it twice"))
    sp.set_defaults(func=cmd_demo)
    sp = with_node(sub.add_parser("repl", help="interactive prompt against a node"))
    sp.set_defaults(func=cmd_repl)

    sp = sub.add_parser("mcp", help="serve the tool API as MCP tools on stdio (for agents)")
    sp.add_argument("--node", default=node_default, help=f"node URL (default {node_default})")
    sp.add_argument("--token-file", help="file with the node's API token for writes (default "
                    "$COLONY_API_TOKEN, else .colony/api.token when it exists)")
    sp.set_defaults(func=cmd_mcp)

    sp = with_node(sub.add_parser("export", help="export verified functions as training data"))
    sp.add_argument("--format", choices=["jsonl", "worldmodel"], default="jsonl")
    sp.add_argument("--since", type=int, default=0, metavar="SEQ",
                    help="resume after this sequence number (the last line's seq)")
    sp.add_argument("--limit", type=int, help="at most this many functions")
    sp.add_argument("--library", help="read this library.db file instead of asking a node")
    sp.add_argument("-o", "--output", help="write to this file (default stdout)")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("eval", help="evaluate the synthesizers on the public task set")
    sp.add_argument("--tier", choices=["scalar", "simd", "gpu"])
    sp.add_argument("--llm", metavar="URL", help="also evaluate this LLM server")
    sp.add_argument("--model", help="the LLM's model name")
    sp.add_argument("--quick", action="store_true", help="a small subset")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> NoReturn:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
