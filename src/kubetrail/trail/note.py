"""C2SP signed-note (c2sp.org/signed-note@v1.0.0) with Ed25519 keys in the note key format.

Why this format: Go's ``golang.org/x/mod/sumdb/note``, transparency-log witnesses and monitors all
read it, so a kubetrail checkpoint can be checked by tools that share no code with kubetrail.

* verifier key: ``<name>+<hex8 key id>+<base64(0x01 || 32-byte public key)>``
* private key (Go sumdb convention): ``PRIVATE+KEY+<name>+<hex8>+<base64(0x01 || 32-byte seed)>``
* key id: ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``
* note: text (ending in ``\\n``) + ``\\n`` + lines ``— <name> <base64(key id || signature)>\\n``;
  the signature covers the text including its final newline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubetrail.errors import TrailError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# cryptography is imported where a key is used, not here: every command that opens a store loads
# this module (store -> trail protocols), and most of them (query, show, stats) never sign or verify.

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # EM DASH + space
MAX_SIGNATURES = 100  # C2SP: accept at least 16; Go sumdb/note refuses more than 100


class NoteError(TrailError):
    """A malformed note or key, or a signature that does not verify."""


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"bad base64: {text[:20]}…") from exc


def check_name(name: str) -> str:
    """Key names: non-empty, no Unicode spaces, no '+' (they delimit the key string)."""
    if not name or "+" in name or any(c.isspace() or unicodedata.category(c) == "Zs" for c in name):
        raise NoteError(f"invalid key name {name!r}: it must be non-empty, without spaces or '+'")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise NoteError(f"invalid key name {name!r}: control characters")
    return name


def key_id(name: str, alg: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: bytes
    public: bytes

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Parse and fully check a verifier key (any substring or changed byte is refused)."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("malformed verifier key: want name+hex8+base64")
        name, kid_hex, b64 = parts
        check_name(name)
        if len(kid_hex) != 8 or any(c not in "0123456789abcdef" for c in kid_hex):
            raise NoteError("malformed verifier key: the key id must be 8 lowercase hex digits")
        raw = _b64decode(b64)
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("unsupported verifier key: want an Ed25519 (type 0x01) 32-byte key")
        kid = key_id(name, ALG_ED25519, raw[1:])
        if kid.hex() != kid_hex:
            raise NoteError("malformed verifier key: the key id does not match the key")
        return cls(name, kid, raw[1:])

    def encode(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([ALG_ED25519]) + self.public).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    seed: bytes

    @classmethod
    def generate(cls, name: str) -> Signer:
        check_name(name)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        # the raw 32 bytes, as private_bytes(Raw, Raw, NoEncryption()) gives them, without importing
        # ``serialization`` (its SSH key support: ~5 ms of every ``ingest``)
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def parse(cls, skey: str) -> Signer:
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise NoteError("malformed private key: want PRIVATE+KEY+name+hex8+base64")
        name, kid_hex, b64 = parts[2], parts[3], parts[4]
        check_name(name)
        raw = _b64decode(b64)
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("unsupported private key: want an Ed25519 (type 0x01) 32-byte seed")
        signer = cls(name, raw[1:])
        if signer.verifier().key_id.hex() != kid_hex:
            raise NoteError("malformed private key: the key id does not match the key")
        return signer

    def _key(self) -> Ed25519PrivateKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def verifier(self) -> Verifier:
        pub = self._key().public_key().public_bytes_raw()  # = public_bytes(Raw, Raw), without ``serialization``
        return Verifier(self.name, key_id(self.name, ALG_ED25519, pub), pub)

    def encode(self) -> str:
        kid = self.verifier().key_id.hex()
        return f"PRIVATE+KEY+{self.name}+{kid}+{base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()}"

    def sign(self, message: bytes) -> bytes:
        return self._key().sign(message)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("malformed note: the text must end with a newline")
    if any((ord(c) < 0x20 and c != "\n") or ord(c) == 0x7F for c in text):
        raise NoteError("malformed note: control characters other than newline")


def sign_note(text: str, *signers: Signer) -> str:
    """The text, a blank line, and one signature line per signer."""
    _check_text(text)
    lines = []
    for s in signers:
        sig = s.sign(text.encode())
        lines.append(f"{SIG_PREFIX}{s.name} {base64.b64encode(s.verifier().key_id + sig).decode()}\n")
    return text + "\n" + "".join(lines)


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class OpenedNote:
    text: str
    verified: list[Signature]
    unverified: list[Signature]


def parse_note(note: str | bytes) -> tuple[str, list[Signature]]:
    """Split a note into its text and signature lines, refusing anything malformed."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("malformed note: not UTF-8") from exc
    if not note.endswith("\n"):
        raise NoteError("malformed note: it must end with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    text, block = note[:cut + 1], note[cut + 2:]
    _check_text(text)
    if not block:
        raise NoteError("malformed note: no signatures")
    sigs: list[Signature] = []
    seen: set[str] = set()
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise NoteError("malformed note: a signature line must start with an em dash and a space")
        fields = line[len(SIG_PREFIX):].split(" ")
        if len(fields) != 2:
            raise NoteError("malformed note: a signature line is '— name base64'")
        name, b64 = fields
        check_name(name)
        raw = _b64decode(b64)
        if len(raw) < 5:
            raise NoteError("malformed note: signature too short")
        if line in seen:
            continue
        seen.add(line)
        sigs.append(Signature(name, raw[:4], raw[4:]))
    _check_text(text)
    return text, sigs


def open_note(note: str | bytes, verifiers: list[Verifier]) -> OpenedNote:
    """Verify a note: unknown keys are ignored; a known key's bad signature rejects the note."""
    text, sigs = parse_note(note)
    verified, unverified = [], []
    msg = text.encode()
    for sig in sigs:
        known = next((v for v in verifiers if v.name == sig.name and v.key_id == sig.key_id), None)
        if known is None:
            unverified.append(sig)
            continue
        if not known.verify(msg, sig.signature):
            raise NoteError(f"invalid signature for key {known.name}+{known.key_id.hex()}")
        verified.append(sig)
    if not verified:
        raise NoteError("note has no verifiable signatures")
    return OpenedNote(text, verified, unverified)
