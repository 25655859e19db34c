"""The collector reading a Kafka topic as a consumer group (``source: {type: kafka}``).

Offsets are committed by hand, synchronously, after the store committed the records of a fetch;
a rebalance or a crash before that hands the messages out again and the store refuses keys it
holds. Joining a group takes about ``session_timeout_secs / 2`` on some brokers: keep it short.
"""

from __future__ import annotations

# asyncio is imported in the coroutines that use it (they run under a loop, where it is loaded): the
# config imports this module in every command, and asyncio is ~20 ms of start-up `ingest` never uses.
from typing import Any

import msgspec

from kubetrail.errors import SourceError
from kubetrail.record import decode_batch
from kubetrail.sources.broker import Delivery


class KafkaSourceConfig(msgspec.Struct, tag="kafka", tag_field="type", frozen=True, kw_only=True,
                        forbid_unknown_fields=True):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "kubetrail-records"
    group: str = "kubetrail-collector"
    session_timeout_secs: float = 10.0
    options: dict[str, str] = {}  # more librdkafka settings (security.protocol, sasl.*, ssl.*)

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not self.topic or not self.group or not self.bootstrap_servers:
            out.append(("", "bootstrap_servers, topic and group are required"))
        if {"enable.auto.commit", "group.id"} & set(self.options):
            out.append(("options", "enable.auto.commit and group.id are set by kubetrail"))
        return out

    def build(self) -> KafkaSource:
        return KafkaSource(self)


class KafkaSource:
    def __init__(self, config: KafkaSourceConfig) -> None:
        self.config = config
        self.consumer: Any = None
        self.undecodable = 0

    async def start(self) -> None:
        import asyncio

        from confluent_kafka import Consumer

        from kubetrail.sinks.kafka import ensure_topic

        c = self.config
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, ensure_topic, c.bootstrap_servers, c.topic, 1, 1, c.options, SourceError)
        self.consumer = Consumer({"bootstrap.servers": c.bootstrap_servers, "group.id": c.group,
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                  "session.timeout.ms": int(c.session_timeout_secs * 1000),
                                  "isolation.level": "read_committed", **c.options})
        self.consumer.subscribe([c.topic])

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        import asyncio

        try:
            msgs = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.consumer.consume(num_messages=max_messages, timeout=timeout))
        except Exception as exc:  # noqa: BLE001 - the collector retries
            raise SourceError(f"Kafka consume from {self.config.topic} failed: {exc}") from exc
        out = []
        for msg in msgs:
            if msg.error() is not None:
                if msg.error().fatal():
                    raise SourceError(f"Kafka: {msg.error()}")
                continue  # partition EOF and other informational events
            try:
                records = decode_batch(msg.value() or b"")
            except ValueError:
                self.undecodable += 1  # not ours: skipped (its offset is committed with the next ack)
                records = []
            out.append(Delivery(records, msg))
        return out

    async def ack(self, deliveries: list[Delivery]) -> None:
        import asyncio

        from confluent_kafka import TopicPartition

        last: dict[tuple[str, int], int] = {}
        for d in deliveries:
            key = (d.handle.topic(), d.handle.partition())
            last[key] = max(last.get(key, -1), d.handle.offset())
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.consumer.commit(offsets=offsets, asynchronous=False))
        except Exception as exc:  # noqa: BLE001 - stored already: redelivery is refused by the store
            raise SourceError(f"Kafka commit failed: {exc}") from exc

    async def lag(self) -> tuple[str, int] | None:
        return None  # the consumer's lag is exported by Kafka's own tooling (kafka-consumer-groups)

    async def close(self) -> None:
        import asyncio

        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await asyncio.get_running_loop().run_in_executor(None, consumer.close)
