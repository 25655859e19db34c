"""A witness directory: append-only copies of signed checkpoints kept outside the store.

Why: a checkpoint stored next to the entries proves nothing once someone rewrites both (or restores
an old copy of the store). A directory the store's writer cannot rewrite (another volume, an
append-only mount, a bucket with object lock) keeps the newest checkpoints; ``verify --witness``
then reports a rolled-back store as truncated and a rewritten one as inconsistent.

Layout: ``DIR/<hex SHA-256(origin)>/vkey`` (the first verifier key seen, trust on first use) and
``DIR/<hex SHA-256(origin)>/<size, 20 digits>-<root hex>.checkpoint`` (created exclusively, never
rewritten). The hashed origin is the same name C2SP tlog-witness monitors use.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from kubetrail.errors import TrailError
from kubetrail.trail.checkpoint import Checkpoint
from kubetrail.trail.note import NoteError, Verifier

SUFFIX = ".checkpoint"


def origin_dir(witness_dir: str, origin: str) -> str:
    return os.path.join(witness_dir, hashlib.sha256(origin.encode()).hexdigest())


def _create(path: str, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def publish(witness_dir: str, cp: Checkpoint, note: str, verifier: Verifier) -> bool:
    """Keep a copy of a signed checkpoint; returns False when the same one is already there."""
    d = origin_dir(witness_dir, cp.origin)
    try:
        os.makedirs(d, exist_ok=True)
        _create(os.path.join(d, "vkey"), (verifier.encode() + "\n").encode())
        return _create(os.path.join(d, f"{cp.size:020d}-{cp.root.hex()}{SUFFIX}"), note.encode())
    except OSError as exc:
        raise TrailError(f"cannot write to the witness directory {witness_dir}: {exc}") from exc


def witness_verifier(witness_dir: str, origin: str) -> Verifier | None:
    path = os.path.join(origin_dir(witness_dir, origin), "vkey")
    try:
        with open(path) as fh:
            return Verifier.parse(fh.read())
    except FileNotFoundError:
        return None
    except (OSError, NoteError) as exc:
        raise TrailError(f"bad witness key {path}: {exc}") from exc


def read_notes(witness_dir: str, origin: str) -> Iterator[tuple[str, str]]:
    """(file name, note text) of every kept checkpoint for ``origin``, smallest size first."""
    d = origin_dir(witness_dir, origin)
    if not os.path.isdir(witness_dir):
        raise TrailError(f"witness directory {witness_dir} does not exist")
    if not os.path.isdir(d):
        return
    for name in sorted(os.listdir(d)):
        if name.endswith(SUFFIX):
            with open(os.path.join(d, name), encoding="utf-8", errors="replace") as fh:
                yield name, fh.read()


def latest(witness_dir: str, origin: str) -> tuple[int, bytes] | None:
    """(size, root) of the largest checkpoint kept for ``origin``, from the file names (no parsing of
    the notes: the writer only needs to know how far the trail had already been published)."""
    d = origin_dir(witness_dir, origin)
    try:
        names = [n for n in os.listdir(d) if n.endswith(SUFFIX)]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TrailError(f"cannot read the witness directory {witness_dir}: {exc}") from exc
    best: tuple[int, bytes] | None = None
    for name in names:
        size_s, _, root_s = name[: -len(SUFFIX)].partition("-")
        try:
            found = (int(size_s), bytes.fromhex(root_s))
        except ValueError:
            continue
        if best is None or found[0] > best[0]:
            best = found
    return best
