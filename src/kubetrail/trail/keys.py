"""The trail's signing key in the data directory: ``trail.key`` (0600) and ``trail.vkey``.

The private key uses Go sumdb's ``PRIVATE+KEY+…`` encoding so it moves between kubetrail and Go
tooling; the verifier key is what auditors pin (``kubetrail verify --key``) and give to witnesses.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from kubetrail.errors import TrailError
from kubetrail.trail.note import NoteError, Signer, Verifier

KEY_FILE = "trail.key"
VKEY_FILE = "trail.vkey"


def default_origin() -> str:
    host = "".join(c if c.isalnum() or c in "-._" else "-" for c in socket.gethostname()) or "localhost"
    return f"kubetrail.local/{host}"


def _write(path: str, text: str, mode: int, replace: bool = True) -> None:
    """Write via a temporary file; without ``replace`` an existing file wins (FileExistsError), so two
    processes creating the first key at once end up using the same one."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def generate(data_dir: str, origin: str, force: bool = False) -> Signer:
    """Create the signing key; refuse to replace one unless ``force`` (old checkpoints then fail)."""
    path = os.path.join(data_dir, KEY_FILE)
    if os.path.exists(path) and not force:
        raise TrailError(f"a trail key already exists in {path} (use --force to replace it; checkpoints "
                         "signed with the old key will then only verify with the old verifier key)")
    try:
        signer = Signer.generate(origin)
    except NoteError as exc:
        raise TrailError(f"invalid origin: {exc}") from exc
    os.makedirs(data_dir, exist_ok=True)
    try:
        _write(path, signer.encode() + "\n", 0o600, replace=force)
    except FileExistsError as exc:
        raise TrailError(f"a trail key already exists in {path}") from exc
    _write(os.path.join(data_dir, VKEY_FILE), signer.verifier().encode() + "\n", 0o644)
    return signer


def load_signer(data_dir: str) -> Signer | None:
    path = os.path.join(data_dir, KEY_FILE)
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TrailError(f"cannot read the trail key {path}: {exc}") from exc
    try:
        return Signer.parse(text)
    except NoteError as exc:
        raise TrailError(f"{path}: {exc}") from exc


def ensure_signer(data_dir: str, log: Callable[[str], None]) -> Signer:
    """The key to sign with; a first run generates one so a bare ``ingest`` leaves a signed trail."""
    signer = load_signer(data_dir)
    if signer is None:
        try:
            signer = generate(data_dir, default_origin())
        except TrailError:
            signer = load_signer(data_dir)  # another process created it a moment ago
            if signer is None:
                raise
            return signer
        log(f"kubetrail: generated a trail signing key for origin {signer.name} in "
            f"{os.path.join(data_dir, KEY_FILE)}; verifier key: {signer.verifier().encode()}")
    return signer


def load_verifier(data_dir: str, vkey: str | None = None) -> Verifier:
    """An explicit ``vkey`` (pinned by the auditor) wins over the data directory's own copy; there the
    public ``trail.vkey`` is read first, so verifying never needs the private key (or its permissions)."""
    try:
        if vkey:
            if os.path.isfile(vkey):
                with open(vkey) as fh:
                    vkey = fh.read()
            return Verifier.parse(vkey)
        path = os.path.join(data_dir, VKEY_FILE)
        if os.path.exists(path):
            with open(path) as fh:
                return Verifier.parse(fh.read())
        signer = load_signer(data_dir)
        if signer is not None:
            return signer.verifier()
    except OSError as exc:
        raise TrailError(f"cannot read the verifier key: {exc}") from exc
    except NoteError as exc:
        raise TrailError(f"bad verifier key: {exc}") from exc
    raise TrailError(f"no trail key in {data_dir} (run `kubetrail keys generate --origin NAME`, or pass --key)")
