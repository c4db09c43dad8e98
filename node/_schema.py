"""The library's SQLite schema and its migrations.

The schema version is ``PRAGMA user_version``: 0 is an empty file, N means ``MIGRATIONS[:N]`` have
been applied. ``MIGRATIONS[i]`` takes a database from version ``i`` to ``i + 1``; each is an SQL
script or a function of the connection, and runs in its own ``BEGIN IMMEDIATE`` transaction
together with the ``user_version`` bump, so a crash or an error mid-migration leaves the previous
version intact. Never edit a released migration: append a new one.

Rules for new migrations:

* ``PRAGMA foreign_keys`` cannot change inside a transaction; a migration that rebuilds a table
  (create new, copy, drop old, rename) uses ``PRAGMA defer_foreign_keys = ON`` instead.
* Migrations that need an extension (sqlite-vec, issue 5) rely on ``_store._connect`` having
  loaded it on every connection before ``migrate`` runs.

Issue 5 (retrieval, migration 2): ``functions.id`` is an ``INTEGER PRIMARY KEY`` so that the
external-content FTS5 table ``functions_fts`` (kept in sync by triggers on ``functions``;
the unicode61 tokenizer splits names at ``_``, so ``circle_area`` matches "circle") and
``function_vectors`` (embeddings as sqlite-vec float32 blobs plus their sign bits) key on a
rowid that ``VACUUM`` never renumbers. ``search_changes`` numbers every change that moves a
function in or out of the search index, so the in-memory index (node/_search.py) catches up
incrementally; ``behaviours`` holds each variant's behavioural fingerprint. ``name`` stays the
natural key (UNIQUE, the target of every foreign key).

Room left for later issues (planned, not built here):

* Issue 6 (colony): ``log`` numbers the records each origin node produced, Scuttlebutt style.
  Every local write of a synced record (function, variant, test, metric counter) upserts one
  row ``(origin=<local node id>, seq=<next>, kind, key)``; the ``(kind, key, origin)`` index
  keeps only the newest seq per record, so counters that change often do not grow the log.
  ``log_heads`` holds the highest seq issued per origin, so seqs are never reused after a
  delete (holes are fine). A digest is ``SELECT origin, seq FROM log_heads``; a pull is
  ``... WHERE origin = ? AND seq > ? ORDER BY seq LIMIT n``. Deleting a function drops its log
  rows and writes a ``tombstone`` row. Received records will be stored with their origin's seq.
  ``variants.origin_signature`` holds the ed25519 signature; ``variants.status``
  (active | quarantined | retired) is the immune check's and selection's mark: only ``active``
  variants serve. Fitness is derived from verdicts + metrics and needs no column yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import apsw

from node._errors import StoreError

Migration = str | Callable[[apsw.Connection], None]

_V1 = """
CREATE TABLE functions (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    signature   TEXT NOT NULL,
    tier_family TEXT NOT NULL CHECK (tier_family IN ('scalar', 'array')),
    created_at  REAL NOT NULL,
    origin_node TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE variants (
    fingerprint      TEXT PRIMARY KEY,
    function         TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    tier             TEXT NOT NULL CHECK (tier IN ('scalar', 'simd', 'gpu')),
    wasm             BLOB NOT NULL,
    wat              TEXT NOT NULL,
    wgsl             TEXT,
    ir               TEXT,
    generator        TEXT NOT NULL,
    origin_node      TEXT NOT NULL,
    origin_signature BLOB,
    status           TEXT NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'quarantined', 'retired')),
    created_at       REAL NOT NULL
) STRICT;
CREATE INDEX variants_by_function ON variants(function, tier, created_at);

-- No foreign key on parent: a parent may live only on another node.
CREATE TABLE variant_parents (
    child   TEXT NOT NULL REFERENCES variants(fingerprint) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    parent  TEXT NOT NULL,
    PRIMARY KEY (child, ordinal)
) STRICT, WITHOUT ROWID;
CREATE INDEX variant_children ON variant_parents(parent);

