"""The command line's HTTP client of a node: requests, problem documents as messages, the API
token, a progress ticker, examples written ``ARGS=RESULT``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

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
            raise CliError(problem_text(resp))
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


def problem_text(resp: httpx.Response) -> str:
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


def parse_example(text: str) -> dict[str, Any]:
    """``1,2=3`` or ``[1,2],[3,4]=[4,6]`` → {"args": [...], "result": ...}."""
    if "=" not in text:
        raise CliError(f"example {text!r} must look like ARGS=RESULT, e.g. 1,2=3")
    left, right = text.rsplit("=", 1)
    try:
        return {"args": json.loads(f"[{left}]"), "result": json.loads(right)}
    except json.JSONDecodeError as exc:
        raise CliError(f"example {text!r}: {exc}") from None


