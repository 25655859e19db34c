"""The collector reading a JetStream stream through a durable pull consumer (``source: {type: nats}``).

Several collectors with the same ``durable`` share the work: JetStream hands each message to one of
them. A message is acknowledged only after its records are committed to the store; one that is not
acknowledged within ``ack_wait_secs`` (a collector killed mid-batch) is delivered again.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kubetrail.brokers import connect_nats, import_nats
from kubetrail.errors import SourceError
from kubetrail.record import decode_batch
from kubetrail.sources.broker import Delivery


class NatsSourceConfig(msgspec.Struct, tag="nats", tag_field="type", frozen=True, kw_only=True,
                       forbid_unknown_fields=True):
    url: str = "nats://127.0.0.1:4222"
    stream: str = "KUBETRAIL"
    durable: str = "kubetrail-collector"
    ack_wait_secs: float = 60.0
    max_ack_pending: int = 1000
    connect_timeout_secs: float = 5.0

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not self.durable or any(c in self.durable for c in " .*>"):
            out.append(("durable", "a consumer name: no spaces, dots, * or >"))
        if self.ack_wait_secs <= 0 or self.max_ack_pending < 1:
            out.append(("", "ack_wait_secs > 0 and max_ack_pending >= 1"))
        return out

    def build(self) -> NatsSource:
        return NatsSource(self)


class NatsSource:
    def __init__(self, config: NatsSourceConfig) -> None:
        self.config = config
        self.nc: Any = None
        self.sub: Any = None
        self.undecodable = 0

    async def start(self) -> None:
        import_nats()
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        self.nc = await connect_nats(self.config.url, self.config.connect_timeout_secs, "kubetrail-collector",
                                     SourceError)
        js = self.nc.jetstream()
        try:
            await js.add_consumer(self.config.stream, ConsumerConfig(
                durable_name=self.config.durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.config.ack_wait_secs, max_ack_pending=self.config.max_ack_pending,
                max_deliver=-1))
            self.sub = await js.pull_subscribe_bind(self.config.durable, self.config.stream)
        except Exception as exc:  # noqa: BLE001 - whatever the server answered, one line
            await self.close()
            raise SourceError(f"cannot read stream {self.config.stream} as {self.config.durable}: {exc}") from exc

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        import nats.errors
        import nats.js.errors

        try:
            msgs = await self.sub.fetch(max_messages, timeout=timeout)
        except (nats.errors.TimeoutError, nats.js.errors.FetchTimeoutError, TimeoutError):
            return []
        except Exception as exc:  # noqa: BLE001 - a lost connection etc.: the collector retries
            raise SourceError(f"fetch from {self.config.stream} failed: {str(exc) or type(exc).__name__}") from exc
        out = []
        for msg in msgs:
            try:
                records = decode_batch(msg.data)
            except ValueError:
                # Not ours (or damaged): kept in the stream for inspection, never retried forever.
                self.undecodable += 1
                await msg.term()
                continue
            out.append(Delivery(records, msg))
        return out

    async def ack(self, deliveries: list[Delivery]) -> None:
        try:
            for d in deliveries:
                await d.handle.ack()
        except Exception as exc:  # noqa: BLE001 - stored already: the broker redelivers, the store refuses
            raise SourceError(f"ack to {self.config.stream} failed: {str(exc) or type(exc).__name__}") from exc

    async def lag(self) -> tuple[str, int] | None:
        try:
            info = await self.nc.jetstream().consumer_info(self.config.stream, self.config.durable)
        except Exception as exc:  # noqa: BLE001 - a metric: absent this time
            raise SourceError(f"consumer info: {exc}") from exc
        return self.config.stream, int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close(self) -> None:
        if self.nc is not None:
            try:
                await self.nc.close()
            finally:
                self.nc = None
