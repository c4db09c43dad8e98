"""Search benchmarks (issue 5, item 5): latency at 1k/10k/100k functions, paraphrase hit rate.

``run_all(quick) -> dict`` and ``to_markdown(result) -> str`` (``colony bench --suite search``);
``python bench/search_bench.py [--quick]`` prints the markdown.

Latency: a synthetic library (random names and descriptions from a small vocabulary, spread
over 8 signatures) is written in one transaction per size. Its rows get random unit vectors
(written through sqlite-vec like real ones; embedding 100k texts would take minutes on this CPU),
the queries get real embeddings of paraphrase-set queries. Measured on the same file in the same
run: ``SearchIndex.search`` (keyword + vector + fusion + acceptance, query embedding memoised,
as for a repeated task) and the baseline, sqlite-vec brute-force KNN
(``vec_distance_cosine`` over every row under the signature, ``ORDER BY ... LIMIT``).
The query-embedding cost is reported on its own.

Quality: the paraphrase set (tests/data/paraphrases.json) on a real library file with real
embeddings: paraphrase hits (expected function is the top hit) and near-miss false matches
(any hit for a query whose function is absent, after the ``held_out`` functions are deleted).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from node._embed import DIM, MODEL_NAME, Embedder  # noqa: E402
from node._lexicon import content_words  # noqa: E402
from node._records import FunctionRecord, TestCase, VariantRecord, Verdict  # noqa: E402
from node._search import Hit, SearchIndex, _keyword, fts_query  # noqa: E402
from node._store import Library  # noqa: E402
from protocol import Signature, fingerprint  # noqa: E402

PARAPHRASES = ROOT / "tests" / "data" / "paraphrases.json"
NEAR_MISSES = ROOT / "tests" / "data" / "near_misses.json"
NODE = "bench-node"
SIGNATURES = ("(i32, i32) -> i32", "(i32) -> i32", "(i32) -> i64", "(f64) -> f64",
              "(f64, f64) -> f64", "(f32[], f32[]) -> f32[]", "(f32[]) -> f32",
              "(f32[]) -> f32[]")
_VOCAB_TEXT = (
    "compute transform value signal filter scale offset ratio weight count index range limit "
    "bound clip wrap shift rotate blend mix merge split pack unpack encode decode hash mask "
    "bias gain level phase angle slope curve spline lerp step pulse wave noise grid cell "
    "block tile frame pixel color gamma tone hue alpha depth speed force mass energy charge "
    "flux rate score rank vote cost price tax fee loan yield margin "
)
_VOCAB = _VOCAB_TEXT.split()


def load_set(path: Path = PARAPHRASES) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _module(tag: str) -> bytes:
    """A valid, unique .wasm module (a custom section), enough for records that are not run."""
    body = bytes([len(tag)]) + tag.encode()
    return b"\0asm\x01\0\0\0\x00" + bytes([len(body)]) + body


def save_function(lib: Library, name: str, signature: str, description: str,
                  tier: str | None = None) -> VariantRecord:
    """Save a function with one variant the local node verified (and one test)."""
    sig = Signature.parse(signature)
    wasm = _module(f"{name}:{signature}")
    v = VariantRecord(fingerprint(wasm), name, tier or sig.default_tier, wasm, wat=f";; {name}")
    def one(t: str) -> Any:
        return [1.0] if t == "f32[]" else 1 if t[0] == "i" else 1.0

    args = [one(t) for t in sig.params]
    expected = one(sig.result)
    test = TestCase(name, signature, tuple(args), expected)
    fn = FunctionRecord(name, description, signature, "array" if sig.is_array else "scalar")
    lib.save_synthesized(fn, v, [test], Verdict(v.fingerprint, True, 1, 0, node=lib.node_id))
    return v


def seed(lib: Library, data: dict[str, Any]) -> None:
    for f in data["library"]:
        save_function(lib, f["name"], f["signature"], f["description"])


def evaluate(index: SearchIndex, data: dict[str, Any]) -> dict[str, Any]:
    """Paraphrase hits (the expected function is the top hit and confident), then (after
    deleting ``held_out``) near-miss false matches (any confident hit)."""
    misses = []
    for p in data["paraphrases"]:
        hits = index.search(p["query"], signature=p["signature"], k=3, confident_only=True)
        top = hits[0].name if hits else None
        if top != p["expected"]:
            misses.append({"query": p["query"], "expected": p["expected"], "got": top})
    for name in data["held_out"]:
        index.library.delete_function(name)
    false_matches = []
    for m in data["near_misses"]:
        hits = index.search(m["query"], signature=m["signature"], k=3, confident_only=True)
        if hits:
            false_matches.append({"query": m["query"], "got": [h.name for h in hits]})
    n = len(data["paraphrases"])
    return {"paraphrases": n, "hits": n - len(misses), "hit_rate": (n - len(misses)) / n,
            "misses": misses, "near_misses": len(data["near_misses"]),
            "false_matches": len(false_matches), "false_match_list": false_matches}


def quality(embedder: Embedder, directory: Path) -> dict[str, Any]:
    data = load_set()
    with Library.open(directory / "paraphrases.db", node_id=NODE) as lib:
        seed(lib, data)
        index = SearchIndex(lib, embedder)
        index.backfill()
        return evaluate(index, data)


# ---------------------------------------------------------------------- calibration


def load_calibration(path: Path = NEAR_MISSES) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# Eval tasks added after the calibration sets were written. The near-miss set (hash-locked)
# assumes the function a query means is absent unless it says otherwise ("least common multiple"
# is a near miss of gcd only while no lcm exists), so the calibration library stays the one the
# sets were written against.
LATER_EVAL_TASKS = frozenset({
    "lcm", "smallest_factor", "is_prime_loop", "collatz_steps", "tribonacci", "binomial",
    "modpow", "isqrt", "digit_reverse",
    "prefix_sum", "running_max", "running_min", "reverse", "shift_right", "differences",
    "moving_mean3", "variance", "zscore", "softmax", "clamp_between", "scale_by", "polynomial",
    "argmax", "argmin", "count_pos_i32", "count_above"})


def calibration_library() -> list[dict[str, str]]:
    """tests/data/paraphrases.json's library plus every eval task whose name it lacks (those
    written before the calibration sets: not ``LATER_EVAL_TASKS``)."""
    from colony._eval_tasks import TASKS

    out = list(load_set()["library"])
    taken = {f["name"] for f in out} | LATER_EVAL_TASKS
    out += [{"name": t.name, "signature": t.signature, "description": t.description}
            for t in TASKS if t.name not in taken]
    return out


def _top(hits: list[Hit]) -> dict[str, Any] | None:
    return None if not hits else {"name": hits[0].name, "score": hits[0].score}


def calibration_cases(index: SearchIndex) -> dict[str, Any]:
    """Every calibration query's best hit (name and calibrated score; None without a plausible
    hit) on the calibration library that ``index`` searches: the positives (both paraphrase
    sets, with their acceptable names) and the near misses, each searched with its ``absent``
    functions deleted (and put back afterwards)."""
    lib = index.library
    cal = load_calibration()
    same: dict[str, set[str]] = {}
    for group in cal["equivalent"]:
        for name in group:
            same[name] = set(group)
    positives = []
    for p in [*load_set()["paraphrases"], *cal["paraphrases"]]:
        hits = index.search(p["query"], signature=p["signature"], k=3, confident_only=False)
        positives.append({"query": p["query"], "expected": p["expected"],
                          "accept": sorted(same.get(p["expected"], {p["expected"]})),
                          "top": _top(hits)})
    by_name = {f["name"]: f for f in calibration_library()}
    near = []
    for m in cal["near_misses"]:
        for name in m["absent"]:
            lib.delete_function(name)
        try:
            hits = index.search(m["query"], signature=m["signature"], k=3, confident_only=False)
        finally:
            for name in m["absent"]:
                f = by_name[name]
                save_function(lib, f["name"], f["signature"], f["description"])
            index.backfill()
        near.append({"query": m["query"], "confusable": m["confusable"], "top": _top(hits)})
    return {"positives": positives, "near_misses": near}


def at_threshold(cases: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Answers at a confidence threshold: a query is answered by its best hit if that hit's
    score reaches the threshold (as a node answers a task without examples)."""
    right, wrong, refused = [], [], []
    for p in cases["positives"]:
        top = p["top"]
        if top is None or top["score"] < threshold:
            refused.append(p)
        elif top["name"] in p["accept"]:
            right.append(p)
        else:
            wrong.append(p)
    false = [m for m in cases["near_misses"]
             if m["top"] is not None and m["top"]["score"] >= threshold]
    n = len(cases["positives"])
    return {"threshold": threshold, "positives": n, "right": len(right), "hit_rate": len(right) / n,
            "wrong": len(wrong), "refused": len(refused), "near_misses": len(cases["near_misses"]),
            "false_matches": len(false),
            "wrong_list": [(p["query"], p["top"]["name"]) for p in wrong],
            "refused_list": [p["query"] for p in refused],
            "false_match_list": [(m["query"], m["top"]["name"]) for m in false]}


