"""Alert sinks: where delivered alerts go. The table below is the whole registry.

Each sink has ``name`` and ``send(alerts)``; ``send`` raises ``SinkError`` when the receiver is
unreachable or refuses, and the outbox retries later. A sink never sees secrets: alert outputs are
rendered from redacted records.
"""

from __future__ import annotations

from typing import Protocol

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import (
    AlertmanagerSinkConfig,
    JsonlSinkConfig,
    SinkConfig,
    SlackSinkConfig,
    StdoutSinkConfig,
    WebhookSinkConfig,
)


class Sink(Protocol):
    name: str

    def send(self, alerts: list[Alert]) -> None: ...


def build_sink(config: SinkConfig) -> Sink:
    """The sink for one ``sinks[]`` entry of ``detect.yaml``."""
    from kubetrail.alerts.sinks import alertmanager, jsonl, slack, stdout, webhook

    table: dict[type, type] = {
        StdoutSinkConfig: stdout.StdoutSink,
        JsonlSinkConfig: jsonl.JsonlSink,
        WebhookSinkConfig: webhook.WebhookSink,
        SlackSinkConfig: slack.SlackSink,
        AlertmanagerSinkConfig: alertmanager.AlertmanagerSink,
    }
    sink: Sink = table[type(config)](config)
    return sink
