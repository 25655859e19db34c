"""The embedded store: one SQLite file in the data directory, WAL mode, one writer.

Every stored record is a trail leaf: ``entries.leaf_index`` is contiguous from 0 and assigned in
the same transaction that inserts the row, together with the source positions that produced the
batch, so a crash can never leave a position ahead of its data (at-least-once in) nor a key
stored twice (exactly-once out: the store refuses a key it already holds).

``append_hooks`` run inside that transaction, after the rows are inserted: the trail keeps its
Merkle nodes there so that the tree and the entries never disagree. The body codec's state follows
the transaction too (a dictionary trained in a rolled-back append is forgotten).

``Store.open(data_dir, readonly=True)`` is for commands that only read (query, verify, proofs…): a
``mode=ro`` connection that runs no migration and sets no pragma, so a store on a read-only volume
or owned by another user can still be searched and verified.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from typing import Any

import msgspec
import orjson
import zstandard

from kubetrail.errors import StoreError, StoreVersionError
from kubetrail.record import AuditMeta, Record, Redaction, SourceRef
from kubetrail.store.codec import BodyCodec
from kubetrail.store.queries import QueryFilters, where_clause
from kubetrail.trail.entry import ENTRY_COLUMNS, encode_entry_v2, leaf_hash

DB_NAME = "kubetrail.db"
MAX_INDEX = (1 << 63) - 1  # SQLite integers are 64-bit signed
SCHEMA_MIGRATIONS_DDL = ("CREATE TABLE IF NOT EXISTS schema_migrations "
                         "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)")

AppendHook = Callable[[sqlite3.Connection, list[Record]], None]


class StoredMeta(msgspec.Struct, omit_defaults=True, array_like=True):
    """The part of a record's metadata that has no column of its own (columns hold the rest)."""

    uid: str = ""
    impersonated_groups: list[str] = []
    api_version: str = ""
    request_received: int | None = None
    stage_time: int | None = None
    lossy: list[str] = []
    redactions: list[Redaction] = []


class AppendResult(msgspec.Struct):
    stored: list[Record]
    duplicates: int

    @property
    def stored_count(self) -> int:
        return len(self.stored)


_meta_encoder = msgspec.json.Encoder()
_meta_decoder = msgspec.json.Decoder(StoredMeta)


def migrations() -> list[tuple[int, str, str]]:
    files = sorted(p.name for p in resources.files("kubetrail.store.migrations").iterdir()
                   if p.name.endswith(".sql"))
    out = []
    for name in files:
        text = resources.files("kubetrail.store.migrations").joinpath(name).read_text()
        out.append((int(name.split("_", 1)[0]), name, text))
    return out


