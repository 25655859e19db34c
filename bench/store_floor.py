"""The SQLite floor of the store stage: kubetrail's own rows inserted with the least Python possible.

    .venv/bin/python bench/store_floor.py FILE [--repeat 3] [--batch 2000] [--only NAME,...]

The rows are the very rows kubetrail stores for FILE: every event decoded, redacted, extracted and
keyed by the real pipeline (``stages.extract.to_record``), bodies compressed by a store's codec (its
trained dictionary), rows built by ``store.rows.row``. None of that is timed. What is timed
(``time.process_time``: user + system CPU of this process, min of ``--repeat``) is only inserting
them into a fresh database with the writer's PRAGMAs (``sqlite_schema.connect``: WAL,
synchronous=FULL, the page cache, the WAL auto-checkpoint): per batch ``BEGIN IMMEDIATE``, one
``executemany`` of the batch's rows, ``COMMIT``. That is the least a Python writer can do per
event with this schema: the difference to ``bench/stages.py``'s store + tree is kubetrail's own
Python (existing-key lookup, row building, compression, counters, positions, tree sync).

Each variant changes one thing of the current ``entries`` schema (read from a freshly migrated
store, so it is the schema every store has today) and prints CPU µs/event and the difference to
``current``, the two run back to back ``--repeat`` times (min of each: other load on the shared
cores moves both alike): each secondary index dropped, the ``key`` UNIQUE index dropped, ``leaf_index`` as the
rowid (``INTEGER PRIMARY KEY``: SQLite keeps a ``BIGINT PRIMARY KEY`` as a separate unique index
beside the hidden rowid), fewer columns, bigger transactions, and the real path's extra
statements (the existing-key lookup; the trail's leaf and node rows).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubetrail.record import SourceRef
from kubetrail.sources.files import Input
from kubetrail.stages import extract
from kubetrail.stages.redaction_key import RedactionKey
from kubetrail.store import open_store, sqlite_schema
from kubetrail.store.base import first_of_each_key
from kubetrail.store.rows import INSERT_COLUMNS, row
from kubetrail.trail import merkle

try:
    from kubetrail.runtime import tune_gc
except ImportError:  # pragma: no cover - an older kubetrail

    def tune_gc() -> None:
        return None


@dataclass
class Schema:
    table: str  # CREATE TABLE entries …
    indexes: dict[str, str]  # name -> CREATE INDEX …


@dataclass
class Variant:
    name: str
    schema: Callable[[Schema], Schema] = lambda s: s
    columns: tuple[str, ...] = INSERT_COLUMNS
    batch: int = 0  # 0: --batch
    key_lookup: bool = False  # the append's pre-insert SELECT of the batch's keys
    tree: str = ""  # "", "rowid" (trail_nodes as today), "without-rowid"
    verb: str = "INSERT"  # or "INSERT OR ROLLBACK" (no statement journal: a conflict ends the transaction)
    savepoint: bool = False  # the batch's executemany inside SAVEPOINT … RELEASE
    extra: list[str] = field(default_factory=list)  # statements after the schema


def current_schema() -> Schema:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(tmp)
        store.close()
        conn = sqlite3.connect(os.path.join(tmp, "kubetrail.db"))
        table = conn.execute("SELECT sql FROM sqlite_schema WHERE type='table' AND name='entries'").fetchone()[0]
        idx = dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE type='index' AND tbl_name='entries' "
                                "AND sql IS NOT NULL ORDER BY name").fetchall())
        conn.close()
    return Schema(table, idx)


def without(name: str) -> Callable[[Schema], Schema]:
    return lambda s: Schema(s.table, {k: v for k, v in s.indexes.items() if k != name})


def no_secondary(s: Schema) -> Schema:
    return Schema(s.table, {})


def rowid_leaf(s: Schema) -> Schema:
    return Schema(s.table.replace("leaf_index   BIGINT PRIMARY KEY", "leaf_index   INTEGER PRIMARY KEY"), s.indexes)


def key_not_unique(s: Schema) -> Schema:
    return Schema(s.table.replace("key          TEXT NOT NULL UNIQUE", "key          TEXT NOT NULL"), s.indexes)


def compose(*fns: Callable[[Schema], Schema]) -> Callable[[Schema], Schema]:
    def f(s: Schema) -> Schema:
        for fn in fns:
            s = fn(s)
        return s
    return f


NARROW = ("leaf_index", "key", "time", "kind", "meta", "leaf_hash", "body", "body_sha256")


def narrow(s: Schema) -> Schema:
    """Only the columns a leaf cannot do without and the key (the rest would live in ``meta``)."""
    return Schema("CREATE TABLE entries (leaf_index INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, "
                  "time BIGINT NOT NULL, kind TEXT NOT NULL, meta BLOB NOT NULL, leaf_hash BLOB NOT NULL, "
                  "body BLOB, body_sha256 BLOB)", {})


def variants(s: Schema) -> list[Variant]:
    v = [Variant("current")]
    for name in s.indexes:
        v.append(Variant(f"- {name}", without(name)))
    v += [
        Variant("- key UNIQUE (no key index)", key_not_unique),
        Variant("leaf_index as rowid", rowid_leaf),
        Variant("no secondary indexes", no_secondary),
        Variant("no secondary, leaf_index rowid", compose(no_secondary, rowid_leaf)),
        Variant("no indexes at all (rowid, no UNIQUE)", compose(no_secondary, rowid_leaf, key_not_unique)),
        Variant("8 columns, rowid, key UNIQUE, no secondary", narrow, columns=NARROW),
        Variant("current, 10,000-row transactions", batch=10_000),
        Variant("current, one transaction", batch=1 << 40),
        Variant("current + key lookup", key_lookup=True),
        Variant("current, executemany inside a SAVEPOINT", savepoint=True),
        Variant("current, INSERT OR ROLLBACK (no statement journal)", verb="INSERT OR ROLLBACK"),
        Variant("current + tree rows (trail_nodes as today)", tree="rowid"),
        Variant("current + tree rows (trail_nodes WITHOUT ROWID)", tree="without-rowid"),
        Variant("leaf_index rowid + key lookup + tree WITHOUT ROWID", rowid_leaf, key_lookup=True,
                tree="without-rowid"),
    ]
    return v


def records_and_rows(path: str, batch: int, limit: int) -> list[tuple[Any, ...]]:
    """kubetrail's rows for the file, in leaf order (the real preparation, codec and row building)."""
    source = SourceRef(stream=f"file:{path}")
    key = RedactionKey(b"k" * 32)
    inp = Input(path)
    records = []
    try:
        for d in inp.items():
            if hasattr(d, "event"):
                records.append(extract.to_record(d, source, key))
                if limit and len(records) >= limit:
                    break
    finally:
        inp.close()
    unique = first_of_each_key(records)
    rows: list[tuple[Any, ...]] = []
    with tempfile.TemporaryDirectory() as tmp, open_store(tmp) as store:
        for i in range(0, len(unique), batch):
            b = unique[i:i + batch]
            bodies = store.codec.compress_many([r.body for r in b])
            for j, r in enumerate(b):
                r.leaf_index = i + j
                rows.append(row(r, bodies[j]))
    return rows


