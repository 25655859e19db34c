"""The one thing that flows through kubetrail: a ``Record`` (see DESIGN.md "Records").

A record's ``body`` is the original event after redaction, as bytes; ``meta`` holds the fields
every later stage filters on, extracted once. ``key`` is a content hash, never ``auditID`` alone:
clients choose ``Audit-ID`` themselves, so keying on it would let an attacker suppress an event as
a "duplicate". ``leaf_index`` is set by the store when the record becomes a trail leaf.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec
import orjson
import zstandard


def printable(text: str) -> str:
    """``text`` as valid UTF-8: a file name that is not (Python keeps its bytes as surrogates)
    gets ``\\xff`` escapes, so it can be stored, hashed into the trail and printed."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class SourceRef(msgspec.Struct, frozen=True, kw_only=True):
    """Where a record was read: ``node-a/audit-file`` within a cluster."""

    cluster: str = ""
    node: str = ""
    stream: str = ""

    def label(self) -> str:
        return _label(self)

    @classmethod
    def parse(cls, label: str) -> SourceRef:
        """The inverse of ``label()`` for what kubetrail writes.

        Streams are named ``kind:detail`` (``audit-file:/var/log/…``, ``audit-webhook:apiserver-1``,
        ``file:…``) and the detail may hold ``/``; cluster and node names are DNS names without ``/``
        or ``:``. So the stream starts at the first part with a ``:``, or is the last part.
        """
        return _parse_label(label) if cls is SourceRef else _parsed(cls, label)


def _parsed(cls: type[SourceRef], label: str) -> SourceRef:
    parts = label.split("/")
    start = next((i for i, p in enumerate(parts) if ":" in p), len(parts) - 1)
    head = parts[:start]
    return cls(cluster=head[0] if head else "", node="/".join(head[1:]), stream="/".join(parts[start:]))


@lru_cache(maxsize=1024)
def _parse_label(label: str) -> SourceRef:
    """``SourceRef.parse`` for every record read back (a store holds a handful of sources; a SourceRef
    is frozen, so one object serves every record of its source)."""
    return _parsed(SourceRef, label)


@lru_cache(maxsize=1024)
def _label(ref: SourceRef) -> str:
    """``SourceRef.label`` (asked for every record stored; a process sees a handful of sources)."""
    return "/".join(p for p in (ref.cluster, ref.node, ref.stream) if p)


class Redaction(msgspec.Struct, frozen=True, omit_defaults=True):
    """One value removed before anything was written: where it was and a keyed digest of it.

    ``hmac`` (HMAC-SHA256 under the deployment's redaction key, 16 hex digits) lets an analyst see
    that two events carried the same secret without storing it, and without letting anyone who
    holds the store test a guess. Records written before keyed digests carry ``sha256_prefix``
    (an unkeyed 12-hex-digit SHA-256 prefix) instead.
    """

    path: str
    hmac: str = ""
    what: str = "secret"
    sha256_prefix: str = ""


class AuditMeta(msgspec.Struct, tag="audit", tag_field="meta"):
    """Fields extracted from an audit event; indexed columns in the store.

    Not ``kw_only``: ``extract_meta`` builds one per event positionally (23 keywords cost ~1 µs,
    positions ~0.15). Everywhere else, name the fields."""

    audit_id: str = ""
    stage: str = ""
    level: str = ""
    verb: str = ""
    user: str = ""
    groups: list[str] = []
    uid: str = ""
    impersonated_user: str = ""
    impersonated_groups: list[str] = []
    resource: str = ""
    subresource: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    name: str = ""
    code: int | None = None
    source_ips: list[str] = []
    user_agent: str = ""
    request_uri: str = ""
    credential_id: str = ""
    request_received: int | None = None
    stage_time: int | None = None
    # What the delivery format could not carry (e.g. GKE has no groups/extra/stage).
    lossy: list[str] = []


