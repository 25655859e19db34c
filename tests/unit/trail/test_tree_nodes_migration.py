"""Migration 0014: an existing store's Merkle nodes move into a WITHOUT ROWID table (SQLite) with every
row kept; the tree then still verifies, deep check included, and grows on the next append."""

from __future__ import annotations

import os
from pathlib import Path

from test_tamper import db, store_of, verify

from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.testing import make_event
from kubetrail.trail.tree import sync_hook

N = 300  # the golden trail's size


def nodes(trail: Path) -> list[tuple[int, int, bytes]]:
    conn = db(trail)
    try:
        return [(int(a), int(b), bytes(h)) for a, b, h in
                conn.execute("SELECT level, idx, hash FROM trail_nodes ORDER BY level, idx").fetchall()]
    finally:
        conn.close()


def test_existing_nodes_survive_the_migration_and_the_tree_keeps_growing(trail: Path) -> None:
    before = nodes(trail)  # the golden store predates 0014
    assert len(before) > N // 2
    store_of(trail).close()  # a writing open migrates
    assert nodes(trail) == before
    if not os.environ.get("KUBETRAIL_STORE"):
        conn = db(trail)
        sql = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'trail_nodes'").fetchone()[0]
        assert sql.rstrip().endswith("WITHOUT ROWID")
        assert conn.execute("SELECT version FROM schema_migrations WHERE version = 14").fetchone()
        conn.close()
    assert verify(trail, "--deep")[0] == 0
    s = store_of(trail)
    s.append_hooks.append(sync_hook)
    s.append([to_record(Decoded(make_event(f"after-{i}"), "event", f"a:{i}"), SourceRef(stream="a"))
              for i in range(5)])
    s.close()
    after = nodes(trail)
    assert set(before) <= set(after) and len(after) > len(before)
    code, doc = verify(trail, "--deep")
    assert code == 0 and doc["size"] == N + 5, doc
