"""Signs a checkpoint after each committed batch and on the timer (``tick``), even when idle.

Plugged into ``kubetrail.pipeline.CONSUMERS`` by ``make_checkpointer``; the ``run`` command calls
``tick`` every ``checkpoint_interval_secs`` so a silent log is provably silent and a deleted tail is
visible. The checkpointer refuses to sign a tree that no longer extends its previous checkpoint: a
log must never sign two inconsistent checkpoints (C2SP tlog-checkpoint). It also refuses when the
checkpoints are gone although ``trail_state`` says some were signed, and when the tree is smaller
than (or forks from) the newest checkpoint in the witness directory: after someone deleted the
checkpoints and the tree and rewrote the entries, signing would bless the forgery.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable

from kubetrail.errors import TrailError
from kubetrail.record import Record
from kubetrail.store.sqlite import Store
from kubetrail.trail import keys, witness
from kubetrail.trail.checkpoint import Checkpoint, sign_checkpoint
from kubetrail.trail.note import Signer
from kubetrail.trail.tree import StoredTree, sync_hook, sync_now
from kubetrail.trail.verify import signed_size

WITNESS_ENV = "KUBETRAIL_WITNESS_DIR"


def latest_checkpoint(conn: sqlite3.Connection) -> tuple[int, bytes, str] | None:
    """(size, root, note) of the most recently signed checkpoint."""
    row = conn.execute("SELECT size, root, note FROM trail_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
    return (int(row[0]), bytes(row[1]), str(row[2])) if row else None


def _refuse(why: str) -> TrailError:
    return TrailError(f"refusing to sign: {why} (run `kubetrail verify`)")


def _check_before_sync(conn: sqlite3.Connection, origin: str, witness_dir: str | None) -> None:
    """Refusals that need no tree: run before anything is written."""
    entries = int(conn.execute("SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM entries").fetchone()[0])
    ever = signed_size(conn)
    if ever is not None and latest_checkpoint(conn) is None:
        raise _refuse(f"this store signed checkpoints up to size {ever}, and they are gone")
    if ever is not None and entries < ever:
        raise _refuse(f"the store holds {entries} entries but signed a checkpoint of size {ever}")
    if witness_dir:
        seen = witness.latest(witness_dir, origin)
        if seen is not None and entries < seen[0]:
            raise _refuse(f"the store holds {entries} entries, but the witness directory {witness_dir} holds a "
                          f"checkpoint of size {seen[0]}")


def sign_now(conn: sqlite3.Connection, signer: Signer, witness_dir: str | None = None) -> tuple[Checkpoint, str]:
    """Sign the tree as it is now, store the note, and copy it to the witness directory."""
    _check_before_sync(conn, signer.name, witness_dir)
    sync_now(conn)
    tree = StoredTree(conn)
    size = tree.size()
    cp = Checkpoint(signer.name, size, tree.root(size))
    prev = latest_checkpoint(conn)
    if prev is not None:
        psize, proot, _ = prev
        if psize > size or tree.root(psize) != proot:
            raise _refuse(f"the trail no longer matches its checkpoint at size {psize}")
    seen = witness.latest(witness_dir, signer.name) if witness_dir else None
    if seen is not None and (seen[0] > size or tree.root(seen[0]) != seen[1]):
        raise _refuse(f"the trail does not extend the witness's checkpoint at size {seen[0]}")
    note = sign_checkpoint(cp, signer)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO trail_checkpoints (id, size, root, note, signed_ns) "
                     "VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM trail_checkpoints), ?, ?, ?, ?)",
                     (cp.size, cp.root, note, time.time_ns()))
        conn.execute("INSERT INTO trail_state (name, value) VALUES ('signed_size', ?) ON CONFLICT (name) DO UPDATE "
                     "SET value = CASE WHEN excluded.value > trail_state.value THEN excluded.value "
                     "ELSE trail_state.value END", (cp.size,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if witness_dir:
        witness.publish(witness_dir, cp, note, signer.verifier())
    return cp, note


class Checkpointer:
    """The pipeline consumer: one signed checkpoint per committed batch and per timer tick.

    The key is loaded (or generated, announced through ``log``) at the first signing, so a command
    that never stores anything never creates one.
    """

    def __init__(self, data_dir: str, witness_dir: str | None = None,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
                 signer: Signer | None = None) -> None:
        self.data_dir = data_dir
        self.witness_dir = witness_dir
        self.log = log
        self.signer = signer
        self.last: Checkpoint | None = None

    def _signer(self) -> Signer:
        if self.signer is None:
            self.signer = keys.ensure_signer(self.data_dir, self.log)
        return self.signer

    def consume(self, records: list[Record], store: Store) -> None:
        self.last, _ = sign_now(store.connection, self._signer(), self.witness_dir)

    def tick(self, store: Store) -> None:
        """Timer work: sign the current tree even when nothing arrived since the last checkpoint."""
        self.last, _ = sign_now(store.connection, self._signer(), self.witness_dir)

    def close(self) -> None:
        return None


def make_checkpointer(store: Store, options: object) -> Checkpointer:
    """``pipeline.CONSUMERS`` factory: keeps the tree in the append transaction, signs after it."""
    if sync_hook not in store.append_hooks:
        store.append_hooks.append(sync_hook)
    witness_dir = getattr(options, "witness_dir", None) or os.environ.get(WITNESS_ENV) or None
    return Checkpointer(getattr(options, "data_dir", store.data_dir), witness_dir)
