"""nats-py imported for the first time by two threads at once (an agent and a collector in one
process) must not fail: its modules import each other in a cycle, and CPython answers two threads
meeting in that cycle with ``_DeadlockError`` (seen in CI as an agent forwarder dying)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Each nats module takes 50 ms to load, so the two threads surely meet inside the import cycle.
SCRIPT = textwrap.dedent("""
    import asyncio, importlib.abc, sys, threading, time

    class Slow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.startswith("nats"):
                time.sleep(0.05)
            return None

    sys.meta_path.insert(0, Slow())
    from kubetrail.brokers import connect_nats
    from kubetrail.errors import KubetrailError
    from kubetrail.sources.nats import NatsSource, NatsSourceConfig

    failures = []

    def run(coro_factory):
        try:
            asyncio.run(coro_factory())
        except KubetrailError:
            pass  # nothing listens on port 1: the expected, clear error
        except BaseException as exc:
            failures.append(repr(exc))

    url = "nats://127.0.0.1:1"
    sink = lambda: connect_nats(url, 0.2, "t", KubetrailError)
    source = lambda: NatsSource(NatsSourceConfig(url=url, connect_timeout_secs=0.2)).start()
    threads = [threading.Thread(target=run, args=(f,)) for f in (source, sink, source, sink)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("FAILURES", failures)
    sys.exit(1 if failures else 0)
""")


def test_first_import_from_two_threads_does_not_deadlock() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
