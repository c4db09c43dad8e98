"""HTTP clients for LLM servers: Ollama's native chat API and OpenAI-compatible chat completions.

Wire formats (what is sent and read):

- Ollama: ``POST {base}/api/chat`` with ``{"model", "messages", "stream": false,
  "options": {"temperature", "num_predict"}}``; the reply's ``message.content``, token counts from
  ``prompt_eval_count`` / ``eval_count``. ``GET {base}/api/tags`` lists models (used by ``auto``).
- OpenAI: ``POST {base}/v1/chat/completions`` with ``{"model", "messages", "temperature",
  "max_tokens"}`` and ``Authorization: Bearer <key>`` when the key's env var is set; the reply's
  ``choices[0].message.content``, tokens from ``usage.prompt_tokens`` / ``usage.completion_tokens``.

Every request has a timeout, and a request in flight is abandoned at once when the caller is
cancelled or its overall deadline passes (the request runs in a helper thread while the caller
polls; the helper's socket is closed, so it ends promptly too). Connection errors, 5xx replies
and malformed bodies become :class:`SynthesisError` (503) with the reason; a request that runs
out of time becomes :class:`SynthesisTimeout` (503, its own problem type), so a slow server is
not mistaken for a missing one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from node._config import LlmSettings
from node._errors import SynthesisError, SynthesisTimeout

__all__ = ["ChatReply", "LlmClient", "Message", "SynthesisTimeout", "detect_api"]

Message = dict[str, str]

#: How often a caller waiting on a request checks cancellation and its deadline (seconds).
_POLL_S = 0.05
#: Seconds the ``auto`` probe of ``/api/tags`` may take.
_PROBE_S = 3.0
#: Ollama's well-known port.
OLLAMA_PORT = 11434


@dataclass(frozen=True)
class ChatReply:
    """One completion: its text, token counts (0 when the server does not say) and duration."""

    content: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


class _Cancelled(Exception):
    pass


def _base(url: str) -> str:
    return url.rstrip("/")


def detect_api(url: str, settings: LlmSettings, *, timeout_s: float = _PROBE_S) -> str:
    """``ollama`` or ``openai`` for ``settings.api == "auto"`` (else the setting itself).

    Rule: a URL path ending in ``/v1`` means OpenAI; port 11434 means Ollama; otherwise Ollama
    when ``GET /api/tags`` answers 200 with a ``models`` list, else OpenAI.
    """
    api = settings.api
    if api in ("ollama", "openai"):
        return api
    if api != "auto":
        raise SynthesisError(f"unknown LLM api {api!r}; use auto, ollama or openai")
    parts = urlsplit(url)
    if parts.path.rstrip("/").endswith("/v1"):
        return "openai"
    if parts.port == OLLAMA_PORT:
        return "ollama"
    try:
        r = httpx.get(_base(url) + "/api/tags", timeout=min(timeout_s, settings.request_timeout_s))
        if r.status_code == 200 and isinstance(r.json().get("models"), list):
            return "ollama"
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    return "openai"


class LlmClient:
    """Chat with one model on one server. Thread-safe (every request has its own connection)."""

    def __init__(self, url: str, model: str, settings: LlmSettings, api: str | None = None) -> None:
        if not url or not model:
            raise SynthesisError("an LLM needs both a URL (--llm) and a model name (--model)")
        self.url = _base(url)
        self.model = model
        self.settings = settings
        self._api = api if api in ("ollama", "openai") else None
        self._lock = threading.Lock()

    @property
    def api(self) -> str:
        """The API flavour, detected on first use when the setting is ``auto``."""
        with self._lock:
            if self._api is None:
                self._api = detect_api(self.url, self.settings)
            return self._api

    def endpoint(self) -> str:
        if self.api == "ollama":
            base = self.url[: -len("/api")] if self.url.endswith("/api") else self.url
            return base + "/api/chat"
        if self.url.endswith("/chat/completions"):
            return self.url
        if self.url.endswith("/v1"):
            return self.url + "/chat/completions"
        return self.url + "/v1/chat/completions"

    def _body(self, messages: list[Message]) -> dict[str, Any]:
        s = self.settings
        if self.api == "ollama":
            return {"model": self.model, "messages": messages, "stream": False,
                    "options": {"temperature": s.temperature, "num_predict": s.max_tokens}}
        return {"model": self.model, "messages": messages, "temperature": s.temperature,
                "max_tokens": s.max_tokens, "stream": False}

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.settings.api_key_env, "") if self.settings.api_key_env else ""
        if key and self.api == "openai":
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def chat(
        self, messages: list[Message], *, deadline: float, cancelled: Callable[[], bool]
    ) -> ChatReply:
        """One request. ``deadline`` is a ``time.monotonic()`` value the whole call must meet."""
        api, url, body, headers = self.api, self.endpoint(), self._body(messages), self._headers()
        budget = min(self.settings.request_timeout_s, deadline - time.monotonic())
        if budget <= 0:
            raise SynthesisTimeout(f"LLM synthesis ran out of time before asking {self.model}")
        started = time.monotonic()
        client = httpx.Client(timeout=httpx.Timeout(budget, connect=min(budget, 10.0)))
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["response"] = client.post(url, json=body, headers=headers)
            except BaseException as exc:  # handed over to the waiting thread
                box["error"] = exc

        worker = threading.Thread(target=run, name="llm-request", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(_POLL_S)
                if cancelled():
                    raise _Cancelled
                if time.monotonic() - started > budget + 1.0:
                    raise httpx.ReadTimeout("no complete reply in time")
        except _Cancelled:
            raise SynthesisError(f"LLM request to {url} was cancelled") from None
        except httpx.TimeoutException:
            raise SynthesisTimeout(
                f"the LLM at {url} did not answer within {budget:.1f} s") from None
        finally:
            client.close()  # also aborts a request still in flight
        seconds = time.monotonic() - started
        if "error" in box:
            exc = box["error"]
            if isinstance(exc, httpx.TimeoutException):
                raise SynthesisTimeout(
                    f"the LLM at {url} did not answer within {budget:.1f} s") from None
            if isinstance(exc, httpx.HTTPError):
                raise SynthesisError(
                    f"cannot reach the LLM at {url}: {type(exc).__name__}: {exc}") from None
            raise SynthesisError(f"LLM request to {url} failed: {exc!r}") from None
        return self._parse(api, url, box["response"], seconds)

    def _parse(self, api: str, url: str, r: httpx.Response, seconds: float) -> ChatReply:
        if r.status_code != 200:
            raise SynthesisError(
                f"the LLM at {url} answered {r.status_code}: {_error_text(r)}",
                upstream_status=r.status_code)
        try:
            doc = r.json()
            if api == "ollama":
                content = doc["message"]["content"]
                pt, ct = doc.get("prompt_eval_count", 0), doc.get("eval_count", 0)
            else:
                content = doc["choices"][0]["message"]["content"]
                usage = doc.get("usage") or {}
                pt, ct = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SynthesisError(
                f"the LLM at {url} sent a reply that is not a {api} chat response "
                f"({type(exc).__name__}: {exc}): {r.text[:200]!r}") from None
        if not isinstance(content, str):
            raise SynthesisError(f"the LLM at {url} sent no text content")
        return ChatReply(content, int(pt or 0), int(ct or 0), seconds)


def _error_text(r: httpx.Response) -> str:
    # Ollama: {"error": "..."}; OpenAI: {"error": {"message": "..."}}; else the raw text.
    try:
        err = r.json().get("error")
        if isinstance(err, dict):
            err = err.get("message")
        if isinstance(err, str) and err:
            return err[:300]
    except (ValueError, AttributeError):
        pass
    return r.text[:300] or r.reason_phrase
