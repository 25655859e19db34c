"""The key of redaction digests: ``DATA/redaction.key`` (0600), next to the trail key.

Each removed value is listed with a digest, so an analyst can see that two events carried the same
secret. An unkeyed hash would let anyone holding the store confirm a guessed weak password offline;
HMAC-SHA256 under this key does not, while equal values still match wherever the key is the same.

File format (one line)::

    kubetrail-redaction-key/v1 <base64 of 32 random bytes>

The file is created on first use. Its location is the ``redaction_key_file`` config key (default
``DATA/redaction.key``): every agent and collector of one deployment must use the same file, so
that the same event redacted on two nodes lists the same digests (the redacted body is the same
bytes whatever the key; only the digests depend on it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from kubetrail.errors import ConfigError

KEY_FILE = "redaction.key"
_PREFIX = "kubetrail-redaction-key/v1 "
DIGEST_HEX = 16  # 64 bits: enough to tell values apart, and it is keyed


class RedactionKey:
    """Keyed digests of redacted values (HMAC-SHA256, first ``DIGEST_HEX`` hex digits)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a redaction key has at least 16 bytes")
        self._secret = secret
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)

    def __reduce__(self) -> tuple[type[RedactionKey], tuple[bytes]]:
        """Pickled for the preparation workers (``kubetrail.workers``), which must digest with the same key."""
        return RedactionKey, (self._secret,)

    def digest(self, value: bytes) -> str:
        mac = self._mac.copy()
        mac.update(value)
        return mac.hexdigest()[:DIGEST_HEX]

    @classmethod
    def ephemeral(cls) -> RedactionKey:
        """A key for this process only (tests, tools that write nothing): digests match nowhere else."""
        return cls(os.urandom(32))


def load_or_create(path: str) -> RedactionKey:
    """The key in ``path``; a new random one (written 0600, never replacing a file another process
    created at the same moment) when there is none yet."""
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read()
    except FileNotFoundError:
        return _create(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("redaction_key_file", f"cannot read {path}: {exc}") from exc
    return _parse(text, path)


def _parse(text: str, path: str) -> RedactionKey:
    line = text.strip()
    if not line.startswith(_PREFIX):
        raise ConfigError("redaction_key_file", f"{path} is not a kubetrail redaction key")
    try:
        return RedactionKey(base64.b64decode(line[len(_PREFIX):], validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("redaction_key_file", f"{path}: {exc}") from exc


def _create(path: str) -> RedactionKey:
    secret = os.urandom(32)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{_PREFIX}{base64.b64encode(secret).decode()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process won the race: then its key is the key
    except FileExistsError:
        return load_or_create(path)
    finally:
        os.unlink(tmp)
    return RedactionKey(secret)
