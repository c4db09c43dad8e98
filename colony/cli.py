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
import time
from pathlib import Path
from typing import Any, NoReturn

import httpx

from colony._ask import evidence_line, submit_until_settled
from colony._client import (
    DEFAULT_NODE,
    DEFAULT_TOKEN_FILE,
    Client,
    CliError,
    Ticker,
    api_token,
    parse_example,
    problem_text,
)
from colony._commands import (
    cmd_bench,
    cmd_delete,
    cmd_info,
    cmd_list,
    cmd_shader,
    cmd_source,
    cmd_tests,
)


# ----------------------------------------------------------------------------- commands
def cmd_node(args: argparse.Namespace) -> None:
    from colony._root import run_node_forever
    from node import NodeConfig

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
        search_ready = False
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
            if not search_ready and _search_modes(urls) == {"semantic"}:
                search_ready = True  # paraphrases find functions from now on
                print("search ready on every node (semantic)", flush=True)
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


def _search_modes(urls: list[str]) -> set[str]:
    """Each node's search mode from ``/health`` (``keyword-only`` while the embedding model
    loads, then ``semantic``); ``unknown`` for a node that does not answer."""
    modes = set()
    for url in urls:
        try:
            modes.add(str(httpx.get(f"{url}/health", timeout=2).json().get("search")))
        except (httpx.HTTPError, ValueError):
            modes.add("unknown")
    return modes


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
    examples = [parse_example(e) for e in args.example or []]
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
    if args.grammar:
        body["grammar"] = args.grammar.replace(",", " ").split()
    client = Client(args.node)
    ask = input if sys.stdin.isatty() and not args.no_ask else (lambda _prompt: "")

    def post(task: dict[str, Any]) -> httpx.Response:
        with Ticker("working…"):
            return client.post("/v1/tasks", task)

    resp = submit_until_settled(post, body, ask=ask, say=lambda m: print(m, file=sys.stderr))
    if resp.status_code >= 400:
        raise CliError(problem_text(resp))
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


def cmd_demo(args: argparse.Namespace) -> None:
    from colony._demo import run_demo

    run_demo(args.node)


def cmd_repl(args: argparse.Namespace) -> None:
    from colony._repl import run_repl

    run_repl(args.node)


def cmd_eval(args: argparse.Namespace) -> None:
    from colony._eval import llm_synthesizer, run_eval, to_markdown
    from node import SynthLimits
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
    sp.add_argument("--grammar",
                    help="integer tasks: the operations the program may use, e.g. "
                    "'0 1 not shl1 shr1 shr4 shr16 and or xor add if1' (docs/api.md)")
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
                                                   "evolution", "all"],
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
