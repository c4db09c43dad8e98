"""``colony repl``: an interactive prompt against a node.

Syntax (one line each)::

    add(2, 3)                                   run a library function
    vadd([1, 2], [3, 4])                        arrays are JSON lists
    add = adds two integers : (i32, i32) -> i32 with 1,2=3; 5,7=12 on 10,20
                                                a task: [NAME =] description : signature
                                                [with EXAMPLES separated by ';'] [on ARGS]
    .list  .info NAME  .source NAME  .shader NAME  .tests NAME  .bench NAME [N]
    .delete NAME  .help  .quit

History is kept in ``~/.colony_history`` (readline, when available).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from colony._ask import evidence_line, submit_until_settled
from colony._client import Client, CliError, parse_example, problem_text
from colony._commands import (
    cmd_bench,
    cmd_delete,
    cmd_info,
    cmd_list,
    cmd_shader,
    cmd_source,
    cmd_tests,
)

HISTORY = Path.home() / ".colony_history"
CALL_RE = re.compile(r"^([a-z_][a-z0-9_]*)\s*\((.*)\)\s*$", re.S)
TASK_RE = re.compile(r"^(?:(?P<name>[a-z_][a-z0-9_]*)\s*=\s*)?(?P<desc>.+?)\s+:\s+"
                     r"(?P<sig>\(.*?\)\s*->\s*\S+)"
                     r"(?:\s+with\s+(?P<ex>.+?))?(?:\s+on\s+(?P<args>.+))?$")


def _namespace(node: str, **kw: Any) -> argparse.Namespace:
    return argparse.Namespace(node=node, json=False, tier=None, size=1024, suite=None,
                              quick=False, write=False, **kw)


class Repl:
    def __init__(self, node: str, out: Callable[[str], None] = print,
                 ask: Callable[[str], str] = input) -> None:
        self.node = node
        self.client = Client(node)
        self.out = out
        self.ask = ask  # answers the distinguishing inputs of an ambiguous task

    def handle(self, line: str) -> bool:
        """Run one line; False means quit."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        try:
            if line.startswith("."):
                return self._dot(line)
            m = CALL_RE.match(line)
            if m:
                self._call(m.group(1), m.group(2))
                return True
            m = TASK_RE.match(line)
            if m:
                self._task(m)
                return True
            self.out("not understood; .help shows the syntax")
        except CliError as exc:
            self.out(str(exc))
        return True

    def _dot(self, line: str) -> bool:
        cmd, *rest = line.split()
        name = rest[0] if rest else None
        needs_name = {".info": cmd_info, ".source": cmd_source, ".shader": cmd_shader,
                      ".tests": cmd_tests, ".delete": cmd_delete}
        if cmd in (".quit", ".exit"):
            return False
        if cmd == ".help":
            self.out(__doc__ or "")
        elif cmd == ".list":
            cmd_list(_namespace(self.node))
        elif cmd in needs_name:
            if not name:
                raise CliError(f"usage: {cmd} NAME")
            needs_name[cmd](_namespace(self.node, name=name))
        elif cmd == ".bench":
            if not name:
                raise CliError("usage: .bench NAME [N]")
            n = int(rest[1]) if len(rest) > 1 and rest[1].isdigit() else 1000
            cmd_bench(_namespace(self.node, name=name, n=n))
        else:
            self.out(f"unknown command {cmd}; .help lists them")
        return True

    def _call(self, name: str, args_text: str) -> None:
        try:
            args = json.loads(f"[{args_text}]")
        except json.JSONDecodeError as exc:
            raise CliError(f"arguments are not valid JSON: {exc}") from None
        out = self.client.json("POST", f"/v1/functions/{name}/run", json={"args": args})
        self.out(json.dumps(out["result"]))

    def _task(self, m: re.Match[str]) -> None:
        body: dict[str, Any] = {"description": m.group("desc"), "signature": m.group("sig")}
        if m.group("name"):
            body["name"] = m.group("name")
        if m.group("ex"):
            body["examples"] = [parse_example(e.strip()) for e in m.group("ex").split(";")
                                if e.strip()]
        if m.group("args"):
            try:
                body["args"] = json.loads(f"[{m.group('args')}]")
            except json.JSONDecodeError as exc:
                raise CliError(f"'on' arguments are not valid JSON: {exc}") from None
        resp = submit_until_settled(lambda task: self.client.post("/v1/tasks", task), body,
                                    ask=self.ask, say=self.out)
        if resp.status_code >= 400:
            raise CliError(problem_text(resp))
        out = resp.json()
        fn = out["function"]
        self.out(f"{json.dumps(out['result'])}    ({fn['name']} {fn['signature']} [{fn['tier']}],"
                 f" {out['source']}, {out['elapsed_ms']} ms)")
        self.out(f"    {evidence_line(out.get('evidence'))}")


def run_repl(node: str) -> None:
    try:
        import readline

        if HISTORY.exists():
            readline.read_history_file(HISTORY)
        readline.set_history_length(1000)
    except (ImportError, OSError):
        readline = None  # type: ignore[assignment]
    repl = Repl(node)
    print(f"colony repl on {node}; .help for help, .quit to leave")
    try:
        while True:
            try:
                line = input("colony> ")
            except EOFError:
                break
            if not repl.handle(line):
                break
    except KeyboardInterrupt:
        print()
    finally:
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(HISTORY)
