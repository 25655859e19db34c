"""The five blind spots of issue 10 item 9, on copies of the golden trail: each is caught with a
named index and reason, or reported as a documented warning (docs/trail.md, "verify")."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from test_tamper import N, db, expect, store_of, verify

from kubetrail.cli import cli
from kubetrail.trail import merkle
from kubetrail.trail.checkpoint import Checkpoint
from kubetrail.trail.note import parse_note


def run(trail: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, [*args, "--data", str(trail / "data")])
    assert "Traceback" not in r.output, r.output
    return r.exit_code, r.stdout, r.stderr


def test_a_new_key_with_another_origin_cannot_hide_behind_the_witness(trail: Path) -> None:
    """(a) The data directory's owner makes a key with a new origin, drops the old checkpoints and the
    tree and re-signs (what hiding a rewritten history takes; the rewrite itself is not needed to show
    the blind spot): the store alone verifies under the new key, but the witness
    still holds the old origin's checkpoints, so `verify --witness` fails; and the witness refuses
    to take the new origin's checkpoints at all."""
    witness = str(trail / "witness")
    migrate(trail)
    assert run(trail, "keys", "generate", "--origin", "evil.example/rewritten", "--force")[0] == 0
    conn = db(trail)
    conn.execute("DELETE FROM trail_checkpoints")
    conn.execute("DELETE FROM trail_state")
    conn.execute("DELETE FROM trail_leaves")
    conn.execute("DELETE FROM trail_nodes")
    assert run(trail, "checkpoint", "--sign")[0] == 0
    assert verify(trail) == (0, {"ok": True, "size": N, "root": verify(trail)[1]["root"]})
    code, out, err = run(trail, "verify", "--json", "--witness", witness)
    assert (code, orjson.loads(out)) == (1, {"ok": False, "first_bad_index": 0, "reason": "bad-signature"})
    assert "golden.kubetrail.test/trail" in err and "evil.example/rewritten" in err
    code, _, err = run(trail, "checkpoint", "--sign", "--witness", witness)
    assert code != 0 and "one witness directory serves one trail" in err


def migrate(trail: Path) -> None:
    """The golden store as any writing kubetrail leaves it (migrations applied)."""
    store_of(trail).close()


def test_the_witness_pins_the_key_it_first_saw(trail: Path) -> None:
    """Same origin, another key (`keys generate --force` with the old name): named at index 0."""
    witness = str(trail / "witness")
    assert run(trail, "keys", "generate", "--origin", "golden.kubetrail.test/trail", "--force")[0] == 0
    code, out, err = run(trail, "verify", "--json", "--witness", witness)
    assert code == 1 and orjson.loads(out)["reason"] == "bad-signature"
    assert "pinned another key" in err or "no verifiable signatures" in err


def append_unsigned(trail: Path, n: int) -> None:
    """Entries added after the last checkpoint, by a writer that never signed (rows copied, the tree
    extended the way the store's append hook does it)."""
    from kubetrail.record import Decoded, SourceRef
    from kubetrail.stages.extract import to_record
    from kubetrail.testing import make_event
    from kubetrail.trail.tree import sync_hook

    with store_of(trail) as store:
        store.append_hooks.append(sync_hook)
        store.append([to_record(Decoded(make_event(f"late-{i}"), "event", str(i)), SourceRef(stream="x"))
                      for i in range(n)])


def test_entries_after_the_last_checkpoint_are_a_warning(trail: Path) -> None:
    """(b) Intact but not proven: `verify` exits 0, says how many entries no checkpoint covers, and
    --json carries it as a warning."""
    append_unsigned(trail, 7)
    code, out, err = run(trail, "verify", "--json")
    doc = orjson.loads(out)
    assert code == 0 and doc["ok"] is True and doc["size"] == N + 7 and doc["uncovered"] == 7
    assert doc["warnings"] == [w for w in doc["warnings"] if "7 entries not yet covered by a signed checkpoint" in w]
    code, out, err = run(trail, "verify")
    assert code == 0 and "warning: 7 entries not yet covered" in err
    assert run(trail, "checkpoint", "--sign")[0] == 0
    assert set(verify(trail)[1]) == {"ok", "size", "root"}, "signed: no warning left"


