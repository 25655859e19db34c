"""Ship the node's WAL frames to a Kafka topic (the agent's ``sink: {type: kafka}``).

confluent-kafka's idempotent producer (``enable.idempotence``, which implies ``acks=all``): the
broker drops a retry of a message it already has within one producer session. The message key is
the source label, so one source's records stay in one partition, in order. ``send`` returns when
every message's delivery report came back without error; only then is the WAL trimmed. A restarted
agent is a new producer, so a frame sent again after a crash may be stored twice by Kafka; the
trail's key check keeps one. How durable an acknowledged message is, is the Kafka cluster's
business (replication factor, ``min.insync.replicas``): see docs/transport.md.
"""

from __future__ import annotations

# asyncio is imported in the coroutines that use it (they run under a loop, where it is loaded): the
# config imports this module in every command, and asyncio is ~20 ms of start-up `ingest` never uses.
from typing import Any

import msgspec

from kubetrail.brokers import message_id, split
from kubetrail.errors import SinkError
from kubetrail.record import Record


class KafkaSinkConfig(msgspec.Struct, tag="kafka", tag_field="type", frozen=True, kw_only=True,
                      forbid_unknown_fields=True):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "kubetrail-records"
    partitions: int = 1  # when the sink creates a missing topic
    replication_factor: int = 1  # when the sink creates a missing topic
    max_message_bytes: int = 900_000
    delivery_timeout_secs: float = 30.0
    options: dict[str, str] = {}  # more librdkafka settings (security.protocol, sasl.*, ssl.*)

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not self.topic or not self.bootstrap_servers:
            out.append(("", "bootstrap_servers and topic are required"))
        if self.partitions < 1 or self.replication_factor < 1 or self.delivery_timeout_secs <= 0:
            out.append(("", "partitions >= 1, replication_factor >= 1 and delivery_timeout_secs > 0"))
        if {"enable.idempotence", "acks"} & set(self.options):
            out.append(("options", "enable.idempotence and acks are fixed (true, all): records must not be lost"))
        return out

    def build(self) -> KafkaSink:
        return KafkaSink(self)


def ensure_topic(bootstrap: str, topic: str, partitions: int, replication: int, options: dict[str, str],
                 error: type[Exception], timeout: float = 10.0) -> None:
    """Create ``topic`` when the cluster does not have it (blocking; call from a thread)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **options})
    try:
        if topic in admin.list_topics(timeout=timeout).topics:
            return
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=replication)])
        futures[topic].result(timeout)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" in str(exc):
            return
        raise error(f"cannot create Kafka topic {topic} on {bootstrap}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - timeouts and transport errors: one line, retried by the caller
        raise error(f"cannot reach Kafka at {bootstrap}: {str(exc) or type(exc).__name__}") from exc


class KafkaSink:
    def __init__(self, config: KafkaSinkConfig) -> None:
        self.config = config
        self.producer: Any = None
        self.published = 0

    async def start(self) -> None:
        import asyncio

        from confluent_kafka import Producer

        c = self.config
        await asyncio.get_running_loop().run_in_executor(
            None, ensure_topic, c.bootstrap_servers, c.topic, c.partitions, c.replication_factor, c.options, SinkError)
        self.producer = Producer({"bootstrap.servers": c.bootstrap_servers, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5, "message.max.bytes": max(c.max_message_bytes + 65536, 1_000_000),
                                  "delivery.timeout.ms": int(c.delivery_timeout_secs * 1000), **c.options})

    async def send(self, batches: list[list[Record]]) -> None:
        import asyncio

        messages = [m for batch in batches if batch for m in split(batch, self.config.max_message_bytes)]
        errors: list[str] = []
        pending = [len(messages)]

        def report(err: Any, _msg: Any) -> None:
            pending[0] -= 1
            if err is not None:
                errors.append(str(err))

        try:
            for records, data in messages:
                self._produce(records, data, report)
        except Exception as exc:  # noqa: BLE001 - BufferError, KafkaException: the frames stay in the WAL
            raise SinkError(f"Kafka produce to {self.config.topic} failed: {exc}") from exc
        left = await asyncio.get_running_loop().run_in_executor(
            None, self.producer.flush, self.config.delivery_timeout_secs)
        if errors or left or pending[0]:
            raise SinkError(f"Kafka did not acknowledge {max(len(errors), pending[0], left)} of {len(messages)} "
                            f"messages to {self.config.topic}: {errors[0] if errors else 'timed out'}")
        self.published += len(messages)

    def _produce(self, records: list[Record], data: bytes, report: Any) -> None:
        while True:
            try:
                self.producer.produce(self.config.topic, value=data, key=records[0].source.label().encode(),
                                      headers=[("kt-id", message_id(records).encode())], on_delivery=report)
                return
            except BufferError:  # the local queue is full: let it drain, then go on
                self.producer.poll(0.1)

    async def close(self) -> None:
        import asyncio

        if self.producer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.producer.flush, 5.0)
            self.producer = None
