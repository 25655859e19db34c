"""Ship the node's WAL frames to a NATS JetStream stream (the agent's ``sink: {type: nats}``).

One message carries many records (``record.encode_batch``: zstd'd MessagePack), because one
publish per record caps a Python client at about 15k msg/s. A message's ``Nats-Msg-Id`` is the key
of its content: the record's key for one record, SHA-256 over the records' keys for several, so a
frame published again after a crash or a lost ack is dropped by the server inside
``duplicate_window_secs`` (and by the trail's key after it). ``send`` returns only when JetStream
acknowledged every message; only then does the agent trim its WAL.

At start the stream is created (file storage, ``replicas``, ``discard: new`` so a full stream pushes
back instead of dropping old records) or checked: a stream on memory storage or with fewer
replicas than configured is refused. How often the server fsyncs is its own setting
(``jetstream { sync_interval }``, 2 minutes by default: set ``always`` where a power loss must not
lose acknowledged records; see docs/transport.md).
"""

from __future__ import annotations

# asyncio is imported in the coroutines that use it (they run under a loop, where it is loaded): the
# config imports this module in every command, and asyncio is ~20 ms of start-up `ingest` never uses.
from typing import Any

import msgspec

from kubetrail.brokers import connect_nats, message_id, split, subject_matches
from kubetrail.errors import SinkError
from kubetrail.record import Record


class NatsSinkConfig(msgspec.Struct, tag="nats", tag_field="type", frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str = "nats://127.0.0.1:4222"  # several servers: comma-separated
    stream: str = "KUBETRAIL"
    subject: str = "kubetrail.records"
    stream_subjects: list[str] = []  # when the sink creates the stream; default [subject]
    replicas: int = 1
    duplicate_window_secs: float = 120.0
    max_age_secs: float = 7 * 86400.0
    max_message_bytes: int = 900_000
    publish_timeout_secs: float = 5.0
    max_in_flight: int = 16
    connect_timeout_secs: float = 5.0

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not self.stream or any(c in self.stream for c in " .*>"):
            out.append(("stream", "a JetStream name: no spaces, dots, * or >"))
        if not self.subject or any(c in self.subject for c in " *>"):
            out.append(("subject", "a literal subject (no wildcards) to publish on"))
        if not 1 <= self.replicas <= 5:
            out.append(("replicas", "must be between 1 and 5"))
        if self.max_message_bytes < 1024 or self.publish_timeout_secs <= 0 or self.max_in_flight < 1:
            out.append(("", "max_message_bytes >= 1024, publish_timeout_secs > 0 and max_in_flight >= 1"))
        return out

    def build(self) -> NatsSink:
        return NatsSink(self)


class NatsSink:
    def __init__(self, config: NatsSinkConfig) -> None:
        self.config = config
        self.nc: Any = None
        self.js: Any = None
        self.published = 0
        self.duplicates = 0

    async def start(self) -> None:
        self.nc = await connect_nats(self.config.url, self.config.connect_timeout_secs, "kubetrail-agent", SinkError)
        self.js = self.nc.jetstream(timeout=self.config.publish_timeout_secs)
        try:
            await ensure_stream(self.js, self.config)
        except BaseException:
            await self.close()
            raise

    async def send(self, batches: list[list[Record]]) -> None:
        """Publish every batch; returns when JetStream acknowledged them all, else raises SinkError."""
        import asyncio

        messages = [m for batch in batches if batch for m in split(batch, self.config.max_message_bytes)]
        sem = asyncio.Semaphore(self.config.max_in_flight)

        async def one(records: list[Record], data: bytes) -> Any:
            async with sem:
                headers = {"Nats-Msg-Id": message_id(records), "Kt-Source": records[0].source.label(),
                           "Kt-Records": str(len(records))}
                return await self.js.publish(self.config.subject, data, headers=headers,
                                             timeout=self.config.publish_timeout_secs)

        results = await asyncio.gather(*(one(r, d) for r, d in messages), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise SinkError(f"NATS did not acknowledge {len(failed)} of {len(messages)} messages: "
                            f"{str(failed[0]) or type(failed[0]).__name__}")
        self.published += len(messages)
        self.duplicates += sum(1 for r in results if getattr(r, "duplicate", False))

    async def close(self) -> None:
        if self.nc is not None:
            try:
                await self.nc.close()
            finally:
                self.nc = None


async def ensure_stream(js: Any, config: NatsSinkConfig) -> None:
    """Create the stream, or check that the existing one keeps what it acknowledges."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    try:
        info = await js.stream_info(config.stream)
    except NotFoundError:
        try:
            await js.add_stream(StreamConfig(
                name=config.stream, subjects=config.stream_subjects or [config.subject], storage=StorageType.FILE,
                num_replicas=config.replicas, retention=RetentionPolicy.LIMITS, discard=DiscardPolicy.NEW,
                duplicate_window=config.duplicate_window_secs, max_age=config.max_age_secs))
        except Exception as exc:  # noqa: BLE001 - a refusal by the server, whatever its type
            raise SinkError(f"cannot create JetStream stream {config.stream}: {exc}") from exc
        return
    except Exception as exc:  # noqa: BLE001
        raise SinkError(f"cannot look up JetStream stream {config.stream}: {str(exc) or type(exc).__name__}") from exc
    got = info.config
    if got.storage != StorageType.FILE:
        raise SinkError(f"JetStream stream {config.stream} uses {got.storage} storage: records it acknowledges "
                        "would not survive a server restart (kubetrail needs file storage)")
    if (got.num_replicas or 1) < config.replicas:
        raise SinkError(f"JetStream stream {config.stream} has {got.num_replicas} replicas; the config asks "
                        f"for {config.replicas}")
    if not any(subject_matches(p, config.subject) for p in got.subjects or []):
        raise SinkError(f"JetStream stream {config.stream} does not take subject {config.subject} "
                        f"(its subjects: {', '.join(got.subjects or [])})")
