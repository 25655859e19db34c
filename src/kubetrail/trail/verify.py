"""``kubetrail verify``: recompute the whole trail and name the first index that is not intact.

One streaming pass in leaf order over the entries and the tree's own leaf copy (two cursors, a
compact range: O(log n) memory). For each index it rebuilds the entry from the row's columns (v2;
a v1 row holds its header bytes) and recomputes the leaf,
checks the body against the header's ``body_sha256`` (a body removed by retention is fine), and
compares with the tree; every stored checkpoint (and every witness checkpoint) must carry a valid
signature and the root recomputed at its size. The smallest failing index wins; its reason is one of
REASONS, and the rules that pick it are in docs/specs/trail-format.md ("Verification").

A NULL body must be explained by a recorded retention run (trail/retention.py). A store with entries
but no checkpoint at all is either one that never signed (written before the trail, or by code that
stored without the checkpointer: its entries are taken as the tree, ``Report.unsigned``) or one whose
checkpoints were deleted, which ``trail_state`` (migration 0006) tells apart: **bad-signature** at 0.
Only reads: it works on a store opened read-only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubetrail.errors import StoreDamagedError
from kubetrail.trail.checkpoint import open_checkpoint
from kubetrail.trail.entry import ENTRY_PREFIX, decode_entry
from kubetrail.trail.merkle import CompactRange, leaf_hash
from kubetrail.trail.note import NoteError, Verifier
from kubetrail.trail.protocols import EntryRow, Problem, VerifySource
from kubetrail.trail.retention import RetentionRuns
from kubetrail.trail.tree import Tree
from kubetrail.trail.witness import read_notes, witness_origins, witness_verifier


class SnapshotStore(Protocol):
    def snapshot(self) -> AbstractContextManager[Any]: ...

    def decompress(self, body: bytes) -> bytes: ...


REASONS = ("modified", "removed", "inserted", "reordered", "truncated", "bad-signature",
           "inconsistent-checkpoint", "bad-tree-node")
_ORDER = {r: i for i, r in enumerate(REASONS)}
_BODY_AT = len(ENTRY_PREFIX) + len('{"body_sha256":"')


@dataclass
class Report:
    size: int = 0
    root: bytes = b""
    checkpoints: int = 0
    witness_checkpoints: int = 0
    bodies_pruned: int = 0
    unsigned: bool = False  # entries but no checkpoint, and the store never signed one: nothing to check against
    covered: int = 0  # the largest size a valid checkpoint (stored or witnessed) commits to
    problems: list[Problem] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """What is intact but not proven: entries appended after the newest signed checkpoint.
        A warning, not a failure (an ingest may be running); ``--json`` lists it."""
        uncovered = self.size - self.covered
        if self.unsigned or uncovered <= 0 or self.first is not None:
            return []
        return [f"{uncovered} entries not yet covered by a signed checkpoint (the newest covers size "
                f"{self.covered} of {self.size}): sign one with `kubetrail checkpoint --sign`, or this tail "
                "could be cut without a trace"]

    @property
    def first(self) -> Problem | None:
        return min(self.problems, key=lambda p: (p.index, _ORDER[p.reason])) if self.problems else None

    def as_json(self) -> dict[str, object]:
        first = self.first
        if first is None:
            doc: dict[str, object] = {"ok": True, "size": self.size, "root": self.root.hex()}
            if self.warnings:
                doc["warnings"] = self.warnings
                doc["uncovered"] = self.size - self.covered
            return doc
        return {"ok": False, "first_bad_index": first.index, "reason": first.reason}


@dataclass
class _Cp:
    size: int
    root: bytes
    where: str


def _body_hash_of(entry: bytes) -> bytes | None:
    """The header's body_sha256 (canonical JSON, sorted keys: it is always the first field)."""
    if entry[:_BODY_AT] != ENTRY_PREFIX + b'{"body_sha256":"' or entry[_BODY_AT + 64:_BODY_AT + 65] != b'"':
        return None
    try:
        return bytes.fromhex(entry[_BODY_AT:_BODY_AT + 64].decode())
    except ValueError:
        return None