def calibration(embedder: Embedder | None, directory: Path) -> dict[str, Any]:
    """The calibration cases in keyword-only and (with ``embedder``) semantic mode, evaluated
    at the configured threshold and swept over others."""
    out: dict[str, Any] = {}
    with Library.open(directory / "calibration.db", node_id=NODE) as lib:
        for f in calibration_library():
            save_function(lib, f["name"], f["signature"], f["description"])
        modes: list[tuple[str, Embedder | None]] = [("keyword-only", None)]
        if embedder is not None:
            modes.append(("semantic", embedder))
        for mode, emb in modes:
            index = SearchIndex(lib, emb)
            index.backfill()
            cases = calibration_cases(index)
            th = index.thresholds.confident
            out[mode] = {"chosen": at_threshold(cases, th),
                         "sweep": [at_threshold(cases, t / 20) for t in range(4, 20)],
                         "cases": cases}
    return out


# ---------------------------------------------------------------------- latency


def synthetic_library(path: Path, n: int, seed_: int = 7, *, variants: bool = False) -> Library:
    """``n`` functions with random unit vectors, bulk-inserted in one transaction; with
    ``variants``, each also gets one variant of its default tier that this node verified."""
    rng = random.Random(seed_)
    nrng = np.random.default_rng(seed_)
    lib = Library.open(path, node_id=NODE)
    def fill(w: Any) -> None:
        w.executemany(
            "INSERT INTO functions (id, name, description, signature, tier_family, created_at)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            [(i + 1, f"fn_{i}_{rng.choice(_VOCAB)}",
              " ".join(rng.choice(_VOCAB) for _ in range(6)), sig,
              "array" if "[]" in sig else "scalar")
             for i, sig in ((i, SIGNATURES[i % len(SIGNATURES)]) for i in range(n))],
        )
        vecs = nrng.standard_normal((n, DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        w.executemany(
            "INSERT INTO function_vectors (function_id, model, text, embedding, bits)"
            " SELECT id, ?2, name || ': ' || description, vec_f32(?3),"
            " vec_quantize_binary(vec_f32(?3)) FROM functions WHERE id = ?1",
            [(i + 1, MODEL_NAME, vecs[i].tobytes()) for i in range(n)],
        )
        if variants:
            rows = [(name, sig) for name, sig in w.execute("SELECT name, signature FROM functions")]
            w.executemany(
                "INSERT INTO variants (fingerprint, function, tier, wasm, wat, generator,"
                " origin_node, created_at) VALUES (?, ?, ?, ?, '', 'bench', ?, 0)",
                [(f"sha256:{i:064x}", name, "simd" if "[]" in sig else "scalar",
                  _module(name), NODE) for i, (name, sig) in enumerate(rows)])
            w.executemany(
                "INSERT INTO verdicts (fingerprint, node, passed, tests_run, tests_failed,"
                " failures, elapsed_ns, at) VALUES (?, ?, 1, 1, 0, X'90', 0, 0)",
                [(f"sha256:{i:064x}", NODE) for i in range(len(rows))])

    lib.transaction(fill)  # one transaction on the library's writer thread
    return lib


def _percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_ms": statistics.median(s) * 1e3, "p99_ms": s[min(len(s) - 1,
                                                                 int(len(s) * 0.99))] * 1e3}


