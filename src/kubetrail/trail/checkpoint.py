"""C2SP tlog-checkpoint bodies (c2sp.org/tlog-checkpoint@v1.0.0) inside signed notes.

Exactly three lines, no extension lines (they are not auditable by monitors)::

    <origin>\\n<tree size, decimal, no leading zeros>\\n<base64 root hash>\\n

The note's key name equals the origin, so the signature line names the log it commits.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from kubetrail.trail.merkle import HASH_SIZE
from kubetrail.trail.note import NoteError, Signer, Verifier, _b64decode, check_name, open_note, sign_note


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body; extension lines are refused (kubetrail never writes them)."""
        lines = text.split("\n")
        if len(lines) != 4 or lines[3] != "":
            raise NoteError("malformed checkpoint: want exactly origin, size and root lines")
        origin, size_s, root_b64 = lines[:3]
        check_name(origin)
        if not size_s.isdigit() or not size_s.isascii() or (size_s != "0" and size_s.startswith("0")):
            raise NoteError(f"malformed checkpoint: bad tree size {size_s!r}")
        root = _b64decode(root_b64)
        if len(root) != HASH_SIZE or base64.b64encode(root).decode() != root_b64:
            raise NoteError("malformed checkpoint: the root is not a base64 SHA-256 hash")
        return cls(origin, int(size_s), root)


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> str:
    if signer.name != cp.origin:
        raise NoteError(f"the key name {signer.name!r} differs from the checkpoint origin {cp.origin!r}")
    return sign_note(cp.body(), signer)


def open_checkpoint(note: str | bytes, verifier: Verifier) -> Checkpoint:
    """Verify the log's signature (key name = origin) and parse the body."""
    opened = open_note(note, [verifier])
    cp = Checkpoint.parse(opened.text)
    if cp.origin != verifier.name:
        raise NoteError(f"checkpoint origin {cp.origin!r} differs from the key name {verifier.name!r}")
    return cp
