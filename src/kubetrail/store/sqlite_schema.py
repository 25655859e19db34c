"""SQLite connections and schema: numbered migrations (``store/migrations/*.sql``), WAL, read-only opens."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import urllib.parse
from collections.abc import Callable
from importlib import resources

from kubetrail.errors import StoreError, StoreVersionError
from kubetrail.store import heads

SCHEMA_MIGRATIONS_DDL = ("CREATE TABLE IF NOT EXISTS schema_migrations "
                         "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)")

# Python's sqlite3 binds an int, float, str or bytearray parameter as it is, but sends bytes and None
# through its adapter protocol first: with no adapter registered it asks the value's type for
# ``__adapt__`` and ``__conform__``, and each failed lookup raises (and formats) an AttributeError that
# is then cleared — ~0.2 µs per value; a stored event binds 7 of them in one process (hashes, meta,
# body, a NULL code…) and 14 in a writer with preparation workers (issue 18, found with callgrind:
# −10k instructions per event in one process). An adapter registered for the exact type is found in
# the module's dict at once and hands the value back unchanged, as the protocol did
# (``bytes.__bytes__(b) is b``, ``{}.get(None) is None``), with no Python frame; ``bytes.__bytes__``, a
# no-argument method, is cheaper to call than the ``bytes`` type. Process-wide, like every sqlite3
# adapter; one for bytes or None does not switch the module to adapting int, float or str (only
# registering one of those base types does).
sqlite3.register_adapter(bytes, bytes.__bytes__)
sqlite3.register_adapter(type(None), {}.get)


def migrations() -> list[tuple[int, str, str]]:
    files = sorted(p.name for p in resources.files("kubetrail.store.migrations").iterdir()
                   if p.name.endswith(".sql"))
    out = []
    for name in files:
        text = resources.files("kubetrail.store.migrations").joinpath(name).read_text()
        out.append((int(name.split("_", 1)[0]), name, text))
    return out


def statements(sql: str) -> list[str]:
    lines = [ln.split("--", 1)[0] for ln in sql.splitlines()]  # migrations keep "--" out of strings
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether a table exists (a store opened read-only may predate the migration that adds it)."""
    return conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


# The writer's page cache (SQLite's default is 2 MiB): the entries table's indexes and the credential
# tables take random inserts, and with 2 MiB each one went to the OS for its pages (bench/RESULTS.md).
CACHE_KIB = 64 * 1024


def set_cache_kib(kib: int) -> int:
    """The page cache of the connections opened from now on in this process (returns the one it
    replaced). The detection/credentials process (kubetrail/consumer_process.py) takes less: it writes
    only the consumers' tables and reads back only the records its reorder buffers let go of, and it
    must stay small beside the writer; so does a writer that hosts them beside preparation workers."""
    global CACHE_KIB
    before = CACHE_KIB
    CACHE_KIB = max(1, int(kib))
    return before


# Pages the WAL may hold before a commit copies them into the database (SQLite's default: 1000). A batch
# dirties index pages all over the random indexes (key, auditID); the same pages are dirtied again by the
# next batches, and a larger WAL copies each of them once per checkpoint instead of once per batch
# (issue 18: ~2-4 µs of the writer's CPU per event). 8000 pages = 32 MiB of WAL at 4 KiB pages.
WAL_AUTOCHECKPOINT_PAGES = 8000


def connect(path: str) -> sqlite3.Connection:
    """A writer's connection: WAL, full sync, foreign keys; the caller migrates."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        wal(conn)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    except BaseException:
        conn.close()
        raise
    return conn


def connect_readonly(path: str) -> sqlite3.Connection:
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


def wal(conn: sqlite3.Connection, wait_s: float = 30.0) -> None:
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


def applied(conn: sqlite3.Connection) -> set[int]:
    if not has_table(conn, "schema_migrations"):
        return set()
    return {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}


def check_version(done: set[int]) -> None:
    newest = max((v for v, _, _ in migrations()), default=0)
    if done and max(done) > newest:
        raise StoreVersionError(f"the store has schema version {max(done)}, newer than this kubetrail ({newest})")


def notice(message: str) -> None:
    """Where an upgrade says what it does: stderr, beside the CLI's other notices (stdout stays the
    command's output, JSON included)."""
    print(message, file=sys.stderr, flush=True)


def upgrade_notes(existing: int, report: Callable[[str], None]) -> Callable[[str | None], None]:
    """``note(name)`` before each migration an upgrade applies, ``note(None)`` after the last. Silent for
    a fresh store (``existing`` 0 entries: the whole schema in milliseconds); for a store with entries
    it says which migration runs and, at the end, how long the upgrade took, since some rebuild a table
    (0016 rewrites every entry: about half a minute per million, docs/storage.md) and the command shows nothing meanwhile."""
    started = time.monotonic()
    ran: list[str] = []

    def note(name: str | None) -> None:
        if not existing:
            return
        if name is not None:
            ran.append(name)
            report(f"kubetrail: upgrading the store ({existing:,} entries): migration {name}")
        elif ran:
            report(f"kubetrail: store upgraded ({len(ran)} migration{'s' if len(ran) > 1 else ''}) "
                   f"in {time.monotonic() - started:.1f} s")
    return note


def migrate(conn: sqlite3.Connection, report: Callable[[str], None] = notice) -> None:
    """Apply missing migrations; what is applied is read again under the write lock, so processes that
    open a fresh data directory at the same time never run a migration twice. An upgrade of a store that
    holds entries is reported (``upgrade_notes``)."""
    known = migrations()
    done = applied(conn)
    check_version(done)
    if all(v in done for v, _, _ in known):
        return
    heads.register(conn)  # migration 0016 computes existing rows' heads
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(SCHEMA_MIGRATIONS_DDL)
        done = applied(conn)
        check_version(done)
        note = upgrade_notes(_entries(conn), report)
        for version, name, sql in known:
            if version in done:
                continue
            note(name)
            try:
                for stmt in statements(sql):
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name))
            except sqlite3.Error as exc:
                raise StoreError(f"migration {name} failed: {exc}") from exc
        conn.execute("COMMIT")
        note(None)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _entries(conn: sqlite3.Connection) -> int:
    """How many entries the store holds (leaf indexes are contiguous from 0: the largest rowid + 1)."""
    if not has_table(conn, "entries"):
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM entries").fetchone()[0])
