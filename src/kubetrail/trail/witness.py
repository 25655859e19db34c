"""A witness directory: append-only copies of signed checkpoints kept outside the store.

Why: a checkpoint stored next to the entries proves nothing once someone rewrites both (or restores
an old copy of the store). A directory the store's writer cannot rewrite (another volume, an
append-only mount, a bucket with object lock) keeps the newest checkpoints; ``verify --witness``
then reports a rolled-back store as truncated and a rewritten one as inconsistent.

Layout: ``DIR/<hex SHA-256(origin)>/vkey`` (the first verifier key seen, trust on first use) and
``DIR/<hex SHA-256(origin)>/<size, 20 digits>-<root hex>.checkpoint`` (created exclusively, never
rewritten). The hashed origin is the same name C2SP tlog-witness monitors use.

One witness directory serves one trail: it pins the first origin and key it saw. Publishing with
another key or origin is refused, and ``verify --witness`` fails when the directory holds
checkpoints of another origin or key — otherwise whoever holds the data directory could make a new
key with a new origin, rewrite the history, re-sign it, and the witness (looked up under the new
origin) would have nothing to say.
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
    """Keep a copy of a signed checkpoint; returns False when the same one is already there.
    Refused (``TrailError``) when the directory pinned another origin or key."""
    d = origin_dir(witness_dir, cp.origin)
    for origin, pinned in witness_origins(witness_dir) if os.path.isdir(witness_dir) else []:
        if origin != cp.origin or (pinned is not None and pinned.encode() != verifier.encode()):
            raise TrailError(f"the witness directory {witness_dir} holds checkpoints of {origin!r} with another key: "
                             "one witness directory serves one trail (a replaced key needs a new one)")
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


def witness_origins(witness_dir: str) -> list[tuple[str, Verifier | None]]:
    """(origin, pinned key) of every trail the directory holds checkpoints for; an origin directory
    without a readable key is named by its hashed name and has no key."""
    if not os.path.isdir(witness_dir):
        raise TrailError(f"witness directory {witness_dir} does not exist")
    out: list[tuple[str, Verifier | None]] = []
    for name in sorted(os.listdir(witness_dir)):
        d = os.path.join(witness_dir, name)
        if not os.path.isdir(d):
            continue
        try:
            with open(os.path.join(d, "vkey")) as fh:
                key: Verifier | None = Verifier.parse(fh.read())
        except (OSError, NoteError):
            key = None
        origin = key.name if key is not None and origin_dir(witness_dir, key.name) == d else f"<unknown {name}>"
        if key is None and not any(n.endswith(SUFFIX) for n in os.listdir(d)):
            continue  # an empty leftover: nothing witnessed
        out.append((origin, key))
    return out


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