def latency(n: int, queries: list[tuple[str, str]], qvecs: np.ndarray, directory: Path,
            reps: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    lib = synthetic_library(directory / f"synthetic-{n}.db", n, variants=True)
    build_s = time.perf_counter() - t0
    try:
        index = SearchIndex(lib, None)
        t0 = time.perf_counter()
        index.search("warm up", vector=qvecs[0])  # first search loads the in-memory index
        load_s = time.perf_counter() - t0
        ours: list[float] = []
        base: list[float] = []
        for _ in range(reps):
            for (query, sig), q in zip(queries, qvecs, strict=True):
                t = time.perf_counter()
                index.search(query, signature=sig, k=5, vector=q)
                ours.append(time.perf_counter() - t)
                blob = q.tobytes()
                t = time.perf_counter()
                with lib.read() as r:
                    r.execute(
                        "SELECT v.function_id, vec_distance_cosine(v.embedding, ?) AS d"
                        " FROM function_vectors v JOIN functions f ON f.id = v.function_id"
                        " WHERE f.signature = ? ORDER BY d LIMIT 5", (blob, sig)).fetchall()
                base.append(time.perf_counter() - t)
        # Queries made of the library's own (common) words, as a task's description often is,
        # with the tier filter a task applies; and the keyword list alone, against ranking
        # every match (the unbounded query the keyword list used before).
        rng = random.Random(n)
        common = [(" ".join(rng.choice(_VOCAB) for _ in range(4)), SIGNATURES[i % 8])
                  for i in range(len(queries))]
        words_: list[float] = []
        bounded: list[float] = []
        unbounded: list[float] = []
        for _ in range(reps):
            for (query, sig), q in zip(common, qvecs, strict=True):
                tier = "simd" if "[]" in sig else "scalar"
                t = time.perf_counter()
                index.search(query, signature=sig, tier=tier, k=5, vector=q)
                words_.append(time.perf_counter() - t)
                terms = content_words(query)
                with lib.read() as r:
                    t = time.perf_counter()
                    _keyword(r, terms, sig, 32)
                    bounded.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    r.execute(
                        "SELECT f.id FROM functions_fts CROSS JOIN functions f"
                        " ON f.id = functions_fts.rowid WHERE functions_fts MATCH ?"
                        " AND f.signature = ? ORDER BY bm25(functions_fts) LIMIT 32",
                        (fts_query(terms), sig)).fetchall()
                    unbounded.append(time.perf_counter() - t)
        return {"functions": n, "build_s": build_s, "index_load_s": load_s,
                "search": _percentiles(ours), "baseline_sqlite_vec": _percentiles(base),
                "search_common_words_tier": _percentiles(words_),
                "keyword_list": _percentiles(bounded),
                "keyword_list_unbounded": _percentiles(unbounded), "samples": len(ours)}
    finally:
        lib.close()


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_probe(backend: str, n: int) -> dict[str, Any]:
    """RSS of this (fresh) process at start, with the model loaded, and after embedding ``n``
    distinct queries one by one (as ``n`` tasks with new descriptions would); the time of a
    full GC pass afterwards and how many objects the load froze. One BLAS/torch thread."""
    import gc

    start = _rss_mb()
    emb = Embedder(backend=backend, threads=1)
    t0 = time.perf_counter()
    if not emb.wait():
        raise SystemExit(f"model unavailable: {emb.failed}")
    load_s = time.perf_counter() - t0
    loaded = _rss_mb()
    queries = [p["query"] for p in load_set()["paraphrases"]]
    t0 = time.perf_counter()
    for i in range(n):
        emb.embed([f"{queries[i % len(queries)]} ({i})"])
    per_query = (time.perf_counter() - t0) / n
    after = _rss_mb()
    t0 = time.perf_counter()
    gc.collect()
    gc_ms = (time.perf_counter() - t0) * 1e3
    return {"backend": backend, "queries": n, "rss_start_mb": start, "rss_loaded_mb": loaded,
            "rss_after_mb": after, "load_s": load_s, "query_ms": per_query * 1e3,
            "full_gc_ms": gc_ms, "frozen_objects": gc.get_freeze_count()}


def memory(quick: bool) -> list[dict[str, Any]]:
    """:func:`memory_probe` per backend, each in a fresh interpreter."""
    import subprocess

    n = 100 if quick else 1000
    out = []
    for backend in ("numpy", "sentence-transformers"):
        proc = subprocess.run([sys.executable, __file__, "--memory", backend, str(n)],
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode == 0:
            out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        else:  # reported, not fatal: the other figures still stand
            out.append({"backend": backend, "queries": n,
                        "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]})
    return out


def agreement(embedder: Embedder) -> dict[str, Any]:
    """Cosine between the numpy backend's and sentence-transformers' vectors of the paraphrase
    set's queries and library texts."""
    data = load_set()
    texts = [p["query"] for p in data["paraphrases"]] + \
        [f"{f['name']}: {f['description']}" for f in data["library"]]
    reference = Embedder(backend="sentence-transformers")
    if not reference.wait():
        return {"texts": len(texts), "error": reference.failed}
    numpy_vecs = embedder.embed(texts) if embedder.backend == "numpy" else \
        Embedder(backend="numpy").embed(texts)
    cos = (numpy_vecs * reference.embed(texts)).sum(axis=1)
    return {"texts": len(texts), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}


def run_all(quick: bool = False) -> dict[str, Any]:
    data = load_set()
    embedder = Embedder()
    t0 = time.perf_counter()
    embedder.wait()
    load_model_s = time.perf_counter() - t0
    queries = [(p["query"], p["signature"]) for p in data["paraphrases"]]
    if quick:
        queries = queries[:10]
    qvecs = embedder.embed([q for q, _ in queries])
    t = []
    for q, _ in queries[:10]:
        t0 = time.perf_counter()
        embedder.embed([q + " "])  # not memoised anywhere: the real model call
        t.append(time.perf_counter() - t0)
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
        out: dict[str, Any] = {
            "vectors": "synthetic rows: random unit vectors; queries: real embeddings",
            "model_load_s": load_model_s,
            "query_embedding_ms": statistics.median(t) * 1e3,
            "quality": quality(embedder, Path(tmp)),
            "calibration": {mode: {k: v for k, v in r.items() if k != "cases"}
                            for mode, r in calibration(embedder, Path(tmp)).items()},
            "agreement": agreement(embedder),
            "memory": memory(quick),
            "latency": [latency(n, queries, qvecs, Path(tmp), 1 if quick else 3)
                        for n in sizes],
        }
    return out


def to_markdown(result: dict[str, Any]) -> str:
    q = result["quality"]
    lines = [
        f"Vectors: {result['vectors']}. Model load {result['model_load_s']:.1f} s; one query "
        f"embedding {result['query_embedding_ms']:.1f} ms (memoised per query text, not in the "
        "latencies below).",
        "",
        "| functions | search p50 | search p99 | sqlite-vec brute force p50 | p99 | "
        "index load |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["latency"]:
        lines.append(
            f"| {r['functions']:,} | {r['search']['p50_ms']:.2f} ms | "
            f"{r['search']['p99_ms']:.2f} ms | {r['baseline_sqlite_vec']['p50_ms']:.2f} ms | "
            f"{r['baseline_sqlite_vec']['p99_ms']:.2f} ms | {r['index_load_s']:.2f} s |")
    lines += ["", "Queries of the library's own (common) words, with the tier filter a task "
              "applies; the keyword list bounded (common terms counted, not ranked) against "
              "ranking every match as before:", "",
              "| functions | search p50 | p99 | keyword list p50 | unbounded keyword list p50 | "
              "ratio |", "|---:|---:|---:|---:|---:|---:|"]
    for r in result["latency"]:
        kb, ku = r["keyword_list"]["p50_ms"], r["keyword_list_unbounded"]["p50_ms"]
        lines.append(
            f"| {r['functions']:,} | {r['search_common_words_tier']['p50_ms']:.2f} ms | "
            f"{r['search_common_words_tier']['p99_ms']:.2f} ms | {kb:.2f} ms | {ku:.2f} ms | "
            f"{ku / kb if kb else float('nan'):.1f}× |")
    lines += [
        "",
        f"Paraphrase set: {q['hits']}/{q['paraphrases']} hits "
        f"({q['hit_rate']:.1%}); near-miss false matches {q['false_matches']}/"
        f"{q['near_misses']}.",
    ]
    for m in q["misses"]:
        lines.append(f"- miss: \"{m['query']}\" → expected {m['expected']}, got {m['got']}")
    for m in q["false_match_list"]:
        lines.append(f"- false match: \"{m['query']}\" → {m['got']}")
    lines += ["", "Calibration of the confidence threshold (a hit answers a task without examples "
              "only at score ≥ threshold): positives = tests/data/paraphrases.json's and "
              "tests/data/near_misses.json's paraphrases (101), near misses = near_misses.json "
              "(59, written before tuning), on the paraphrase library plus the eval tasks "
              "(90 functions). right / wrong = the best hit is confident and is / is not the "
              "expected function; refused = no confident hit.", "",
              "| mode | threshold | right | wrong | refused | near-miss false matches |",
              "|---|---:|---:|---:|---:|---:|"]
    for mode, r in result["calibration"].items():
        rows = [r["chosen"]] + [t for t in r["sweep"] if t["threshold"] in (0.5, 0.8)]
        for t in rows:
            mark = " (chosen)" if t is r["chosen"] else ""
            lines.append(f"| {mode} | {t['threshold']:.2f}{mark} | {t['right']}/{t['positives']}"
                         f" ({t['hit_rate']:.0%}) | {t['wrong']} | {t['refused']} | "
                         f"{t['false_matches']}/{t['near_misses']} |")
    for mode, r in result["calibration"].items():
        for query, name in r["chosen"]["false_match_list"]:
            lines.append(f"- {mode} false match: \"{query}\" → {name}")
        for query, name in r["chosen"]["wrong_list"]:
            lines.append(f"- {mode} wrong answer: \"{query}\" → {name}")
    a = result["agreement"]
    if "min_cosine" in a:
        lines += ["", f"Embedding backends: numpy vs sentence-transformers on {a['texts']} texts: "
                  f"cosine min {a['min_cosine']:.7f}, mean {a['mean_cosine']:.7f}."]
    lines += ["", "Memory per process (a fresh interpreter that has imported the node's modules, "
              "one BLAS/torch thread; RSS in MB):", "",
              "| backend | start | model loaded | after N query embeddings | N | per query | "
              "full GC after | objects frozen |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in result["memory"]:
        if "error" in m:
            lines.append(f"| {m['backend']} | failed: {m['error']} | | | {m['queries']} | | | |")
            continue
        lines.append(f"| {m['backend']} | {m['rss_start_mb']:.0f} | {m['rss_loaded_mb']:.0f} | "
                     f"{m['rss_after_mb']:.0f} | {m['queries']} | {m['query_ms']:.1f} ms | "
                     f"{m['full_gc_ms']:.2f} ms | {m['frozen_objects']:,} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if "--memory" in sys.argv:
        i = sys.argv.index("--memory")
        print(json.dumps(memory_probe(sys.argv[i + 1], int(sys.argv[i + 2]))))
    else:
        print(to_markdown(run_all(quick="--quick" in sys.argv)))
