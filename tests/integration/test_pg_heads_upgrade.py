"""A PostgreSQL store made before migration 0016 (integer heads) and opened by today's kubetrail: the
migration computes every existing entry's heads in SQL (``md5()``, a ``bit(60)`` cast), which must be
the heads ``store/heads.py`` computes in Python for new rows, or lookups by key and auditID miss the
old entries; the open that upgrades says so on stderr (``upgrade_notes``), and ``verify --deep`` finds
nothing wrong afterwards. The store is built with the migrations before 0016 and rows as they were
written then (today's rows without the two head columns)."""

from __future__ import annotations

import psycopg
import pytest
import zstandard

from kubetrail.record import SourceRef
from kubetrail.sources.formats import Decoded
from kubetrail.stages.extract import to_record
from kubetrail.stages.redaction_key import RedactionKey
from kubetrail.store import heads, open_store
from kubetrail.store.postgres_schema import SCHEMA_MIGRATIONS_DDL, migrate, pg_migrations
from kubetrail.store.rows import HEAD_KEYS, INSERT_COLUMNS, row
from kubetrail.store.sqlite_schema import statements
from kubetrail.testing import make_event

pytestmark = pytest.mark.integration

HEADS_VERSION = 16
# auditIDs whose MD5 both engines must agree on: a UUID, non-ASCII text (hashed as UTF-8 by both), none.
AUDIT_IDS = ["3f0c1a2e-6b4d-4e8f-9a1b-2c3d4e5f6a7b", "Zürich-Ausweis-√-001", ""]


def _old_store(url: str) -> list[tuple[str, str]]:
    """Migrations 1..15 and three entries written as then; returns their (key, auditID)."""
    written = []
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(SCHEMA_MIGRATIONS_DDL)
        for version, name, sql in pg_migrations():
            if version >= HEADS_VERSION:
                break
            for stmt in statements(sql):
                conn.execute(stmt)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
        columns = INSERT_COLUMNS[:-len(HEAD_KEYS)]
        insert = f"INSERT INTO entries ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
        compress = zstandard.ZstdCompressor().compress
        for i, audit_id in enumerate(AUDIT_IDS):
            event = make_event(audit_id, name=f"obj-{i}", time=f"2024-05-01T10:00:0{i}.000000Z")
            r = to_record(Decoded(event, "event", f"old:{i}"), SourceRef(node="n", stream="audit"),
                          RedactionKey(b"k" * 32))
            r.leaf_index = i
            values = row(r, compress(r.body))
            assert values[-2:] == (heads.key_head(r.key), heads.audit_head(audit_id))  # what 0016 must compute
            conn.execute(insert, values[:-len(HEAD_KEYS)])
            written.append((r.key, audit_id))
    return written


def test_an_older_store_gets_the_heads_python_computes_and_says_it_upgrades(pg_url: str) -> None:
    written = _old_store(pg_url)
    said: list[str] = []
    with psycopg.connect(pg_url, autocommit=True) as conn:
        migrate(conn, said.append)
        stored = conn.execute("SELECT key, audit_id, key_head, audit_head FROM entries ORDER BY leaf_index").fetchall()
    assert said[0] == "kubetrail: upgrading the store (3 entries): migration postgres/0016_integer_heads.sql", said
    assert said[-1].startswith("kubetrail: store upgraded (") and said[-1].endswith(" s"), said
    assert [(k, a) for k, a, _, _ in stored] == written
    for key, audit_id, key_head, audit_head in stored:
        assert (key_head, audit_head) == (heads.key_head(key), heads.audit_head(audit_id)), audit_id
    assert stored[2][3] is None  # no auditID, no head

    with open_store(pg_url) as store:  # today's store finds the old entries by their heads
        assert store.deep_check() == []
        for key, _ in written:
            assert store.get(key) is not None, key
