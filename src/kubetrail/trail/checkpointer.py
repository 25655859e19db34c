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
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from kubetrail.errors import TrailError
from kubetrail.record import Record
from kubetrail.trail import keys, witness
from kubetrail.trail.checkpoint import Checkpoint, sign_checkpoint
from kubetrail.trail.note import NoteError, Signer, parse_note
from kubetrail.trail.protocols import CheckpointLog
from kubetrail.trail.tree import Tree, sync_hook, sync_now

WITNESS_ENV = "KUBETRAIL_WITNESS_DIR"


class TrailStore(Protocol):
    data_dir: str
    append_hooks: list[Any]

    @property
    def trail(self) -> CheckpointLog: ...

    def transaction(self) -> AbstractContextManager[Any]: ...

    def size(self) -> int: ...


def _refuse(why: str) -> TrailError:
    return TrailError(f"refusing to sign: {why} (run `kubetrail verify`)")


def _check_before_sync(store: TrailStore, origin: str, witness_dir: str | None) -> None:
    """Refusals that need no tree: run before anything is written.

    What was signed is read before the entries are counted: other writers may append and sign
    between the reads, and a signed size read after the count could exceed it on an intact store
    (several processes on one trail). Read in this order, entries only grow past what was signed."""
    ever = store.trail.signed_size()
    seen = witness.latest(witness_dir, origin) if witness_dir else None
    entries = store.trail.entries_size()
    if ever is not None and store.trail.latest_checkpoint() is None:
        raise _refuse(f"this store signed checkpoints up to size {ever}, and they are gone")
    if ever is not None and entries < ever:
        raise _refuse(f"the store holds {entries} entries but signed a checkpoint of size {ever}")
    if seen is not None and entries < seen[0]:
        raise _refuse(f"the store holds {entries} entries, but the witness directory {witness_dir} holds a "
                      f"checkpoint of size {seen[0]}")


def _committed(row: tuple[int, bytes, str]) -> tuple[int, bytes]:
    """(size, root) the previous checkpoint commits to: read from its note, not from the row's
    columns, so an edited column cannot block signing forever (``verify`` names the edit). The
    signature is not checked here: after a key rotation the old notes still say what was signed."""
    size, root, note = row
    try:
        cp = Checkpoint.parse(parse_note(note)[0])
    except NoteError:
        return size, root  # not a note at all: the columns are all there is (verify reports the row)
    return cp.size, cp.root


def sign_now(store: TrailStore, signer: Signer, witness_dir: str | None = None) -> tuple[Checkpoint, str]:
    """Sign the tree as it is now, store the note, and copy it to the witness directory."""
    _check_before_sync(store, signer.name, witness_dir)
    sync_now(store)
    with store.transaction() as tx:
        tx.trail.lock()  # several collectors sign one trail: one signer, and no append, at a time
        tree = Tree(tx.trail)
        size = tree.size()
        cp = Checkpoint(signer.name, size, tree.root(size))
        prev = tx.trail.latest_checkpoint()
        if prev is not None:
            psize, proot = _committed(prev)
            if psize > size or tree.root(psize) != proot:
                raise _refuse(f"the trail no longer matches its checkpoint at size {psize}")
        seen = witness.latest(witness_dir, signer.name) if witness_dir else None
        if seen is not None and (seen[0] > size or tree.root(seen[0]) != seen[1]):
            raise _refuse(f"the trail does not extend the witness's checkpoint at size {seen[0]}")
        note = sign_checkpoint(cp, signer)
        signed_ns = time.time_ns()
        tx.trail.add_checkpoint(cp.size, cp.root, note, signed_ns)
    from kubetrail import telemetry  # here, not at the top: every store user (query) loads this module

    telemetry.emit(telemetry.TrailCheckpointSigned(origin=cp.origin, size=cp.size, timestamp=signed_ns / 1e9))
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

    def consume(self, records: list[Record], store: TrailStore) -> None:
        self.last, _ = sign_now(store, self._signer(), self.witness_dir)

    def tick(self, store: TrailStore) -> None:
        """Timer work: sign the current tree even when nothing arrived since the last checkpoint."""
        self.last, _ = sign_now(store, self._signer(), self.witness_dir)

    def close(self) -> None:
        return None


def make_checkpointer(store: TrailStore, options: object) -> Checkpointer:
    """``pipeline.CONSUMERS`` factory: keeps the tree in the append transaction, signs after it."""
    if sync_hook not in store.append_hooks:
        store.append_hooks.append(sync_hook)
    witness_dir = getattr(options, "witness_dir", None) or os.environ.get(WITNESS_ENV) or None
    return Checkpointer(getattr(options, "data_dir", store.data_dir), witness_dir)