class Store:
    def __init__(self, conn: sqlite3.Connection, data_dir: str, readonly: bool = False) -> None:
        self.connection = conn
        self.data_dir = data_dir
        self.readonly = readonly
        self.append_hooks: list[AppendHook] = []
        self.codec = BodyCodec(conn)
        self._size = conn.execute("SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM entries").fetchone()[0]

    @classmethod
    def open(cls, data_dir: str, create: bool = True, readonly: bool = False) -> Store:
        """Open (and migrate) the store; ``readonly`` opens it without writing anything (see module doc)."""
        path = os.path.join(data_dir, DB_NAME)
        if (readonly or not create) and not os.path.exists(path):
            raise StoreError(f"no kubetrail store in {data_dir} (run `kubetrail ingest` first, or pass --data)")
        conn: sqlite3.Connection | None = None
        try:
            if readonly:
                conn = _connect_readonly(path)
                _check_version(conn, _applied(conn))
            else:
                os.makedirs(data_dir, exist_ok=True)
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
                _wal(conn)
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                _migrate(conn)
            return cls(conn, data_dir, readonly)
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot open the store in {data_dir}: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def has_table(self, name: str) -> bool:
        return has_table(self.connection, name)

    def close(self) -> None:
        self.connection.close()

    # -- writing -------------------------------------------------------------------------------
    def size(self) -> int:
        return int(self._size)

    def append(self, records: Sequence[Record], positions: dict[str, str] | None = None) -> AppendResult:
        """Store the records whose keys are new, in order, and the source positions, atomically."""
        conn = self.connection
        seen: set[str] = set()
        unique: list[Record] = []
        for r in records:
            if r.key not in seen:
                seen.add(r.key)
                unique.append(r)
        codec_state = self.codec.snapshot()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._size = conn.execute("SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM entries").fetchone()[0]
            existing = _existing_keys(conn, [r.key for r in unique])
            fresh = [r for r in unique if r.key not in existing]
            bodies = self.codec.compress_many([r.body for r in fresh])
            rows = []
            for i, r in enumerate(fresh):
                r.leaf_index = self._size + i
                rows.append(_row(r, bodies[i]))
            conn.executemany(_INSERT, rows)
            for hook in self.append_hooks:
                hook(conn, fresh)
            if positions:
                now = time.time_ns()
                conn.executemany(
                    "INSERT INTO source_positions (source, position, updated_ns) VALUES (?, ?, ?) "
                    "ON CONFLICT (source) DO UPDATE SET position = excluded.position, updated_ns = excluded.updated_ns",
                    [(s, p, now) for s, p in positions.items()],
                )
            dups = len(records) - len(fresh)
            _bump(conn, {"stored": len(fresh), "duplicates": dups})
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.codec.restore(codec_state)  # a dictionary trained in this transaction is gone with it
            for r in records:
                r.leaf_index = None
            raise
        self._size += len(fresh)
        return AppendResult(stored=fresh, duplicates=dups)

    def count(self, name: str, n: int) -> None:
        """Add to a named counter outside a batch (e.g. rejects)."""
        with _tx(self.connection):
            _bump(self.connection, {name: n})

    def position(self, source: str) -> str | None:
        row = self.connection.execute("SELECT position FROM source_positions WHERE source = ?", (source,)).fetchone()
        return row[0] if row else None

    # -- reading -------------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return dict(self.connection.execute("SELECT name, value FROM counters").fetchall())

    def query(self, filters: QueryFilters, limit: int | None = None, order: str = "ASC") -> Iterator[Record]:
        where, params = where_clause(filters)
        sql = f"SELECT {_COLUMNS} FROM entries {where} ORDER BY time {order}, leaf_index {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        for row in self.connection.execute(sql, params):
            yield self._record(row)

    def count_matching(self, filters: QueryFilters) -> int:
        where, params = where_clause(filters)
        return int(self.connection.execute(f"SELECT COUNT(*) FROM entries {where}", params).fetchone()[0])

    def get(self, key: str) -> Record | None:
        row = self.connection.execute(f"SELECT {_COLUMNS} FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None and key.isdigit():
            if int(key) > MAX_INDEX:
                raise StoreError(f"leaf index {key} is out of range (at most {MAX_INDEX})")
            row = self.connection.execute(f"SELECT {_COLUMNS} FROM entries WHERE leaf_index = ?",
                                          (int(key),)).fetchone()
        return self._record(row) if row else None

    def records_by_index(self, start: int, end: int) -> Iterator[Record]:
        sql = f"SELECT {_COLUMNS} FROM entries WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index"
        for row in self.connection.execute(sql, (start, end)):
            yield self._record(row)

    def iter_entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes, bytes, bytes | None]]:
        """(leaf_index, entry, leaf_hash, decompressed body or None) in index order, streamed."""
        end = self.size() if end is None else end
        cur = self.connection.execute(
            f"SELECT {ENTRY_SELECT} FROM entries WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
            (start, end))
        for row in cur:
            body = row[3]
            yield row[0], row_entry(row), bytes(row[2]), self.codec.decompress(body) if body is not None else None

    def stats(self) -> dict[str, Any]:
        c = self.connection
        out: dict[str, Any] = {"entries": self.size(), "counters": self.counters()}
        out["bodies_kept"] = c.execute("SELECT COUNT(*) FROM entries WHERE body IS NOT NULL").fetchone()[0]
        span = c.execute("SELECT MIN(time), MAX(time) FROM entries").fetchone()
        out["first_time"], out["last_time"] = span
        for col in ("kind", "source", "format", "verb", "resource", "username"):
            out[f"top_{col}"] = c.execute(
                f"SELECT {col}, COUNT(*) n FROM entries GROUP BY {col} ORDER BY n DESC LIMIT 10").fetchall()
        try:
            out["db_bytes"] = os.path.getsize(os.path.join(self.data_dir, DB_NAME))
        except OSError:
            out["db_bytes"] = None
        return out

    def decompress(self, body: bytes | None) -> bytes | None:
        return self.codec.decompress(body) if body is not None else None

    def _record(self, row: tuple[Any, ...]) -> Record:
        try:
            return self._decode(row)
        except (ValueError, TypeError, msgspec.DecodeError, zstandard.ZstdError) as exc:
            raise StoreError(f"the stored entry {row[0]} cannot be read ({exc}); run `kubetrail verify`") from exc

    def _decode(self, row: tuple[Any, ...]) -> Record:
        (idx, key, t, kind, source, seq, fmt, meta, body, audit_id, stage, level, verb, user, groups, imp,
         resource, subresource, api_group, namespace, name, code, source_ips, user_agent, request_uri, cred) = row
        sm = _meta_decoder.decode(meta)
        am = AuditMeta(
            audit_id=audit_id, stage=stage, level=level, verb=verb, user=user, groups=orjson.loads(groups),
            uid=sm.uid, impersonated_user=imp, impersonated_groups=sm.impersonated_groups, resource=resource,
            subresource=subresource, api_group=api_group, api_version=sm.api_version, namespace=namespace,
            name=name, code=code, source_ips=orjson.loads(source_ips), user_agent=user_agent,
            request_uri=request_uri, credential_id=cred, request_received=sm.request_received,
            stage_time=sm.stage_time, lossy=sm.lossy)
        ref = SourceRef.parse(source)
        return Record(kind=kind, key=key, time=t, source=ref, seq=seq, format=fmt, meta=am,
                      redactions=sm.redactions, body=self.codec.decompress(body) if body is not None else b"",
                      leaf_index=idx)