class LogMeta(msgspec.Struct, kw_only=True, tag="log", tag_field="meta"):
    """Fields of a log line (kinds ``container``, ``node``, ``k8s_event``); indexed columns in the store.

    The path of a container log names namespace, pod, pod UID and container; the ``enrich`` stage
    adds what only the API server knows (workload through the owner chain, image, labels). ``marks``
    says how far to trust them: ``pod-unknown`` (the API server never knew the pod: path only),
    ``tombstone`` (enriched from a deleted pod's last state), ``truncated`` (a line cut at
    ``max_line_bytes``), ``unenriched`` (no API server configured).
    """

    node: str = ""
    namespace: str = ""
    pod: str = ""
    pod_uid: str = ""
    container: str = ""
    container_id: str = ""
    stream: str = ""  # stdout | stderr for containers; the journald priority name or file for nodes
    workload: str = ""  # kind/namespace/name, lower-case kind: deployment/shop/web, pod/shop/debug
    unit: str = ""  # systemd unit, syslog identifier, "kernel", or a textfile's configured unit
    image: str = ""
    image_id: str = ""
    labels: dict[str, str] = {}
    node_labels: dict[str, str] = {}  # the selected labels of the node the line came from (zone, instance type)
    namespace_labels: dict[str, str] = {}  # the selected labels of the pod's namespace (Pod Security level)
    restart: int | None = None  # the container's restart count (the N of N.log)
    marks: list[str] = []


class Record(msgspec.Struct, kw_only=True, dict=True):
    kind: str
    key: str
    time: int
    source: SourceRef
    body: bytes
    meta: AuditMeta | LogMeta
    seq: int = 0
    chain: bytes = b""  # the seal stage's running hash up to this record (stages/seal.py)
    format: str = ""
    redactions: list[Redaction] = []
    leaf_index: int | None = None

    def log(self) -> LogMeta:
        """``meta`` of a log record (kinds other than ``audit``)."""
        assert isinstance(self.meta, LogMeta), self.kind
        return self.meta

    def event(self) -> dict[str, Any]:
        """The parsed (redacted) body; parsed on demand because most stages never need it."""
        cached: dict[str, Any] | None = self.__dict__.get("_event")
        if cached is None:
            cached = orjson.loads(self.body)
            self.__dict__["_event"] = cached
        return cached


Batch = list[Record]

LOG_KINDS = ("container", "node", "k8s_event")


# The batch encoding shared by the node's WAL (buffer/) and the broker messages (sinks/, sources/broker.py):
# MessagePack of the records, every field, so a record crosses the broker unchanged. Versioned by a prefix.
BATCH_V1 = b"ktb1"
_batch_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(list[Record])


def encode_records(records: Batch) -> bytes:
    """The records as MessagePack (no prefix: the WAL frames them and carries its own version)."""
    return _batch_encoder.encode(records)


def decode_records(data: bytes | memoryview) -> Batch:
    """The inverse of ``encode_records``; raises ``msgspec.DecodeError`` for bytes that are not."""
    return _batch_decoder.decode(data)


def encode_batch(records: Batch) -> bytes:
    """One broker message: ``b"ktb1"`` + zstd(MessagePack records)."""
    return BATCH_V1 + _zstd_c.compress(encode_records(records))


def decode_batch(data: bytes) -> Batch:
    """A broker message back into records; ``ValueError`` for anything that is not a v1 batch."""
    if not data.startswith(BATCH_V1):
        raise ValueError("not a kubetrail batch (no ktb1 prefix)")
    try:
        raw = _zstd_d.decompressobj().decompress(data[len(BATCH_V1):])
        return decode_records(raw)
    except (zstandard.ZstdError, msgspec.DecodeError) as exc:
        raise ValueError(f"a kubetrail batch that cannot be decoded: {exc}") from exc


_zstd_c = zstandard.ZstdCompressor(level=3)
_zstd_d = zstandard.ZstdDecompressor()


class Decoded(msgspec.Struct):
    """One audit Event decoded from whatever envelope delivered it (see sources/formats.py)."""

    event: dict[str, Any]
    format: str
    position: str
    lossy: list[str] = []


class Rejected(msgspec.Struct):
    """Input that is not an audit Event: where it was and why, for the rejects file.

    No excerpt of the input is kept: a malformed line can still carry a secret that redaction,
    which needs a parsed event, could not find."""

    position: str
    reason: str
