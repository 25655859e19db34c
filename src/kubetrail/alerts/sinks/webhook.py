"""Generic webhook: one JSON POST per alert, the body is ``Alert.to_json()``."""

from __future__ import annotations

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import WebhookSinkConfig
from kubetrail.alerts.sinks.http import post_json


class WebhookSink:
    def __init__(self, config: WebhookSinkConfig) -> None:
        self.name = config.name
        self.config = config

    def send(self, alerts: list[Alert]) -> None:
        url = self.config.resolved_url()
        for a in alerts:
            post_json(url, a.to_json(), self.config.timeout_secs, self.config.headers())
