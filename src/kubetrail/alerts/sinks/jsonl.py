"""Alerts appended to a JSON lines file (fsync'd), one ``Alert.to_json()`` object per line."""

from __future__ import annotations

import os

import orjson

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import JsonlSinkConfig
from kubetrail.errors import SinkError


class JsonlSink:
    def __init__(self, config: JsonlSinkConfig) -> None:
        self.name = config.name
        self.path = config.path

    def send(self, alerts: list[Alert]) -> None:
        try:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            with open(self.path, "ab") as fh:
                for a in alerts:
                    fh.write(orjson.dumps(a.to_json(), default=str) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