-- args and expected are msgpack (floats as float64, so f32 values round-trip exactly).
CREATE TABLE tests (
    id        TEXT PRIMARY KEY,
    function  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    signature TEXT NOT NULL,
    args      BLOB NOT NULL,
    expected  BLOB NOT NULL,
    origin    TEXT NOT NULL
) STRICT;
CREATE INDEX tests_by_function ON tests(function);

-- The latest verdict of each node on each variant.
CREATE TABLE verdicts (
    fingerprint  TEXT NOT NULL REFERENCES variants(fingerprint) ON DELETE CASCADE,
    node         TEXT NOT NULL,
    passed       INTEGER NOT NULL CHECK (passed IN (0, 1)),
    tests_run    INTEGER NOT NULL,
    tests_failed INTEGER NOT NULL,
    failures     BLOB NOT NULL,
    elapsed_ns   INTEGER NOT NULL,
    at           REAL NOT NULL,
    PRIMARY KEY (fingerprint, node)
) STRICT, WITHOUT ROWID;

CREATE TABLE metrics (
    node        TEXT NOT NULL,
    fingerprint TEXT NOT NULL REFERENCES variants(fingerprint) ON DELETE CASCADE,
    calls       INTEGER NOT NULL DEFAULT 0,
    failures    INTEGER NOT NULL DEFAULT 0,
    total_ns    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (node, fingerprint)
) STRICT, WITHOUT ROWID;
CREATE INDEX metrics_by_variant ON metrics(fingerprint);

CREATE TABLE log (
    origin   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('function', 'variant', 'test', 'metric', 'tombstone')),
    key      TEXT NOT NULL,
    function TEXT NOT NULL,
    PRIMARY KEY (origin, seq)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX log_by_key ON log(kind, key, origin);
CREATE INDEX log_by_function ON log(function);

