"""Alerts as lines on standard output: Falco-style text, or one JSON object per line."""

from __future__ import annotations

import sys

import orjson

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import StdoutSinkConfig
from kubetrail.timefmt import format_ns


def text_line(a: Alert) -> str:
    """``<time> <Priority> <output> (rule=… subject=… id=…)``, like Falco's stdout output."""
    return f"{format_ns(a.time)}: {a.priority} {a.output} (rule={a.rule!r} subject={a.subject} id={a.id})"


class StdoutSink:
    def __init__(self, config: StdoutSinkConfig, json: bool = False) -> None:
        self.name = config.name
        self.json = json

    def send(self, alerts: list[Alert]) -> None:
        out = sys.stdout
        for a in alerts:
            out.write((orjson.dumps(a.to_json(), default=str).decode() if self.json else text_line(a)) + "\n")
        out.flush()