def _open_all(notes: list[tuple[str, str]], verifier: Verifier, report: Report) -> list[_Cp]:
    """Signature check of every note; a bad one names the first leaf only it commits to."""
    good: list[_Cp] = []
    bad: list[tuple[int, str]] = []
    for where, note in notes:
        try:
            cp = open_checkpoint(note, verifier)
        except NoteError as exc:
            size = _claimed_size(note)
            bad.append((size, f"{where}: {exc}"))
            continue
        good.append(_Cp(cp.size, cp.root, where))
    for size, detail in bad:
        below = [c.size for c in good if c.size < size]
        report.problems.append(Problem(max(below, default=0), "bad-signature", detail))
    return good


def _check_columns(source: VerifySource, cps: list[_Cp], report: Report) -> None:
    """A checkpoint row's size and root columns are what the signer compares the tree with: an
    edited column must be named here (it would otherwise block signing forever, unexplained)."""
    signed = {c.where: c for c in cps}
    for cid, size, root in source.checkpoint_columns():
        cp = signed.get(f"checkpoint #{cid}")
        if cp is not None and (cp.size, cp.root) != (size, root):
            report.problems.append(Problem(cp.size, "inconsistent-checkpoint",
                                           f"checkpoint #{cid}: its size/root columns differ from what its signed "
                                           "note commits to (the row was edited)"))


def _check_witness_keys(witness_dir: str, verifier: Verifier, report: Report) -> None:
    """A witness pins the first key (and origin) it saw. Checkpoints of another origin or key mean
    the store's key was replaced: whoever holds the data directory can make a new key, rewrite the
    history and re-sign it, and only the witness remembers the old one."""
    for origin, pinned in witness_origins(witness_dir):
        if origin != verifier.name:
            report.problems.append(Problem(0, "bad-signature", f"the witness holds checkpoints of origin {origin!r}, "
                                           f"not of this store's origin {verifier.name!r}: the trail key was "
                                           "replaced, or the witness directory belongs to another trail"))
        elif pinned is not None and pinned.encode() != verifier.encode():
            report.problems.append(Problem(0, "bad-signature", f"the witness pinned another key for {origin!r} "
                                           f"({pinned.encode()}); this store is verified with {verifier.encode()}"))


def _claimed_size(note: str) -> int:
    try:
        return int(note.split("\n")[1])
    except (IndexError, ValueError):
        return 0


class _StoredNodes:
    """The stored complete subtrees (levels >= 1), read beside the scan with one cursor per level,
    and compared with the nodes the scan's own compact range completes: proofs are served from the
    stored ones, so a corrupted node would make every proof under it wrong while the leaves are fine."""

    def __init__(self, source: VerifySource, tree_size: int) -> None:
        self.source = source
        self.tree_size = tree_size
        self.cursors: dict[int, Iterator[tuple[int, bytes]]] = {}
        self.ahead: dict[int, tuple[int, bytes] | None] = {}
        self.problem: Problem | None = None

    def _next(self, level: int, index: int) -> tuple[int, bytes] | None:
        cursor = self.cursors.get(level)
        if cursor is None:
            cursor = self.cursors[level] = self.source.interior_nodes(level)
            self.ahead[level] = next(cursor, None)
        got = self.ahead[level]
        while got is not None and got[0] < index:
            got = next(cursor, None)
        if got is not None and got[0] == index:
            self.ahead[level] = next(cursor, None)
        else:
            self.ahead[level] = got
        return got if got is not None and got[0] == index else None

    def check(self, nodes: list[tuple[int, int, bytes]]) -> None:
        for level, index, want in nodes:
            if self.problem is not None or (index + 1) << level > self.tree_size:
                return
            got = self._next(level, index)
            if got is None or got[1] != want:
                first, last = index << level, ((index + 1) << level) - 1
                what = "is missing" if got is None else "does not match the entries"
                self.problem = Problem(first, "bad-tree-node",
                                       f"the stored tree node at level {level}, index {index} (leaves {first}..{last}) "
                                       f"{what}: inclusion and consistency proofs through it would be wrong")