-- The highest seq ever issued per origin: seqs are never reused, even after log rows go.
CREATE TABLE log_heads (
    origin TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
"""

# Version 2 (issue 5, retrieval). Nothing here needs sqlite-vec to be loaded: the vectors are
# plain BLOBs in sqlite-vec's float32 / bit formats (written through its ``vec_f32`` and
# ``vec_quantize_binary`` functions, read back by ``vec_distance_*`` and by the in-memory index),
# so a connection without the extension can still read, check (integrity_check) and delete.
# Not a vec0 virtual table: vec0 cannot cascade from ``functions`` and its brute-force KNN is
# the slow path the in-memory index replaces (see node/_search.py).
_V2 = """
-- Keyword search over name + description; external content, so no text is stored twice.
-- porter: "adds" finds "add"; the trigger set is SQLite's documented external-content recipe.
CREATE VIRTUAL TABLE functions_fts USING fts5(
    name, description, content='functions', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
INSERT INTO functions_fts (rowid, name, description)
    SELECT id, name, description FROM functions;

-- The embedding of "name: description" (all-MiniLM-L6-v2, 384 float32, unit length) and its
-- sign bits (48 bytes) for the coarse Hamming pass. `text` is what was embedded: a row whose
-- text no longer matches its function is stale and gets re-embedded.
CREATE TABLE function_vectors (
    function_id INTEGER PRIMARY KEY REFERENCES functions(id) ON DELETE CASCADE,
    model       TEXT NOT NULL,
    text        TEXT NOT NULL,
    embedding   BLOB NOT NULL,
    bits        BLOB NOT NULL
) STRICT;

-- Every change that can move a function in or out of the search index, numbered, so an
-- in-memory index catches up by reading only the rows after the last seq it applied.
CREATE TABLE search_changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    function_id INTEGER NOT NULL
) STRICT;

CREATE TRIGGER functions_ai AFTER INSERT ON functions BEGIN
    INSERT INTO functions_fts (rowid, name, description)
        VALUES (new.id, new.name, new.description);
    INSERT INTO search_changes (function_id) VALUES (new.id);
END;
CREATE TRIGGER functions_ad AFTER DELETE ON functions BEGIN
    INSERT INTO functions_fts (functions_fts, rowid, name, description)
        VALUES ('delete', old.id, old.name, old.description);
    -- Also without foreign_keys (a bare connection): no vector outlives its function.
    DELETE FROM function_vectors WHERE function_id = old.id;
    INSERT INTO search_changes (function_id) VALUES (old.id);
END;
CREATE TRIGGER functions_au AFTER UPDATE OF name, description, signature ON functions BEGIN
    INSERT INTO functions_fts (functions_fts, rowid, name, description)
        VALUES ('delete', old.id, old.name, old.description);
    INSERT INTO functions_fts (rowid, name, description)
        VALUES (new.id, new.name, new.description);
    INSERT INTO search_changes (function_id) VALUES (old.id);
    INSERT INTO search_changes (function_id) VALUES (new.id);
END;
CREATE TRIGGER function_vectors_ai AFTER INSERT ON function_vectors BEGIN
    INSERT INTO search_changes (function_id) VALUES (new.function_id);
END;
CREATE TRIGGER function_vectors_au AFTER UPDATE ON function_vectors BEGIN
    INSERT INTO search_changes (function_id) VALUES (new.function_id);
END;

-- Behavioural fingerprint of a variant: a hash of its outputs on fixed probe inputs of its
-- signature (node/_search.py: behaviour_fingerprint). Equal hashes under one signature mean
-- "very likely the same function", whatever the names say.
CREATE TABLE behaviours (
    fingerprint TEXT PRIMARY KEY REFERENCES variants(fingerprint) ON DELETE CASCADE,
    signature   TEXT NOT NULL,
    behaviour   TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX behaviours_by_value ON behaviours(signature, behaviour);
"""

# Issue 6 (colony, node/_sync_store.py): received entries that cannot be stored yet (their
# function has not arrived, or a local function of that name has another signature) wait in
# ``sync_pending`` as wire msgpack, still live in the sync log; ``variant_notes`` says why a
# variant is quarantined or retired; ``champions`` is the selected variant per function and
# tier (``serving_variant`` prefers it); ``mutation_queue`` is the selection's mutation
# schedule; ``peer_keys`` remembers the public keys (and URLs) of origins met.
_V3 = """
CREATE TABLE sync_pending (
    origin   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    function TEXT NOT NULL,
    entry    BLOB NOT NULL,
    reason   TEXT NOT NULL,
    PRIMARY KEY (origin, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX sync_pending_by_function ON sync_pending(function);

CREATE TABLE variant_notes (
    fingerprint TEXT PRIMARY KEY REFERENCES variants(fingerprint) ON DELETE CASCADE,
    reason      TEXT NOT NULL,
    at          REAL NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE champions (
    function    TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    tier        TEXT NOT NULL,
    fingerprint TEXT NOT NULL REFERENCES variants(fingerprint) ON DELETE CASCADE,
    fitness     REAL NOT NULL,
    at          REAL NOT NULL,
    PRIMARY KEY (function, tier)
) STRICT, WITHOUT ROWID;
CREATE INDEX champions_by_variant ON champions(fingerprint);

CREATE TABLE mutation_queue (
    fingerprint TEXT PRIMARY KEY REFERENCES variants(fingerprint) ON DELETE CASCADE,
    function    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    at          REAL NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE peer_keys (
    node_id    TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    name       TEXT NOT NULL,
    api_url    TEXT NOT NULL,
    seen_at    REAL NOT NULL
) STRICT, WITHOUT ROWID;
"""

# How much a variant's behaviour is pinned down, beyond its tests: ``disambiguated_on`` is the
# number of distinguishing inputs on which the synthesizer found no plausible competitor (0: the
# variant only fits its tests), ``basis`` says where the claim comes from.
_V4 = """
CREATE TABLE variant_evidence (
    fingerprint      TEXT PRIMARY KEY REFERENCES variants(fingerprint) ON DELETE CASCADE,
    disambiguated_on INTEGER NOT NULL DEFAULT 0,
    basis            TEXT NOT NULL,
    at               REAL NOT NULL
) STRICT, WITHOUT ROWID;
"""

# Received tests that were not applied (node/_sync_store.py): a test that contradicts the
# function's tests or that every verified variant fails is held here, with who sent it (``node``,
# the log origin) and why, until a user accepts or rejects it; ``checking`` ones wait for the
# immune check to run them on the verified variants. ``log`` gains the ``resolution`` kind (a
# user's decision on a held test, synced like any record); SQLite cannot alter a CHECK, so the
# table is rebuilt.
_V5 = """
CREATE TABLE log_v5 (
    origin   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('function', 'variant', 'test', 'metric', 'tombstone',
                                           'resolution')),
    key      TEXT NOT NULL,
    function TEXT NOT NULL,
    PRIMARY KEY (origin, seq)
) STRICT, WITHOUT ROWID;
INSERT INTO log_v5 (origin, seq, kind, key, function)
    SELECT origin, seq, kind, key, function FROM log;
DROP TABLE log;
ALTER TABLE log_v5 RENAME TO log;
CREATE UNIQUE INDEX log_by_key ON log(kind, key, origin);
CREATE INDEX log_by_function ON log(function);

CREATE TABLE test_conflicts (
    id        TEXT PRIMARY KEY,
    function  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    signature TEXT NOT NULL,
    args      BLOB NOT NULL,
    expected  BLOB NOT NULL,
    origin    TEXT NOT NULL,
    node      TEXT NOT NULL,
    reason    TEXT NOT NULL,
    status    TEXT NOT NULL CHECK (status IN ('checking', 'held', 'accepted', 'rejected')),
    at        REAL NOT NULL
) STRICT;
CREATE INDEX test_conflicts_by_function ON test_conflicts(function);
CREATE INDEX test_conflicts_by_node ON test_conflicts(node, status);
"""

# One function, one name: a name a user gave to a function that behaves exactly like an
# existing one becomes an alias of it (looked up like the function's own name).
_V6 = """
CREATE TABLE aliases (
    alias    TEXT PRIMARY KEY,
    function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    at       REAL NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX aliases_by_function ON aliases(function);
"""

#: The ordered migrations; ``MIGRATIONS[i]`` goes from version ``i`` to ``i + 1``.
MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5, _V6)

#: The schema version this code writes.
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: apsw.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: apsw.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database up to ``len(migrations)``; return the version it had before.

    Raises :class:`StoreError` when the file is newer than this code (nothing is touched) or a
    migration fails (that migration is rolled back; earlier ones stay applied).
    """
    target = len(migrations)
    start = user_version(conn)
    _refuse_future(start, target)
    for _ in range(start, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = user_version(conn)
            _refuse_future(version, target)
            if version < target:
                step = migrations[version]
                if isinstance(step, str):
                    # Drain it: apsw runs the statements after a row-returning one only as the
                    # cursor is iterated.
                    for _ in conn.execute(step):
                        pass
                else:
                    step(conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException as exc:
            if not conn.getautocommit():
                conn.execute("ROLLBACK")
            if isinstance(exc, StoreError):
                raise
            if isinstance(exc, Exception):
                raise StoreError(
                    f"library schema migration {user_version(conn) + 1} failed: {exc}"
                ) from exc
            raise
    return start


def _refuse_future(version: int, known: int) -> None:
    if version > known:
        raise StoreError(
            f"the library file has schema version {version}, but this qt45-colony only knows "
            f"versions up to {known}; upgrade qt45-colony or use another data directory",
            schema_version=version,
            known_version=known,
        )
