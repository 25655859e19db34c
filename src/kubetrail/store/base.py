"""What both engines' stores share: the repositories, and every read of ``entries``.

An engine (store/sqlite.py, store/postgres.py) supplies the connection (``Engine``: ``db``,
``stream`` for large results, ``dialect`` for the few SQL spellings that differ), transactions,
``append`` and ``deep_check``; the rest is here, written once in SQL both engines accept.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec
import zstandard

from kubetrail.errors import StoreDamagedError, StoreError
from kubetrail.record import LogMeta, Record
from kubetrail.store.alerts import AlertTables, OutboxTable
from kubetrail.store.api import AppendHook
from kubetrail.store.codec import BodyCodec
from kubetrail.store.credentials import CredentialTables
from kubetrail.store.db import Engine
from kubetrail.store.detector_state import DetectorStateTable
from kubetrail.store.heads import KEY_HEAD_MATCH, key_head
from kubetrail.store.keys import KeyTables
from kubetrail.store.queries import LogFilters, QueryFilters, log_where_clause, where_clause
from kubetrail.store.retention import RetentionTables
from kubetrail.store.rows import COLUMNS, ENTRY_SELECT, MAX_INDEX, decode_record, describe, row_entry
from kubetrail.store.trail import TrailTables

# ``query(..., body=False)``: the same columns with the body left out (a search that prints no body
# need not decompress one per row)
_COLUMNS_NO_BODY = COLUMNS.replace(" body,", " NULL,")


# ``StoreBase.read_back``: records read back for one consumer and kept for the other (one release slice,
# ``ordering.RELEASE_SLICE``: ~8 MiB of 2.9 KB events), and the largest gap between leaves read in one range.
READ_BACK_KEPT = 2048
READ_BACK_GAP = 64


class StoreBase:
    data_dir: str
    readonly: bool

    def _setup(self, engine: Engine) -> None:
        self._engine = engine
        self.append_hooks: list[AppendHook] = []
        self.codec = BodyCodec(engine.db)
        self.trail = TrailTables(engine)
        self.alerts = AlertTables(engine)
        self.outbox = OutboxTable(engine)
        self.credentials = CredentialTables(engine)
        self.state = DetectorStateTable(engine)
        self.retention = RetentionTables(engine, self.transaction)  # type: ignore[attr-defined]
        self.keys = KeyTables(engine)
        self._aliases = engine.has_table("key_aliases")  # absent in a read-only store of an older version
        self._read_back: dict[int, Record] = {}  # ``read_back``: read for one consumer, not yet for the other

    def has_table(self, name: str) -> bool:
        return self._engine.has_table(name)

    def prepare(self, records: Sequence[Record]) -> None:
        """Nothing to do ahead of ``append`` unless an engine says so (``SqliteStore.prepare``)."""

    def body_dictionary(self) -> tuple[int, bytes] | None:
        return self.codec.dictionary

    def size(self) -> int:
        return self.trail.entries_size()

    def position(self, source: str) -> str | None:
        row = self._engine.db.execute("SELECT position FROM source_positions WHERE source = ?", (source,)).fetchone()
        return row[0] if row else None

    def counters(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._engine.db.execute("SELECT name, value FROM counters").fetchall()}

    def query(self, filters: QueryFilters, limit: int | None = None, order: str = "ASC",
              body: bool = True) -> Iterator[Record]:
        """Matching records in event-time order; ``body=False`` leaves ``Record.body`` empty (faster)."""
        where, params = where_clause(filters, self._engine.dialect, self._has_heads())
        order = "DESC" if order.upper() == "DESC" else "ASC"
        sql = (f"SELECT {COLUMNS if body else _COLUMNS_NO_BODY} FROM entries {where} "
               f"ORDER BY time {order}, leaf_index {order}")
        if limit:
            sql += f" LIMIT {int(limit)}"
        for r in self._engine.stream(sql, params):
            yield self._record(r)

    def logs(self, filters: LogFilters, limit: int | None = None, order: str = "ASC",
             by: str = "time") -> Iterator[Record]:
        """Log lines (kinds container, node, k8s_event) matching ``filters``, by event time (or by
        leaf index with ``by="leaf"``, for ``--follow``); each re-checked against its covered meta."""
        if not self._has_log_columns():  # a store from before log lines, opened read-only: none
            return
        where, params = log_where_clause(filters, self._engine.dialect)
        order = "DESC" if order.upper() == "DESC" else "ASC"
        keys = f"time {order}, leaf_index {order}" if by == "time" else f"leaf_index {order}"
        sql = f"SELECT {COLUMNS} FROM entries {where} ORDER BY {keys}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        for r in self._engine.stream(sql, params):
            rec = self._record(r)
            if isinstance(rec.meta, LogMeta) and filters.matches(rec.meta, rec.kind, rec.time):
                yield rec

    def count_logs(self, filters: LogFilters) -> int:
        if not self._has_log_columns():
            return 0
        where, params = log_where_clause(filters, self._engine.dialect)
        return int(self._engine.db.execute(f"SELECT COUNT(*) FROM entries {where}", params).fetchone()[0])

    def _has_heads(self) -> bool:
        """Whether migration 0016 ran (store/heads.py)."""
        return self._has_entries_column("key_head")

    def _has_log_columns(self) -> bool:
        """Whether migration 0009 ran."""
        return self._has_entries_column("workload")

    def _has_entries_column(self, column: str) -> bool:
        """Whether ``entries`` has a column a later migration added (a read-only open of an older store
        does not migrate it), asked once per store."""
        known = self.__dict__.setdefault("_entries_columns", {})
        if column not in known:
            known[column] = self._engine.has_column("entries", column)
        return bool(known[column])

    def count_matching(self, filters: QueryFilters) -> int:
        where, params = where_clause(filters, self._engine.dialect, self._has_heads())
        return int(self._engine.db.execute(f"SELECT COUNT(*) FROM entries {where}", params).fetchone()[0])

    def get(self, key: str) -> Record | None:
        """The record with this key or key alias (``store rekey``), or a leaf index given as digits."""
        db = self._engine.db
        r = (db.execute(f"SELECT {COLUMNS} FROM entries WHERE {KEY_HEAD_MATCH}", (key_head(key), key)).fetchone()
             if self._has_heads() else db.execute(f"SELECT {COLUMNS} FROM entries WHERE key = ?", (key,)).fetchone())
        if r is None and self._aliases:
            r = db.execute(f"SELECT {COLUMNS} FROM entries WHERE leaf_index = "
                           "(SELECT leaf_index FROM key_aliases WHERE alias = ?)", (key,)).fetchone()
        if r is None and key.isdigit():
            if int(key) > MAX_INDEX:
                raise StoreError(f"leaf index {key} is out of range (at most {MAX_INDEX})")
            r = db.execute(f"SELECT {COLUMNS} FROM entries WHERE leaf_index = ?", (int(key),)).fetchone()
        return self._record(r) if r else None

    def records_by_index(self, start: int, end: int) -> Iterator[Record]:
        sql = f"SELECT {COLUMNS} FROM entries WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index"
        for r in self._engine.stream(sql, (start, end)):
            yield self._record(r)

    def read_back(self, leaves: Iterable[int]) -> dict[int, Record]:
        """The stored records at these leaf indexes (those stored), for a consumer's reorder buffer that
        did not keep them in memory (``ordering.materialise``). The two consumers of a process hold the
        same records and release them one after the other: what one has read back is kept (at most
        ``READ_BACK_KEPT`` records, oldest out first) until the other takes it, so each spilled record is
        read from the store and decoded once, not twice (a busy apiserver's rate spills most of what the
        buffers hold: bench/RESULTS.md, "Thirteenth session"). The other gets the same Record objects, as
        it does for the records the buffers kept."""
        kept = self._read_back
        found: dict[int, Record] = {}
        wanted: list[int] = []
        for i in leaves:
            r = kept.pop(i, None)
            if r is None:
                wanted.append(i)
            else:
                found[i] = r
        if not wanted:
            return found
        wanted.sort()
        read: dict[int, Record] = {}
        i = 0
        while i < len(wanted):  # nearby leaves in one range read (the buffers spill runs of arrivals)
            j = i
            while j + 1 < len(wanted) and wanted[j + 1] - wanted[j] <= READ_BACK_GAP:
                j += 1
            read.update((r.leaf_index or 0, r) for r in self.records_by_index(wanted[i], wanted[j] + 1))
            i = j + 1
        for i in wanted:
            r = read.get(i)
            if r is not None:
                found[i] = kept[i] = r
        while len(kept) > READ_BACK_KEPT:
            del kept[next(iter(kept))]
        return found

    def iter_entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes, bytes, bytes | None]]:
        """(leaf_index, entry, leaf_hash, decompressed body or None) in index order, streamed."""
        end = self.size() if end is None else end
        for r in self._engine.stream(f"SELECT {ENTRY_SELECT} FROM entries WHERE leaf_index >= ? AND leaf_index < ? "
                                     "ORDER BY leaf_index", (start, end)):
            body = r[3]
            yield r[0], row_entry(r), bytes(r[2]), self.codec.decompress(bytes(body)) if body is not None else None

    def stats(self) -> dict[str, Any]:
        db = self._engine.db
        out: dict[str, Any] = {"entries": self.size(), "counters": self.counters()}
        out["bodies_kept"] = int(db.execute("SELECT COUNT(*) FROM entries WHERE body IS NOT NULL").fetchone()[0])
        self._check_column_types()
        span = db.execute("SELECT MIN(time), MAX(time) FROM entries").fetchone()
        out["first_time"], out["last_time"] = span
        for col in ("kind", "source", "format", "verb", "resource", "username"):
            out[f"top_{col}"] = [tuple(r) for r in db.execute(
                f"SELECT {col}, COUNT(*) AS n FROM entries GROUP BY {col} ORDER BY n DESC, {col} LIMIT 10")]
        for col in ("workload", "node", "unit") if self._has_log_columns() else ():  # log lines (node agent)
            out[f"top_{col}"] = [tuple(r) for r in db.execute(
                f"SELECT {col}, COUNT(*) AS n FROM entries WHERE {col} <> '' GROUP BY {col} "
                f"ORDER BY n DESC, {col} LIMIT 10")]
        out["db_bytes"] = self.db_bytes()
        return out

    def histogram(self, since: int, bucket_ns: int) -> list[tuple[int, str, int]]:
        """(bucket start, kind, records) for records with time >= since, in buckets of ``bucket_ns``."""
        b = max(int(bucket_ns), 1)
        rows = self._engine.db.execute(
            "SELECT ? + ((time - ?) / ?) * ?, kind, COUNT(*) FROM entries WHERE time >= ? "
            "GROUP BY 1, 2 ORDER BY 1, 2", (since, since, b, b, since))
        return [(int(t), str(k), int(n)) for t, k, n in rows]

    def sources(self, since: int | None = None) -> list[tuple[str, str, int, int, int]]:
        """(source, kind, records, first time, last time) per source and kind (from ``since``, when given)."""
        where, params = ("WHERE time >= ? ", [since]) if since is not None else ("", [])
        rows = self._engine.db.execute("SELECT source, kind, COUNT(*), MIN(time), MAX(time) FROM entries "
                                       f"{where}GROUP BY source, kind ORDER BY source, kind", params)
        return [(str(s), str(k), int(n), int(lo), int(hi)) for s, k, n, lo, hi in rows]

    def db_bytes(self) -> int | None:
        """What the store occupies (the SQLite file's pages; PostgreSQL's tables, indexes and TOAST)."""
        return self._engine.size_bytes()

    def decompress(self, body: bytes) -> bytes:
        return self.codec.decompress(body)

    def _record(self, r: tuple[Any, ...]) -> Record:
        try:
            return decode_record(r, self.codec.decompress)
        except (ValueError, TypeError, msgspec.DecodeError, zstandard.ZstdError) as exc:
            which = f"entry {r[0]}" if isinstance(r[0], int) else f"an entry whose leaf_index holds {describe(r[0])}"
            raise StoreDamagedError(f"the stored {which} cannot be read ({_safe(exc)}); run `kubetrail verify`") from exc

    def _check_column_types(self) -> None:
        """StoreDamagedError naming a summarised cell of the wrong type (engines whose columns can
        hold any type check it; PostgreSQL's typed columns cannot)."""


def _safe(exc: BaseException) -> str:
    """An error message fit to print: one that quotes stored bytes is named by its type instead."""
    text = str(exc)
    return text if text.isprintable() and "b'" not in text and 'b"' not in text else type(exc).__name__


_KEY = operator.attrgetter("key")


def first_of_each_key(records: Sequence[Record]) -> list[Record]:
    """The records in order, each key's first only (an append stores a key once). A batch rarely repeats a key: the keys are counted
    in C first, and only a batch that does repeat one is walked in Python."""
    if len(set(map(_KEY, records))) == len(records):
        return list(records)
    seen: set[str] = set()
    unique: list[Record] = []
    for r in records:
        if r.key not in seen:
            seen.add(r.key)
            unique.append(r)
    return unique