class _Leaves:
    """The tree's leaf copy, read in order beside the entries."""

    def __init__(self, source: VerifySource) -> None:
        self.size = source.tree_size()
        self._it = source.leaf_hashes()

    def next(self) -> bytes | None:
        return next(self._it, None)


def _pruned_time(time: int | None, entry: bytes) -> int:
    if time is not None:
        return time
    value = decode_entry(entry).get("time")  # a v1 row: its stored header has the time, the column is not covered
    return int(value) if isinstance(value, int) else -1


def _classify(source: VerifySource, i: int, leaf: bytes) -> tuple[str, str]:
    """Why the entry at ``i`` is not the tree's leaf ``i``: look at the neighbours and the tree."""
    tree = Tree(source)
    found = tree.find_leaf(leaf)
    if found is not None:
        if found > i and source.entry_leaf(found) != tree.leaf(i) and \
                source.entry_leaf(i + 1) == tree.leaf(found + 1):
            return "removed", f"entries {i}..{found - 1} are missing; the entries after them moved up"
        return "reordered", f"entry {i} holds the entry committed at index {found}"
    if source.entry_leaf(i + 1) == tree.leaf(i):
        return "inserted", f"an entry the tree never committed was inserted at {i}"
    return "modified", f"entry {i} differs from the committed leaf"


def verify_store(store: SnapshotStore, verifier: Verifier, witness_dir: str | None = None,
                 progress: Callable[[int], None] | None = None,
                 decompress: Callable[[bytes], bytes] | None = None) -> Report:
    """Check everything; ``decompress`` opens a stored body (default: the store's codec).

    One read snapshot: every query sees the same state even while an ingest appends.
    """
    with store.snapshot() as snap:
        return verify(snap.trail, verifier, witness_dir, progress, decompress or store.decompress)


def verify(source: VerifySource, verifier: Verifier, witness_dir: str | None,
           progress: Callable[[int], None] | None, decompress: Callable[[bytes], bytes]) -> Report:
    """The whole check over one store snapshot's rows (see the module doc)."""
    report = Report()
    notes = [(f"checkpoint #{cid}", note) for cid, note in source.checkpoint_notes()]
    report.checkpoints = len(notes)
    cps = _open_all(notes, verifier, report)
    _check_columns(source, cps, report)
    if witness_dir:
        _check_witness_keys(witness_dir, verifier, report)
        wv = witness_verifier(witness_dir, verifier.name) or verifier
        wnotes = [(f"witness {name}", text) for name, text in read_notes(witness_dir, verifier.name)]
        report.witness_checkpoints = len(wnotes)
        cps += _open_all(wnotes, wv, report)
    cps.sort(key=lambda c: c.size)

    leaves = _Leaves(source)
    size = source.entries_size()
    ever = source.signed_size()
    adopt = not notes and size > 0  # no checkpoint: the entries beyond the tree are taken as the tree
    if adopt and ever is not None:
        report.problems.append(Problem(0, "bad-signature", f"the store has {size} entries but no signed checkpoint, "
                                       f"although it signed checkpoints up to size {ever}: they were deleted"))
    report.unsigned = adopt and ever is None
    retention = RetentionRuns(source.retention_runs())
    cr = CompactRange()
    k = 0
    while k < len(cps) and cps[k].size == 0:
        if cps[k].root != cr.root():
            report.problems.append(Problem(0, "inconsistent-checkpoint", f"{cps[k].where} is not the empty tree"))
        k += 1
    i = 0
    try:
        i, k = _scan(source, leaves, cps, cr, report, retention, adopt, progress, decompress, k)
    except StoreDamagedError as exc:
        i = cr.size
        report.problems.append(Problem(i, "modified", f"the database cannot be read at or after entry {i}: {exc}"))
    if ever is not None and ever > i and (report.first is None or report.first.index >= i):
        report.problems.append(Problem(i, "truncated", f"the store signed a checkpoint of size {ever}; "
                                                       f"it ends at {i}"))
    report.size = i
    report.root = cr.root()
    report.covered = max((c.size for c in cps if c.size <= i), default=0)
    if report.first is None or report.first.index >= i:
        for cp in cps[k:]:
            if cp.size > i:
                report.problems.append(Problem(i, "truncated", f"{cp.where} commits to size {cp.size}; "
                                                               f"the store ends at {i}"))
                break
    return report


