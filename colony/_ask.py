"""Interactive disambiguation for ``colony submit`` and the REPL.

When a node answers a task with a 422 ``ambiguous`` problem, the examples fit several programs
that disagree elsewhere. The node names up to three distinguishing inputs with each candidate's
result; the user says what the function should return for each, the answers join the
examples, and the task is sent again — programming-by-example's disambiguation loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

#: The problem type a node answers an ambiguous task with.
AMBIGUOUS = "/ambiguous"
MAX_ROUNDS = 5

Post = Callable[[dict[str, Any]], httpx.Response]
Ask = Callable[[str], str]
Say = Callable[[str], None]


def is_ambiguous(resp: httpx.Response) -> bool:
    if resp.status_code != 422:
        return False
    try:
        doc = resp.json()
    except ValueError:
        return False
    return isinstance(doc, dict) and str(doc.get("type", "")).endswith(AMBIGUOUS)


def submit_until_settled(post: Post, body: dict[str, Any], *, ask: Ask, say: Say,
                         rounds: int = MAX_ROUNDS) -> httpx.Response:
    """Send the task; while the node says it is ambiguous, show the distinguishing inputs, ask
    for the expected result of each and resend with them as examples. Returns the last reply
    (the caller handles errors). An empty answer stops asking and returns the 422."""
    body = dict(body)
    resp = post(body)
    for _ in range(rounds):
        if not is_ambiguous(resp):
            return resp
        doc = resp.json()
        say(f"ambiguous: {doc.get('detail', '')}")
        added = []
        for case in doc.get("distinguishing", []):
            args = case.get("args", [])
            shown = ", ".join(json.dumps(a) for a in args)
            options = " or ".join(json.dumps(r) for r in case.get("results", []))
            answer = ask(f"  {body.get('name') or 'f'}({shown}) = ? (candidates say {options}; "
                         "empty to stop) ").strip()
            if not answer:
                return resp
            try:
                value = json.loads(answer)
            except json.JSONDecodeError:
                say(f"  {answer!r} is not a JSON value; stopping")
                return resp
            added.append({"args": args, "result": value})
        if not added:
            return resp
        body["examples"] = [*body.get("examples", []), *added]
        resp = post(body)
    return resp


def evidence_line(evidence: dict[str, Any] | None) -> str:
    """One line saying how much to trust an answer."""
    if not evidence:
        return "evidence: none"
    basis = evidence.get("basis", "?")
    parts = [f"evidence: {basis}",
             f"{evidence.get('tests_passed', 0)}/{evidence.get('tests_total', 0)} tests",
             f"{evidence.get('from_caller', 0)} yours"]
    if evidence.get("distinguishing_inputs"):
        parts.append(f"unique on {evidence['distinguishing_inputs']} distinguishing inputs")
    verified = evidence.get("verified_by") or []
    parts.append(f"verified by {len(verified)} node{'s' if len(verified) != 1 else ''}")
    if evidence.get("search"):
        parts.append(f"search {evidence['search']}")
    if basis == "guess":
        parts.append("A GUESS: not stored, not shared")
    return ", ".join(parts)
