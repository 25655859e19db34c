"""What each index on ``entries`` costs the insert: the rows of a store replayed into SQLite alone.

    .venv/bin/python bench/index_cost.py DATA_DIR [--batch 2000] [--repeat 2]

Reads every ``entries`` row of the store in ``DATA_DIR`` (fill one first, e.g. ``kubetrail ingest
FILE --data DATA_DIR``), then inserts them into a fresh database with the store's own schema for the
table and its indexes, as the store writes (WAL, ``synchronous=FULL``, the store's cache and
checkpoint settings, one transaction per ``--batch`` rows), once per variant: the indexes as they
are (migration 0016: the key and the auditID indexed by integer heads, store/heads.py), as they were
before 0016 (the key's text UNIQUE, the auditID's text index), without either head's index, without
both, and without any secondary index. Prints CPU µs per row and the bytes written per row
(``/proc/self/io``: WAL, checkpoints and the final database), min of ``--repeat`` (issue 18,
bench/RESULTS.md "Eighth session": the two indexes on random values cost about as much as the rest;
"Ninth session": what their integer heads cost).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from typing import Any

from kubetrail.store.sqlite_schema import CACHE_KIB, WAL_AUTOCHECKPOINT_PAGES

KEY_TEXT = "key           TEXT NOT NULL,"
ROWID_PK = "leaf_index    INTEGER PRIMARY KEY,"
# the auditID's text index that migration 0016 replaced (the key's UNIQUE text index is in the table)
BEFORE_0016 = ("CREATE INDEX entries_audit_id_stage ON entries (audit_id, stage) WHERE audit_id <> ''",)


def written() -> int:
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("wchar:"))


def replay(rows: list[tuple[Any, ...]], table: str, indexes: list[str], batch: int) -> tuple[float, float]:
    """(CPU µs, bytes written) per row, inserting ``rows`` into a fresh database."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(os.path.join(tmp, "replay.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        db.execute(table)
        for sql in indexes:
            db.execute(sql)
        insert = f"INSERT INTO entries VALUES ({', '.join('?' * len(rows[0]))})"
        before, t = written(), time.process_time()
        for i in range(0, len(rows), batch):
            db.execute("BEGIN")
            db.executemany(insert, rows[i:i + batch])
            db.execute("COMMIT")
        db.close()  # the last checkpoint is part of the cost
        return (time.process_time() - t) / len(rows) * 1e6, (written() - before) / len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    src = sqlite3.connect(f"file:{os.path.join(a.data_dir, 'kubetrail.db')}?mode=ro", uri=True)
    rows = src.execute("SELECT * FROM entries ORDER BY leaf_index").fetchall()
    table = src.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'entries'").fetchone()[0]
    indexes = [sql for (sql,) in src.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' AND sql IS NOT NULL")]
    src.close()
    if not rows:
        raise SystemExit(f"{a.data_dir}: no entries to replay")
    if KEY_TEXT not in table or ROWID_PK not in table:
        raise SystemExit("the entries table no longer declares its key and leaf index as this script expects: "
                         "update KEY_TEXT and ROWID_PK")
    before = table.replace(KEY_TEXT, "key TEXT NOT NULL UNIQUE,").replace(ROWID_PK, "leaf_index BIGINT PRIMARY KEY,")
    no_heads = [sql for sql in indexes if "_head" not in sql]
    variants = [
        ("as is (integer heads, 0016)", table, indexes),
        ("before 0016 (text key and auditID)", before, [*no_heads, *BEFORE_0016]),
        ("without the key head's index", table, [sql for sql in indexes if "key_head" not in sql]),
        ("without the auditID head's index", table, [sql for sql in indexes if "audit_head" not in sql]),
        ("without both", table, no_heads),
        ("no secondary index", table, []),
    ]
    print(f"{len(rows):,} rows of {a.data_dir}, batches of {a.batch}, min of {a.repeat}")
    for name, ddl, idx in variants:
        runs = [replay(rows, ddl, idx, a.batch) for _ in range(a.repeat)]
        cpu = min(r[0] for r in runs)
        out = min(r[1] for r in runs)
        print(f"  {name:<36} CPU {cpu:6.1f} µs/row   written {out / 1024:5.1f} KiB/row")


if __name__ == "__main__":
    main()