def _scan(source: VerifySource, leaves: _Leaves, cps: list[_Cp], cr: CompactRange, report: Report,
          retention: RetentionRuns, adopt: bool, progress: Callable[[int], None] | None,
          decompress: Callable[[bytes], bytes], k: int) -> tuple[int, int]:
    """The streaming pass; returns (entries checked, index of the next checkpoint not reached)."""
    sha256, lh = hashlib.sha256, leaf_hash
    matched = 0  # largest checkpoint size known to match
    stored_nodes = _StoredNodes(source, leaves.size)
    completed: list[tuple[int, int, bytes]] = []
    i = 0
    for idx, entry, why, stored_leaf, body, body_sha256, time in source.entry_rows():
        ref = leaves.next()
        if idx != i:
            report.problems.append(Problem(i, "removed", f"no entry with leaf index {i} (next is {idx})"))
            break
        if entry is None:
            report.problems.append(Problem(i, "modified", f"entry {i} cannot be rebuilt from its row: {why}"))
            break
        leaf = lh(entry)
        if ref is None and adopt:
            ref = leaf
        if ref is None:
            report.problems.append(Problem(i, "inserted", f"entry {i} is beyond the tree (size {leaves.size})"))
            break
        if leaf != ref:
            reason, detail = _classify(source, i, leaf)
            report.problems.append(Problem(i, reason, detail))
            break
        if body is None:
            if not retention.explains(i, _pruned_time(time, entry)):
                report.problems.append(Problem(i, "modified", f"the body of entry {i} was deleted, and no recorded "
                                                              "retention run pruned it"))
                break
            report.bodies_pruned += 1
        else:
            want = body_sha256 if time is not None else _body_hash_of(entry)
            try:
                got = sha256(decompress(bytes(body))).digest()
            except Exception:  # noqa: BLE001 - an undecodable body is a modified body
                got = None
            if want is None or got != want:
                report.problems.append(Problem(i, "modified", f"the body of entry {i} does not match its header"))
                break
        if stored_leaf != leaf:
            report.problems.append(Problem(i, "modified", f"the stored leaf hash of entry {i} was changed"))
            break
        cr.append(leaf, completed)
        if completed:
            stored_nodes.check(completed)
            completed.clear()
        i += 1
        while k < len(cps) and cps[k].size == i:
            if cps[k].root == cr.root():
                matched = i
            else:
                report.problems.append(Problem(matched, "inconsistent-checkpoint",
                                               f"{cps[k].where} (size {i}) does not match the entries"))
            k += 1
        if progress is not None and i % 65536 == 0:
            progress(65536)
    else:
        if leaves.size > i:
            report.problems.append(Problem(i, "truncated", f"the tree holds {leaves.size} leaves, the store {i}"))
    if stored_nodes.problem is not None:
        report.problems.append(stored_nodes.problem)
    return i, k


__all__ = ["REASONS", "EntryRow", "Problem", "Report", "VerifySource", "verify", "verify_store"]