@pytest.mark.parametrize(("level", "index"), [(1, 0), (3, 5), (8, 0), (5, 8)])
def test_a_corrupted_tree_node_is_named(trail: Path, level: int, index: int) -> None:
    """(c) Proofs are served from the stored interior nodes: one changed node makes every proof under
    it invalid while the leaves are fine. `verify` recomputes each and names the first leaf under it."""
    db(trail).execute("UPDATE trail_nodes SET hash = ? WHERE level = ? AND idx = ?", (bytes(32), level, index))
    expect(trail, index << level, "bad-tree-node")
    witness_leaf = (index ^ 1) << level  # a leaf under the sibling: its proof carries the corrupted node
    code, out, _ = run(trail, "proof", "inclusion", "--index", str(witness_leaf), "--size", str(N), "--json")
    proof = orjson.loads(out)
    (note,) = db(trail).execute("SELECT note FROM trail_checkpoints WHERE size = ? LIMIT 1", (N,)).fetchone()
    signed_root = Checkpoint.parse(parse_note(note)[0]).root
    assert not merkle.verify_inclusion(witness_leaf, N, bytes.fromhex(proof["leaf_hash"]),
                                       [bytes.fromhex(h) for h in proof["hashes"]], signed_root), \
        "the proof served from the corrupted node does not verify against the signed root: that is the blind spot"


def test_a_deleted_tree_node_is_named(trail: Path) -> None:
    db(trail).execute("DELETE FROM trail_nodes WHERE level = 2 AND idx = 9")
    expect(trail, 36, "bad-tree-node")


def test_an_edited_checkpoint_root_column_is_named_and_does_not_block_signing(trail: Path) -> None:
    """(d) The root column is what the signer compared with: editing it made every later signing
    refuse, unexplained. Now `verify` names the row, and signing reads the root from the signed note."""
    conn = db(trail)
    conn.execute("UPDATE trail_checkpoints SET root = ? WHERE id = (SELECT MAX(id) FROM trail_checkpoints)",
                 (bytes(32),))
    code, out, err = run(trail, "verify", "--json")
    assert (code, orjson.loads(out)) == (1, {"ok": False, "first_bad_index": N, "reason": "inconsistent-checkpoint"})
    assert "columns differ from what its signed note commits to" in err
    append_unsigned(trail, 2)
    assert run(trail, "checkpoint", "--sign")[0] == 0


@pytest.mark.parametrize(("column", "value"), [("time", b"\x00\xff\x12\x34"), ("username", b"\xff\xfe\x00evil"),
                                               ("seq", "text"), ("code", b"\x01"), ("meta", 3.5)])
def test_a_cell_of_the_wrong_type_is_named_by_row_and_column(trail: Path, column: str, value: object) -> None:
    """(e) SQLite stores any type in any column. Every command names the row and the column's type,
    never prints the bytes, never a traceback; verify names the index. PostgreSQL's typed columns
    refuse such a write outright, and the trail stays whole."""
    if os.environ.get("KUBETRAIL_STORE"):
        import psycopg

        if column != "username":  # text takes anything by I/O conversion: then it is an edit verify names
            with pytest.raises(psycopg.Error):
                db(trail).execute(f"UPDATE entries SET {column} = ? WHERE leaf_index = 33", (value,))
            assert verify(trail)[0] == 0
            return
        db(trail).execute("UPDATE entries SET username = ? WHERE leaf_index = 33", (value,))
        expect(trail, 33, "modified")  # stored as the text '\\xfffe…': a well-typed edit, read back like any row
        return
    db(trail).execute(f"UPDATE entries SET {column} = ? WHERE leaf_index = 33", (value,))
    expect(trail, 33, "modified")
    for args in (["show", "33"], ["stats"], ["query", "--limit", "1000"]):
        code, out, err = run(trail, *args)
        if column in ("time", "username") or args[0] == "show":
            assert code != 0 and "entry 33" in err and f"column {column} holds" in err, (args, err)
        assert "\\x" not in err and "b'" not in err and "\xff" not in out + err, (args, err)


def test_verify_reads_no_more_than_it_did(trail: Path) -> None:
    """The node check walks each level's rows once beside the leaves: a clean trail is still one pass."""
    conn: sqlite3.Connection = db(trail)
    nodes = conn.execute("SELECT COUNT(*) FROM trail_nodes").fetchone()[0]
    assert nodes >= N - 10  # a complete subtree per merge: about one node per leaf
    assert verify(trail)[0] == 0
