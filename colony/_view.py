"""``GET /v1/colony`` as a summary, and its per-function details behind paged endpoints.

The service keeps one cached view (fitness per function and tier, quarantined variants, held test
conflicts, the mutation queue, distrusted origins), rebuilt at most once a second. Sent whole, it
grows with the library (3.8 MB at 10k functions), and the dashboard re-reads it every few seconds.
So ``/v1/colony`` carries counts and at most ``HEAD`` items of each list (newest problems are what a
reader looks for first), and the full lists are paged:

- ``GET /v1/colony/fitness?cursor=&limit=&function=``: fitness per function, by name;
- ``GET /v1/colony/quarantined?cursor=&limit=``: quarantined variants, by function and fingerprint;
- ``GET /v1/colony/conflicts?cursor=&limit=``: held test conflicts, in the order they came.

A cursor is the last key of the previous page (opaque to clients); ``next_cursor`` is null on
the last page.
"""

from __future__ import annotations

from typing import Any

from node import RequestError

HEAD = 20  # items of each list kept in the summary
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
LISTS = ("quarantined", "conflicts", "mutation_queue")


def summarize(cache: dict[str, Any]) -> dict[str, Any]:
    """The summary part of ``/v1/colony``: its size depends on peers and origins, not the library."""
    fitness: dict[str, dict[str, Any]] = cache.get("fitness") or {}
    variants = champions = 0
    by_status: dict[str, int] = {}
    for tiers in fitness.values():
        for t in tiers.values():
            champions += t.get("champion") is not None
            for v in (t.get("variants") or {}).values():
                variants += 1
                status = str(v.get("status", "?"))
                by_status[status] = by_status.get(status, 0) + 1
    out: dict[str, Any] = {k: v for k, v in cache.items() if k != "fitness" and k not in LISTS}
    for key in LISTS:
        items = cache.get(key) or []
        out[key] = items[:HEAD]
        out[f"{key}_count"] = len(items)
    out["fitness_summary"] = {"functions": len(fitness), "variants": variants,
                              "champions": champions, "by_status": dict(sorted(by_status.items())),
                              "details": "/v1/colony/fitness"}
    return out


def _limit(raw: str | None) -> int:
    if raw in (None, ""):
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(f"'limit' must be an integer from 1 to {MAX_LIMIT}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise RequestError(f"'limit' must be an integer from 1 to {MAX_LIMIT}")
    return value


def _cursor(raw: str | None) -> str | None:
    if raw in (None, ""):
        return None
    if len(raw) > 400:
        raise RequestError("'cursor' is too long: pass back the next_cursor of a page")
    return raw


def fitness_page(cache: dict[str, Any], cursor: str | None, limit: str | None,
                 function: str | None = None) -> dict[str, Any]:
    fitness: dict[str, dict[str, Any]] = cache.get("fitness") or {}
    if function not in (None, ""):
        return {"fitness": {function: fitness[function]} if function in fitness else {},
                "next_cursor": None}
    n, after = _limit(limit), _cursor(cursor)
    names = sorted(k for k in fitness if after is None or k > after)
    page = names[:n]
    return {"fitness": {k: fitness[k] for k in page},
            "next_cursor": page[-1] if len(names) > n else None}


def list_page(cache: dict[str, Any], key: str, cursor: str | None,
              limit: str | None) -> dict[str, Any]:
    """A page of ``quarantined`` (keyed by function and fingerprint) or ``conflicts`` (by
    position: the list is ordered by arrival)."""
    n, after = _limit(limit), _cursor(cursor)
    items: list[dict[str, Any]] = list(cache.get(key) or [])
    if key == "quarantined":
        keyed = sorted(((f"{q.get('function')}/{q.get('fingerprint')}", q) for q in items),
                       key=lambda kv: kv[0])
    else:
        keyed = [(f"{i:09d}", q) for i, q in enumerate(items)]
    rest = [(k, q) for k, q in keyed if after is None or k > after]
    page = rest[:n]
    return {key: [q for _, q in page],
            "next_cursor": page[-1][0] if len(rest) > n else None}