_COLUMNS = ("leaf_index, key, time, kind, source, seq, format, meta, body, audit_id, stage, level, verb, "
            "username, groups_json, impersonated, resource, subresource, api_group, namespace, name, code, "
            "source_ips, user_agent, request_uri, credential_id")
_INSERT = (f"INSERT INTO entries (leaf_index, {', '.join(ENTRY_COLUMNS)}, entry, leaf_hash, body, body_sha256) "
           f"VALUES ({', '.join('?' * (len(ENTRY_COLUMNS) + 5))})")
ENTRY_SELECT = f"leaf_index, entry, leaf_hash, body, body_sha256, {', '.join(ENTRY_COLUMNS)}"


def _row(r: Record, compressed_body: bytes) -> tuple[Any, ...]:
    """The row, with its v2 entry rebuilt from exactly the values stored (trail/entry.py)."""
    m = r.meta
    cols = (
        r.key, r.time, r.kind, r.source.label(), r.seq, r.format, m.audit_id, m.stage, m.level, m.verb,
        m.user, orjson.dumps(m.groups).decode(), m.impersonated_user, m.resource, m.subresource, m.api_group,
        m.namespace, m.name, m.code, orjson.dumps(m.source_ips).decode(),
        m.source_ips[-1] if m.source_ips else "", m.user_agent, m.request_uri, m.credential_id,
        _meta_encoder.encode(StoredMeta(m.uid, m.impersonated_groups, m.api_version, m.request_received,
                                        m.stage_time, m.lossy, r.redactions)),
    )
    body_hash = hashlib.sha256(r.body).digest()
    entry = encode_entry_v2(cols, body_hash)
    return (r.leaf_index, *cols, b"", leaf_hash(entry), compressed_body, body_hash)


def row_entry(row: Sequence[Any]) -> bytes:
    """The entry bytes of a row selected with ``ENTRY_SELECT``: stored (v1) or rebuilt (v2).

    Raises ValueError when a v2 row cannot be rebuilt (a column of the wrong type).
    """
    entry = bytes(row[1])
    if entry:
        return entry
    body_hash = row[4]
    if not isinstance(body_hash, bytes) or len(body_hash) != 32:
        raise ValueError("body_sha256 is missing or not 32 bytes")
    return encode_entry_v2(row[5:], body_hash)


def _existing_keys(conn: sqlite3.Connection, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        q = f"SELECT key FROM entries WHERE key IN ({','.join('?' * len(chunk))})"
        found.update(k for (k,) in conn.execute(q, chunk))
    return found


def _bump(conn: sqlite3.Connection, deltas: dict[str, int]) -> None:
    conn.executemany(
        "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        [(k, v) for k, v in deltas.items() if v],
    )


class _tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether a table exists (a store opened read-only may predate the migration that adds it)."""
    return conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _connect_readonly(path: str) -> sqlite3.Connection:
    """``mode=ro``; on a read-only directory without a ``-wal`` file SQLite cannot create its shared-memory
    file, and nobody can be writing (no WAL), so the file is opened ``immutable`` instead."""
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.path.exists(path + "-wal") or os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            raise
    conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()
    return conn


def _wal(conn: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """Switch to WAL. The switch takes an exclusive lock and SQLite does not wait for it (no busy
    handler), so processes opening a fresh directory at once retry here."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _applied(conn: sqlite3.Connection) -> set[int]:
    if not has_table(conn, "schema_migrations"):
        return set()
    return {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}


def _check_version(conn: sqlite3.Connection, done: set[int]) -> None:
    newest = max((v for v, _, _ in migrations()), default=0)
    if done and max(done) > newest:
        raise StoreVersionError(f"the store has schema version {max(done)}, newer than this kubetrail ({newest})")


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply missing migrations; what is applied is read again under the write lock, so processes that
    open a fresh data directory at the same time never run a migration twice."""
    known = migrations()
    done = _applied(conn)
    _check_version(conn, done)
    if all(v in done for v, _, _ in known):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(SCHEMA_MIGRATIONS_DDL)
        done = _applied(conn)
        _check_version(conn, done)
        for version, name, sql in known:
            if version in done:
                continue
            try:
                for stmt in _statements(sql):
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name))
            except sqlite3.Error as exc:
                raise StoreError(f"migration {name} failed: {exc}") from exc
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _statements(sql: str) -> list[str]:
    lines = [ln.split("--", 1)[0] for ln in sql.splitlines()]  # migrations keep "--" out of strings
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
