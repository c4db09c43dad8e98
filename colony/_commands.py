"""The library commands shared by ``colony`` and its REPL: list, info, source, shader, tests,
delete, bench."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from colony._client import Client, CliError, Ticker, api_token


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


