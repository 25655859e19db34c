"""What `run`, `agent` and `collector` share as long-running processes: SIGTERM/SIGINT finish the
current batch and exit 0, and ``telemetry.listen_address`` serves ``/healthz`` and ``/metrics``
(the manifests' liveness and readiness probes) for as long as the pipeline runs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

import click

from kubetrail.config import Config


class _Summary(Protocol):
    def line(self) -> str: ...


def run_until_signalled(name: str, config: Config, body: Callable[[threading.Event], _Summary]) -> None:
    """Run ``body(stop)`` until a signal sets ``stop``; print its summary line on stderr."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        click.echo(f"received {signal.Signals(signum).name}: finishing the current batch", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    probes = None
    if config.telemetry.listen_address:
        from kubetrail.web.probes import serve_telemetry

        probes = serve_telemetry(config.telemetry.listen_address, healthy=lambda: not stop.is_set())
        click.echo("kubetrail {}: /healthz and /metrics on {}:{}".format(name, *probes.address), err=True)
    try:
        summary = body(stop)
    finally:
        if probes is not None:
            probes.stop()
    click.echo(summary.line(), err=True)
