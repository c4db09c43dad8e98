"""The store side of colony sync: the library's per-origin log as sync entries, and back.

``node/_store.py`` numbers every record the local node writes in ``log`` / ``log_heads``
(origin = this node). This module reads that log as ``protocol`` entries (to serve digests and
pulls), stores records received from peers under *their* origin's seq (``log`` row with the
origin's seq, ``log_heads`` = the highest contiguous seq held, as ``SyncState`` keeps it), and
holds what selection and the immune check need: variant status (active | quarantined |
retired) with a reason, champions, the mutation schedule and the public keys of origins.

Received entries whose function has not arrived yet (or that clash with a local function of the
same name but another signature) wait in ``sync_pending`` as wire msgpack: they stay live in
the sync log (relayed, restored after a restart) and are stored as soon as their function
arrives. Every method is blocking (call it with ``trio.to_thread``) and each write is one
transaction through the Library's single writer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apsw

from node._errors import RequestError
from node._records import Verdict
from node._store import Library, _test_row, _unpack, writes
from protocol import (
    Entry,
    ProtocolError,
    Push,
    Signature,
    SignatureError,
    Span,
    WireFunction,
    WireMetric,
    WireRecord,
    WireResolution,
    WireTest,
    WireVariant,
    decode,
    encode,
    test_case_id,
)

log = logging.getLogger("colony.sync")

STATUSES = ("active", "quarantined", "retired")
#: How the reason of a test held because every verified variant fails it begins.
UNSUPPORTED = "every verified variant"
_VARIANT_COLS = ("fingerprint, function, tier, wasm, wat, wgsl, origin_node, origin_signature, "
                 "generator, ir, created_at")


@dataclass
class StoreResult:
    """What storing received entries changed (the immune check's work list)."""

    #: Functions that got new variants or tests: their variants need a (re-)check.
    functions: set[str] = field(default_factory=set)
    #: Functions that got new tests (their serving variants are re-verified).
    new_tests: set[str] = field(default_factory=set)
    #: Received tests held as conflicts (not applied), by function.
    held: set[str] = field(default_factory=set)
    stored: int = 0
    pending: int = 0


@dataclass(frozen=True)
class VariantState:
    """One variant as the immune check and selection see it."""

    fingerprint: str
    function: str
    tier: str
    origin: str
    size: int
    status: str
    created_at: float
    reason: str | None
    passed: bool | None  # the local verdict; None = not checked yet
    tests_run: int
    elapsed_ns: int
    calls: int  # colony-wide (sum over nodes of each node's counter)
    failures: int
    total_ns: int
    champion: bool


class SyncStore:
    """Sync and selection reads and writes on one node's :class:`Library`."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._distrust_after = 3

    @property
    def node_id(self) -> str:
        return self.library.node_id

    # ------------------------------------------------------------------ the log as entries

    def load(self) -> tuple[list[Entry], dict[str, int]]:
        """Every live entry (stored and pending) and every origin's head, for SyncState.restore."""
        with self.library._read() as r:
            rows: list[Any] = r.execute("SELECT origin, seq, kind, key, function FROM log"
                                        " WHERE kind != 'tombstone' ORDER BY origin, seq"
                                        ).fetchall()
            entries = [e for e in (_entry(r, *row) for row in rows) if e is not None]
            entries += _pending_entries(r)
            heads = {o: int(s) for o, s in r.execute("SELECT origin, seq FROM log_heads")}
        return entries, heads

    def load_meta(self) -> tuple[list[tuple[str, int, str, str]], list[Entry], dict[str, int]]:
        """What ``SyncState.restore`` needs without the bodies: (origin, seq, kind, record key)
        of every stored live entry, the pending entries (small, not in the tables) and every
        origin's head. One query per table, nothing per row."""
        with self.library._read() as r:
            metas = [(str(o), int(q), str(k), str(key).partition(" ")[2] if k == "metric"
                      else str(key))
                     for o, q, k, key in r.execute(
                         "SELECT origin, seq, kind, key FROM log WHERE kind != 'tombstone'")]
            pending = _pending_entries(r)
            heads = {o: int(s) for o, s in r.execute("SELECT origin, seq FROM log_heads")}
        return metas, pending, heads

    def bodies(self, origin: str, seqs: Sequence[int]) -> list[Entry]:
        """The live entries of ``origin`` at ``seqs``, read from the tables (a peer's pull);
        those gone (deleted, or a local variant not signed yet) are left out."""
        out = []
        with self.library._read() as r:
            wanted = [int(q) for q in seqs]
            rows: dict[int, Any] = {}
            for i in range(0, len(wanted), 500):
                part = wanted[i:i + 500]
                rows.update((int(row[1]), row) for row in r.execute(
                    "SELECT origin, seq, kind, key, function FROM log WHERE origin = ? AND seq IN"
                    f" ({','.join('?' * len(part))}) AND kind != 'tombstone'", (origin, *part)))
            for seq in wanted:
                row = rows.get(seq)
                e = _entry(r, *row) if row is not None else None
                if e is None and row is None:
                    blob = r.execute("SELECT entry FROM sync_pending WHERE origin = ? AND"
                                     " seq = ?", (origin, int(seq))).fetchone()
                    e = _decode_entry(bytes(blob[0])) if blob is not None else None
                if e is not None:
                    out.append(e)
        return out

    def local_head(self) -> int:
        """The highest seq the library numbered for this node."""
        with self.library._read() as r:
            row = r.execute("SELECT seq FROM log_heads WHERE origin = ?",
                            (self.node_id,)).fetchone()
        return int(row[0]) if row else 0

    def local_after(self, seq: int) -> tuple[list[Entry], int]:
        """The local node's live entries with a seq above ``seq``, and its head now."""
        with self.library._read() as r:
            row: Any = r.execute("SELECT seq FROM log_heads WHERE origin = ?",
                                 (self.node_id,)).fetchone()
            head = int(row[0]) if row else 0
            rows: list[Any] = r.execute("SELECT origin, seq, kind, key, function FROM log"
                             " WHERE origin = ? AND seq > ? AND seq <= ? AND kind != 'tombstone'"
                             " ORDER BY seq", (self.node_id, seq, head)).fetchall()
            entries = []
            for row in rows:
                if row[2] == "variant" and _exists(
                        r, "SELECT 1 FROM variants WHERE fingerprint = ? AND origin_node = ?"
                        " AND origin_signature IS NULL", row[3], self.node_id):
                    # Not signed yet: stop short of it (the head must not pass over it).
                    head = int(row[1]) - 1
                    break
                e = _entry(r, *row)
                if e is not None:
                    entries.append(e)
        return entries, head

    def needs_for(self, function: str, fingerprint: str) -> list[tuple[str, int]]:
        """The log entries (origin, seq) a peer must hold to have ``function``, the variant
        ``fingerprint`` and the function's tests (answering a find)."""
        with self.library._read() as r:
            return [(o, int(s)) for o, s in r.execute(
                "SELECT origin, seq FROM log WHERE function = ? AND (kind IN ('function', 'test')"
                " OR (kind = 'variant' AND key = ?)) ORDER BY origin, seq",
                (function, fingerprint))]

    @writes
    def sign_unsigned(self, key: Any) -> list[str]:
        """Sign every variant this node originated that has no signature yet (``key`` is the
        node's ``protocol.NodeKey``); returns their fingerprints."""
        with self.library._read() as r:
            rows: list[Any] = r.execute(
                "SELECT v.fingerprint, v.function, f.signature, v.tier FROM variants v"
                " JOIN functions f ON f.name = v.function"
                " WHERE v.origin_node = ? AND v.origin_signature IS NULL", (self.node_id,)
            ).fetchall()
            todo = [(fp, fn, sig, tier, _parents(r, fp)) for fp, fn, sig, tier in rows]
        if not todo:
            return []
        with self.library._write() as w:
            for fp, fn, sig, tier, parents in todo:
                w.execute("UPDATE variants SET origin_signature = ? WHERE fingerprint = ?"
                          " AND origin_signature IS NULL",
                          (key.sign_variant(fp, fn, sig, tier, parents), fp))
        return [t[0] for t in todo]

    # ------------------------------------------------------------------ receiving

    @writes
    def store_entries(self, entries: Sequence[Entry], heads: Mapping[str, int], *,
                      distrust_after: int = 3) -> StoreResult:
        """Store entries adopted from peers (one transaction) and advance the origins' heads.

        Variants are stored ``active`` without a local verdict: they serve only once the immune
        check recorded a passing verdict. Entries that cannot be stored yet go to
        ``sync_pending`` (and are retried here whenever functions or variants arrive).
        """
        res = StoreResult()
        self._distrust_after = distrust_after
        with self.library._write() as w:
            for e in entries:
                self._store_one(w, e, res)
            if res.stored:
                self._retry_pending(w, res)
            for origin, head in heads.items():
                w.execute("INSERT INTO log_heads (origin, seq) VALUES (?, ?) ON CONFLICT (origin)"
                          " DO UPDATE SET seq = max(seq, excluded.seq)", (origin, int(head)))
        return res

    def _retry_pending(self, w: apsw.Connection, res: StoreResult) -> None:
        while True:
            rows: list[Any] = w.execute("SELECT origin, seq, entry FROM sync_pending"
                             " WHERE reason != 'conflict' ORDER BY origin, seq").fetchall()
            before = res.stored
            for origin, seq, blob in rows:
                entry = _decode_entry(blob)
                if entry is None:
                    continue
                w.execute("DELETE FROM sync_pending WHERE origin = ? AND seq = ?", (origin, seq))
                res.pending -= 1
                self._store_one(w, entry, res)
            if res.stored == before:
                return

    def _store_one(self, w: apsw.Connection, e: Entry, res: StoreResult) -> None:
        rec = e.record
        fn_name = rec.name if isinstance(rec, WireFunction) else \
            _function_of_metric(w, rec) if isinstance(rec, WireMetric) else rec.function
        reason = self._why_not(w, rec, fn_name)
        if reason is not None:
            w.execute("INSERT INTO sync_pending (origin, seq, kind, function, entry, reason)"
                      " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (origin, seq) DO NOTHING",
                      (e.origin, e.seq, rec.KIND, fn_name or "", _encode_entry(e), reason))
            res.pending += 1
            return
        assert fn_name is not None
        key = rec.key
        if isinstance(rec, WireFunction):
            if not _exists(w, "SELECT 1 FROM functions WHERE name = ?", rec.name):
                w.execute("INSERT INTO functions (name, description, signature, tier_family,"
                          " created_at, origin_node) VALUES (?, ?, ?, ?, ?, ?)",
                          (rec.name, rec.description, str(Signature.parse(rec.signature)),
                           rec.tier_family, rec.created_at or time.time(), e.origin))
                # a local alias gives way to the colony's function of that name (every node
                # then means the same by it; one that behaves alike is merged again on its
                # check, node/_alike.py)
                w.execute("DELETE FROM aliases WHERE alias = ?", (rec.name,))
        elif isinstance(rec, WireVariant):
            if not _exists(w, "SELECT 1 FROM variants WHERE fingerprint = ?", rec.fingerprint):
                w.execute(
                    f"INSERT INTO variants ({_VARIANT_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (rec.fingerprint, rec.function, rec.tier, rec.wasm, rec.wat, rec.wgsl,
                     rec.origin_node, rec.origin_signature, rec.generator, rec.ir,
                     rec.created_at or time.time()))
                w.executemany("INSERT INTO variant_parents (child, ordinal, parent)"
                              " VALUES (?, ?, ?)",
                              [(rec.fingerprint, i, p) for i, p in enumerate(rec.parents)])
                if rec.disambiguated_on:  # the origin's claim, kept as such
                    w.execute("INSERT OR IGNORE INTO variant_evidence (fingerprint,"
                              " disambiguated_on, basis, at) VALUES (?, ?, 'origin', ?)",
                              (rec.fingerprint, rec.disambiguated_on, time.time()))
                res.functions.add(rec.function)
        elif isinstance(rec, WireTest):
            self._receive_test(w, e.origin, rec, res)
        elif isinstance(rec, WireResolution):
            self._receive_resolution(w, e.origin, rec, res)
        else:
            assert isinstance(rec, WireMetric)
            key = f"{rec.node} {rec.fingerprint}"
            # CRDT counter: per-field maximum, so a copy that arrives twice never counts twice.
            w.execute("INSERT INTO metrics (node, fingerprint, calls, failures, total_ns)"
                      " VALUES (?, ?, ?, ?, ?) ON CONFLICT (node, fingerprint) DO UPDATE SET"
                      " calls = max(calls, excluded.calls),"
                      " failures = max(failures, excluded.failures),"
                      " total_ns = max(total_ns, excluded.total_ns)",
                      (rec.node, rec.fingerprint, rec.calls, rec.failures, rec.total_ns))
        # The origin's later entry for the same record supersedes the earlier one.
        w.execute("DELETE FROM log WHERE origin = ? AND kind = ? AND key = ? AND seq < ?",
                  (e.origin, rec.KIND, key, e.seq))
        w.execute("INSERT OR IGNORE INTO log (origin, seq, kind, key, function)"
                  " VALUES (?, ?, ?, ?, ?)", (e.origin, e.seq, rec.KIND, key, fn_name))
        res.stored += 1

    def _why_not(self, w: apsw.Connection, rec: WireRecord, fn_name: str | None) -> str | None:
        """Why a received record cannot be stored now (None: it can)."""
        if isinstance(rec, WireMetric):
            return None if fn_name is not None else "variant not here yet"
        assert fn_name is not None
        row = w.execute("SELECT signature FROM functions WHERE name = ?", (fn_name,)).fetchone()
        try:
            if isinstance(rec, WireFunction):
                sig = Signature.parse(rec.signature)
                family = "array" if sig.is_array else "scalar"
                if family != rec.tier_family:
                    return "conflict"
                return None if row is None or row[0] == str(sig) else "conflict"
            if row is None:
                return "function not here yet"
            if isinstance(rec, (WireTest, WireResolution)):
                if str(Signature.parse(rec.signature)) != row[0]:
                    return "conflict"
                _test_row(_as_test(rec), rec.function, Signature.parse(row[0]))
            elif isinstance(rec, WireVariant):
                Signature.parse(row[0]).check_tier(rec.tier)
                other = w.execute("SELECT function FROM variants WHERE fingerprint = ?",
                                  (rec.fingerprint,)).fetchone()
                if other is not None and other[0] != rec.function:
                    return "conflict"
        except (SignatureError, RequestError) as exc:
            log.info("received record refused: %s", exc)
            return "conflict"
        return None

    # ------------------------------------------------------------------ received tests

    def _receive_test(self, w: apsw.Connection, sender: str, rec: WireTest,
                      res: StoreResult) -> None:
        """A received test joins the function's tests only once it is known to be sound: one
        that contradicts a test (same args, another expected result), or comes from a
        distrusted origin, is held as a conflict; any other waits (``checking``) for the immune
        check to run it on the verified variants (``apply_checked`` / ``hold``)."""
        if _exists(w, "SELECT 1 FROM tests WHERE id = ?", rec.id) or \
                _exists(w, "SELECT 1 FROM test_conflicts WHERE id = ?", rec.id):
            return  # already applied, held or decided: the decision stands
        row = _test_row(_as_test(rec), rec.function, Signature.parse(rec.signature))
        tid, fn, sig, args, expected, origin = row
        status, reason = "checking", "awaiting the immune check"
        conflicted = self._conflicts_of(w, sender)
        if conflicted >= self._distrust_after:
            status, reason = "held", (f"origin {sender} is distrusted: {conflicted} of its "
                                      "tests conflicted")
        else:
            why = _contradiction(w, fn, args, expected)
            if why is not None:
                status, reason = "held", why
        w.execute("INSERT INTO test_conflicts (id, function, signature, args, expected, origin,"
                  " node, reason, status, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (tid, fn, sig, args, expected, origin, sender, reason, status, time.time()))
        res.functions.add(fn)
        if status == "held":
            res.held.add(fn)
            log.warning("held a test of %s from %s: %s", fn, sender[:12], reason)

    def _receive_resolution(self, w: apsw.Connection, sender: str, rec: WireResolution,
                            res: StoreResult) -> None:
        conflicted = self._conflicts_of(w, sender)
        if conflicted >= self._distrust_after:
            log.warning("ignored a resolution of %s from distrusted origin %s", rec.function,
                        sender[:12])
            return
        row = _test_row(_as_test(rec), rec.function, Signature.parse(rec.signature))
        self._decide(w, row, rec.accept, f"{'accepted' if rec.accept else 'rejected'}"
                     f" by a user of {sender}")
        res.functions.add(rec.function)
        if rec.accept:
            res.new_tests.add(rec.function)

    @staticmethod
    def _decide(w: apsw.Connection, row: tuple[Any, ...], accept: bool, reason: str) -> None:
        # ``node`` (who sent the test) stays as it was; a decision on a test this node never
        # received names no sender (it must not count against the one who resolved it).
        tid, fn, sig, args, expected, origin = row
        if accept:
            # An accepted test replaces the tests it contradicts (same args, another expected
            # result): they stay recorded, as rejected.
            for old in w.execute("SELECT id, function, signature, args, expected, origin FROM"
                                 " tests WHERE function = ? AND args = ? AND id != ?",
                                 (fn, args, tid)).fetchall():
                if old[4] == expected:
                    continue
                w.execute("DELETE FROM tests WHERE id = ?", (old[0],))
                w.execute("INSERT INTO test_conflicts (id, function, signature, args, expected,"
                          " origin, node, reason, status, at) VALUES (?, ?, ?, ?, ?, ?, '', ?,"
                          " 'rejected', ?) ON CONFLICT (id) DO UPDATE SET status = 'rejected',"
                          " reason = excluded.reason, at = excluded.at",
                          (*old, f"replaced by the accepted test {tid}", time.time()))
            w.execute("INSERT INTO tests (id, function, signature, args, expected, origin)"
                      " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING", row)
        w.execute("INSERT INTO test_conflicts (id, function, signature, args, expected, origin,"
                  " node, reason, status, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                  " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
                  " reason = excluded.reason, at = excluded.at",
                  (tid, fn, sig, args, expected, origin, "", reason,
                   "accepted" if accept else "rejected", time.time()))

    @staticmethod
    def _conflicts_of(w: apsw.Connection, sender: str) -> int:
        row = w.execute("SELECT count(*) FROM test_conflicts WHERE node = ? AND status IN"
                        " ('held', 'rejected')", (sender,)).fetchone()
        return int(row[0]) if row else 0

    def checking_tests(self, function: str) -> list[Any]:
        """Received tests of ``function`` waiting for the immune check (not applied yet)."""
        from node._records import TestCase

        with self.library._read() as r:
            return [TestCase(fn, sig, tuple(_unpack(a)), _unpack(x), origin, tid)
                    for tid, fn, sig, a, x, origin in r.execute(
                        "SELECT id, function, signature, args, expected, origin"
                        " FROM test_conflicts WHERE function = ? AND status = 'checking'"
                        " ORDER BY at, id", (function,))]

    @writes
    def apply_checked(self, ids: Sequence[str]) -> int:
        """Checked tests join their function's tests (one transaction)."""
        n = 0
        with self.library._write() as w:
            for tid in ids:
                row = w.execute("SELECT id, function, signature, args, expected, origin"
                                " FROM test_conflicts WHERE id = ? AND status = 'checking'",
                                (tid,)).fetchone()
                if row is None:
                    continue
                if _contradiction(w, row[1], row[3], row[4]) is not None:
                    # Another test that arrived with it got there first: hold this one.
                    w.execute("UPDATE test_conflicts SET status = 'held', reason = ? WHERE"
                              " id = ?", (_contradiction(w, row[1], row[3], row[4]), tid))
                    continue
                w.execute("INSERT INTO tests (id, function, signature, args, expected, origin)"
                          " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING", tuple(row))
                w.execute("DELETE FROM test_conflicts WHERE id = ?", (tid,))
                n += 1
        return n

    @writes
    def reopen_unsupported(self, function: str) -> int:
        """Held tests of ``function`` that were held only because no verified variant passed
        them (not for contradicting a test, nor for their origin) go back to being checked:
        a variant that arrived since may pass them (a correction travels as tests and a
        variant, which may arrive in different rounds). Returns how many."""
        with self.library._write() as w:
            w.execute("UPDATE test_conflicts SET status = 'checking' WHERE function = ?"
                      " AND status = 'held' AND reason LIKE ?", (function, UNSUPPORTED + "%"))
            return int(w.changes())

    @writes
    def hold(self, test_id: str, reason: str) -> None:
        with self.library._write() as w:
            w.execute("UPDATE test_conflicts SET status = 'held', reason = ?, at = ?"
                      " WHERE id = ? AND status = 'checking'", (reason, time.time(), test_id))

    @writes
    def resolve(self, function: str, test_id: str, accept: bool) -> bool:
        """A local user's decision on a held test: accepted, it joins the function's tests;
        rejected, it stays recorded and is never applied. Either way the decision is numbered
        in the local log (kind ``resolution``) and syncs. False when there is no such conflict.
        """
        with self.library._write() as w:
            row = w.execute("SELECT id, function, signature, args, expected, origin FROM"
                            " test_conflicts WHERE id = ? AND function = ?",
                            (test_id, function)).fetchone()
            if row is None:
                return False
            self._decide(w, tuple(row), accept,
                         f"{'accepted' if accept else 'rejected'} by a user of this node")
            self.library._log(w, "resolution", test_id, function)
        return True

    def conflicts(self, function: str | None = None) -> list[dict[str, Any]]:
        """Received tests not applied as they came: held, being checked, or decided."""
        where, params = ("WHERE function = ?", (function,)) if function is not None else ("", ())
        with self.library._read() as r:
            return [{"id": tid, "function": fn, "args": _unpack(a), "expected": _unpack(x),
                     "origin": origin, "node": node, "status": status, "reason": reason,
                     "at": at}
                    for tid, fn, a, x, origin, node, status, reason, at in r.execute(
                        "SELECT id, function, args, expected, origin, node, status, reason, at"
                        f" FROM test_conflicts {where} ORDER BY at, id", params)]

    def distrusted(self, threshold: int) -> dict[str, int]:
        """Origins with at least ``threshold`` conflicting (held or rejected) tests."""
        with self.library._read() as r:
            return {str(n): int(c) for n, c in r.execute(
                "SELECT node, count(*) FROM test_conflicts WHERE status IN ('held', 'rejected')"
                " GROUP BY node HAVING count(*) >= ?", (threshold,))}

    # ------------------------------------------------------------------ immune check

    def variant_states(self, function: str | None = None) -> list[VariantState]:
        """Every variant (of one function, or all) with status, local verdict, merged metrics."""
        where = "WHERE v.function = ?" if function is not None else ""
        params: tuple[Any, ...] = (self.node_id,) + ((function,) if function is not None else ())
        with self.library._read() as r:
            rows: list[Any] = r.execute(
                "SELECT v.fingerprint, v.function, v.tier, v.origin_node, length(v.wasm),"
                " v.status, v.created_at, n.reason, d.passed, d.tests_run, d.elapsed_ns,"
                " (SELECT coalesce(sum(calls), 0) FROM metrics m"
                "   WHERE m.fingerprint = v.fingerprint),"
                " (SELECT coalesce(sum(failures), 0) FROM metrics m"
                "   WHERE m.fingerprint = v.fingerprint),"
                " (SELECT coalesce(sum(total_ns), 0) FROM metrics m"
                "   WHERE m.fingerprint = v.fingerprint),"
                " EXISTS (SELECT 1 FROM champions c WHERE c.fingerprint = v.fingerprint)"
                " FROM variants v LEFT JOIN variant_notes n ON n.fingerprint = v.fingerprint"
                " LEFT JOIN verdicts d ON d.fingerprint = v.fingerprint AND d.node = ?"
                f" {where} ORDER BY v.function, v.created_at", params).fetchall()
        return [VariantState(fp, fn, tier, origin, int(size), status, float(created), reason,
                             None if passed is None else bool(passed), int(run or 0),
                             int(elapsed or 0), int(calls), int(fails), int(total), bool(champ))
                for (fp, fn, tier, origin, size, status, created, reason, passed, run, elapsed,
                     calls, fails, total, champ) in rows]

    def test_counts(self) -> dict[str, int]:
        """Tests per function (one query)."""
        with self.library._read() as r:
            return {str(f): int(n) for f, n in r.execute(
                "SELECT function, count(*) FROM tests GROUP BY function")}

    def selection_stamp(self) -> tuple[Any, ...]:
        """Changes whenever anything selection reads changed (variants, verdicts, statuses,
        tests, counters, champions): a few aggregate reads, no scan of variant bodies."""
        with self.library._read() as r:
            row = r.execute(
                "SELECT (SELECT total(seq) FROM log_heads), (SELECT count(*) FROM verdicts),"
                " (SELECT total(at) FROM verdicts), (SELECT total(at) FROM variant_notes),"
                " (SELECT count(*) FROM variant_notes), (SELECT total(calls) FROM metrics),"
                " (SELECT total(at) FROM champions), (SELECT count(*) FROM tests),"
                " (SELECT count(*) FROM mutation_queue)").fetchone()
        return tuple(row) if row is not None else ()

    @writes
    def judge(self, fingerprint: str, verdict: Verdict | None, status: str,
              reason: str | None) -> bool:
        """Record the immune check's outcome; False when the variant is gone (deleted)."""
        if status not in STATUSES:
            raise RequestError(f"unknown variant status {status!r}")
        with self.library._write() as w:
            if not _exists(w, "SELECT 1 FROM variants WHERE fingerprint = ?", fingerprint):
                return False
            if verdict is not None:
                self.library._upsert_verdict(w, verdict)
            w.execute("UPDATE variants SET status = ? WHERE fingerprint = ?", (status, fingerprint))
            if reason is None:
                w.execute("DELETE FROM variant_notes WHERE fingerprint = ?", (fingerprint,))
            else:
                w.execute("INSERT INTO variant_notes (fingerprint, reason, at) VALUES (?, ?, ?)"
                          " ON CONFLICT (fingerprint) DO UPDATE SET reason = excluded.reason,"
                          " at = excluded.at", (fingerprint, reason, time.time()))
            if status != "active":
                w.execute("DELETE FROM champions WHERE fingerprint = ?", (fingerprint,))
        return True

    # ------------------------------------------------------------------ selection

    @writes
    def set_champion(self, function: str, tier: str, fingerprint: str, fitness: float) -> bool:
        """Name the champion of (function, tier); True when it changed."""
        with self.library._write() as w:
            row = w.execute("SELECT fingerprint FROM champions WHERE function = ? AND tier = ?",
                            (function, tier)).fetchone()
            if row is not None and row[0] == fingerprint:
                return False  # unchanged: no write (a write would flush every serving memo)
            w.execute("INSERT INTO champions (function, tier, fingerprint, fitness, at)"
                      " VALUES (?, ?, ?, ?, ?) ON CONFLICT (function, tier) DO UPDATE SET"
                      " fingerprint = excluded.fingerprint, fitness = excluded.fitness,"
                      " at = CASE WHEN champions.fingerprint = excluded.fingerprint"
                      " THEN champions.at ELSE excluded.at END",
                      (function, tier, fingerprint, float(fitness), time.time()))
            return row is None or row[0] != fingerprint

    @writes
    def schedule_mutation(self, fingerprint: str, function: str, reason: str) -> bool:
        """Put a variant on the mutation schedule; False when it already is (or is gone)."""
        with self.library._write() as w:
            if not _exists(w, "SELECT 1 FROM variants WHERE fingerprint = ?", fingerprint):
                return False
            w.execute("INSERT INTO mutation_queue (fingerprint, function, reason, at)"
                      " VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint) DO NOTHING",
                      (fingerprint, function, reason, time.time()))
            return bool(w.changes())

    @writes
    def take_mutation(self, fingerprint: str) -> None:
        with self.library._write() as w:
            w.execute("DELETE FROM mutation_queue WHERE fingerprint = ?", (fingerprint,))

    def mutation_queue(self) -> list[dict[str, Any]]:
        with self.library._read() as r:
            return [{"fingerprint": fp, "function": fn, "reason": why, "at": at}
                    for fp, fn, why, at in r.execute(
                        "SELECT fingerprint, function, reason, at FROM mutation_queue"
                        " ORDER BY at")]

    def pending_counts(self) -> dict[str, int]:
        with self.library._read() as r:
            return {reason: int(n) for reason, n in r.execute(
                "SELECT reason, count(*) FROM sync_pending GROUP BY reason")}

    # ------------------------------------------------------------------ origins' keys

    @writes
    def save_key(self, node_id: str, public_key: bytes, name: str, api_url: str) -> None:
        with self.library._write() as w:
            w.execute("INSERT INTO peer_keys (node_id, public_key, name, api_url, seen_at)"
                      " VALUES (?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET"
                      " name = excluded.name, api_url = excluded.api_url,"
                      " seen_at = excluded.seen_at",
                      (node_id, public_key, name, api_url, time.time()))

    def keys(self) -> dict[str, tuple[bytes, str, str]]:
        """node id -> (public key, name, api url) of every origin met."""
        with self.library._read() as r:
            return {nid: (bytes(pk), name, url) for nid, pk, name, url in r.execute(
                "SELECT node_id, public_key, name, api_url FROM peer_keys")}


# ---------------------------------------------------------------------- helpers


def _exists(conn: apsw.Connection, sql: str, *params: Any) -> bool:
    return conn.execute(sql, params).fetchone() is not None


def _contradiction(w: apsw.Connection, function: str, args: bytes, expected: bytes
                   ) -> str | None:
    """Why a test (normalised args and expected, as stored) contradicts the function's tests
    or another received test being checked: same args, another expected result."""
    from node._verify import values_match

    want = _unpack(expected)
    for table in ("tests", "test_conflicts"):
        extra = " AND status = 'checking'" if table == "test_conflicts" else ""
        for tid, sig, other in w.execute(f"SELECT id, signature, expected FROM {table}"
                                         f" WHERE function = ? AND args = ?{extra}",
                                         (function, args)):
            got = _unpack(other)
            # Within the verifier's default tolerance two floats are one expectation.
            if bytes(other) != bytes(expected) and not values_match(
                    str(Signature.parse(sig).result), got, want, rel_tol=1e-5, abs_tol=1e-6):
                return (f"contradicts test {tid}: args {_unpack(args)!r} expect {got!r}, this "
                        f"test {want!r}")
    return None


def _function_of_metric(w: apsw.Connection, rec: WireMetric) -> str | None:
    row = w.execute("SELECT function FROM variants WHERE fingerprint = ?",
                    (rec.fingerprint,)).fetchone()
    return None if row is None else str(row[0])


def _as_test(rec: WireTest | WireResolution) -> Any:
    from node._records import TestCase

    return TestCase(rec.function, rec.signature, tuple(rec.args), rec.expected, rec.origin, rec.id)


def _parents(r: apsw.Connection, fp: str) -> tuple[str, ...]:
    return tuple(str(p) for (p,) in r.execute(
        "SELECT parent FROM variant_parents WHERE child = ? ORDER BY ordinal", (fp,)))


def _entry(r: apsw.Connection, origin: str, seq: int, kind: str, key: str,
           function: str) -> Entry | None:
    """Rebuild one log row's record from the tables (None: gone or not sendable)."""
    rec: WireRecord | None = None
    if kind == "function":
        row = r.execute("SELECT name, description, signature, tier_family, created_at"
                        " FROM functions WHERE name = ?", (key,)).fetchone()
        if row is not None:
            rec = WireFunction(row[0], row[1], row[2], row[3], float(row[4]))
    elif kind == "variant":
        row = r.execute(f"SELECT {_VARIANT_COLS} FROM variants WHERE fingerprint = ?",
                        (key,)).fetchone()
        if row is not None:
            fp, fn, tier, wasm, wat, wgsl, onode, osig, gen, ir, created = row
            if origin == onode and osig is None:
                return None  # an unsigned local variant is sent once it is signed
            ev = r.execute("SELECT disambiguated_on FROM variant_evidence WHERE fingerprint = ?"
                           " AND basis = 'disambiguated'", (fp,)).fetchone()
            rec = WireVariant(fp, fn, tier, bytes(wasm), wat, wgsl, _parents(r, fp), onode,
                              None if osig is None else bytes(osig), gen, ir, float(created),
                              int(ev[0]) if ev else 0)
    elif kind == "test":
        row = r.execute("SELECT id, function, signature, args, expected, origin FROM tests"
                        " WHERE id = ?", (key,)).fetchone() or r.execute(
            "SELECT id, function, signature, args, expected, origin FROM test_conflicts"
            " WHERE id = ?", (key,)).fetchone()  # held here, relayed all the same
        if row is not None:
            tid, fn, sig, args, expected, torigin = row
            a, x = tuple(_unpack(args)), _unpack(expected)
            # The stored values are normalised; a test whose id was computed on other
            # spellings cannot be checked by a peer, so it is not sent.
            if test_case_id(fn, sig, list(a), x) == tid:
                rec = WireTest(fn, sig, a, x, torigin, tid)
    elif kind == "resolution":
        row = r.execute("SELECT id, function, signature, args, expected, origin, status"
                        " FROM test_conflicts WHERE id = ? AND status IN ('accepted', 'rejected')",
                        (key,)).fetchone()
        if row is not None:
            tid, fn, sig, args, expected, torigin, status = row
            a, x = tuple(_unpack(args)), _unpack(expected)
            if test_case_id(fn, sig, list(a), x) == tid:
                rec = WireResolution(fn, sig, a, x, torigin, tid, status == "accepted")
    elif kind == "metric":
        node, _, fp = key.partition(" ")
        row = r.execute("SELECT calls, failures, total_ns FROM metrics WHERE node = ?"
                        " AND fingerprint = ?", (node, fp)).fetchone()
        if row is not None and node == origin:
            rec = WireMetric(node, fp, int(row[0]), int(row[1]), int(row[2]))
    if rec is None:
        return None
    return Entry(origin, int(seq), rec)


def _encode_entry(e: Entry) -> bytes:
    # A one-entry Push through the real codec: decoding it re-validates everything.
    return encode(Push(e.origin, (Span(e.origin, e.seq, e.seq, (e,)),)))


def _decode_entry(blob: bytes) -> Entry | None:
    try:
        msg = decode(bytes(blob))
    except ProtocolError:
        return None
    if not isinstance(msg, Push) or not msg.spans or not msg.spans[0].entries:
        return None
    return msg.spans[0].entries[0]


def _pending_entries(r: apsw.Connection) -> list[Entry]:
    out = []
    for (blob,) in r.execute("SELECT entry FROM sync_pending ORDER BY origin, seq"):
        e = _decode_entry(bytes(blob))
        if e is not None:
            out.append(e)
    return out


__all__ = ["STATUSES", "StoreResult", "SyncStore", "VariantState"]