_NODES_ROWID = "CREATE TABLE trail_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx))"
_LEAVES = "CREATE TABLE trail_leaves (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL)"


def one_run(rows: list[tuple[Any, ...]], schema: Schema, v: Variant, batch: int) -> float:
    s = v.schema(schema)
    cols = v.columns
    pick = [INSERT_COLUMNS.index(c) for c in cols]
    data = rows if cols == INSERT_COLUMNS else [tuple(r[i] for i in pick) for r in rows]
    insert = f"{v.verb} INTO entries ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    n = len(data)
    size = v.batch or batch
    batches = [data[i:i + size] for i in range(0, n, size)]
    key_at = cols.index("key")
    leaf_at = INSERT_COLUMNS.index("leaf_hash")
    leaves = [r[leaf_at] for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite_schema.connect(os.path.join(tmp, "floor.db"))
        conn.execute(s.table)
        for sql in s.indexes.values():
            conn.execute(sql)
        if v.tree:
            conn.execute(_LEAVES)
            conn.execute(_NODES_ROWID + (" WITHOUT ROWID" if v.tree == "without-rowid" else ""))
        tree_state: list[Any] = [merkle.CompactRange(0, []) if v.tree else None]
        start = 0
        t = time.process_time()
        for b in batches:
            conn.execute("BEGIN IMMEDIATE")
            if v.key_lookup:
                keys = [r[key_at] for r in b]
                for i in range(0, len(keys), 500):
                    chunk = keys[i:i + 500]
                    conn.execute(f"SELECT key FROM entries WHERE key IN ({','.join('?' * len(chunk))})",
                                 chunk).fetchall()
            if v.savepoint:
                conn.execute("SAVEPOINT batch")
            conn.executemany(insert, b)
            if v.savepoint:
                conn.execute("RELEASE batch")
            if v.tree:
                new = leaves[start:start + len(b)]
                nodes: list[tuple[int, int, bytes]] = []
                tree_state[0].extend(new, nodes)
                conn.executemany("INSERT INTO trail_leaves (idx, hash) VALUES (?, ?)",
                                 [(start + i, h) for i, h in enumerate(new)])
                conn.executemany("INSERT INTO trail_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
            start += len(b)
            conn.execute("COMMIT")
        cpu = time.process_time() - t
        conn.close()
    return cpu / n * 1e6


def main() -> None:
    tune_gc()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--events", type=int, default=0, help="only the first N events (0: all)")
    ap.add_argument("--only", default="", help="comma-separated variant names (substring match)")
    a = ap.parse_args()
    schema = current_schema()
    t = time.monotonic()
    rows = records_and_rows(a.path, a.batch, a.events)
    n = len(rows)
    print(f"{a.path}: {n:,} rows built in {time.monotonic() - t:.0f} s (not timed); python "
          f"{sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}; CPU µs/event of the inserts, "
          f"min of {a.repeat}, batch {a.batch}")
    wanted = [w for w in a.only.split(",") if w]
    current = Variant("current")
    print(f"  {'variant':<52} {'µs/ev':>7}  {'current':>7}  {'diff':>6}   (each variant and `current` run "
          "back to back, min of each)")
    for v in variants(schema):
        if wanted and not any(w in v.name for w in wanted):
            continue
        mine, base = [], []
        for _ in range(a.repeat):  # paired: the shared cores' load moves both alike
            base.append(one_run(rows, schema, current, a.batch))
            mine.append(base[-1] if v.name == "current" else one_run(rows, schema, v, a.batch))
        print(f"  {v.name:<52} {min(mine):7.1f}  {min(base):7.1f}  {min(mine) - min(base):+6.1f}   "
              f"load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
