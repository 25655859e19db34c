"""The agent SIGKILLed 10 times under load (issue 13 "Done means"): 0 lost, 0 duplicated.

The agent runs as its own process (``kubetrail agent`` where the command is registered; until then
the same ``pipeline.run_agent`` started by ``python -c``), reading an audit log that a writer keeps
appending to, shipping to a real nats-server; the collector stores what arrives.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from pathlib import Path

import pytest
from transport_util import (
    Held,
    InProc,
    Load,
    agent_config,
    collector_config,
    names,
    show,
    verify_ok,
    wait_for,
    write_config,
)

from kubetrail.config import parse
from kubetrail.pipeline import run_collector

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUNNER = """
import signal, sys, threading
from kubetrail.config import load
from kubetrail.pipeline import run_agent
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
print("agent up", file=sys.stderr, flush=True)
run_agent(load(sys.argv[1]), stop, log=lambda m: print(m, file=sys.stderr, flush=True))
"""


def agent_argv(cfg: str) -> list[str]:
    from kubetrail.cli import COMMANDS

    if "agent" in COMMANDS:
        return [sys.executable, "-m", "kubetrail", "agent", "--config", cfg]
    return [sys.executable, "-c", RUNNER, cfg]


def test_agent_sigkilled_ten_times_under_load(tmp_path: Path, nats_server) -> None:
    import subprocess

    stream, subject, durable = names()
    log = tmp_path / "audit.log"
    log.touch()
    cfg = write_config(tmp_path / "agent.yaml", agent_config(tmp_path, nats_server.url, stream, subject, log))
    col = collector_config(tmp_path, nats_server.url, stream, durable)
    collector = InProc()
    collector.start(run_collector, parse(col))
    load = Load(log, 4000, rate=250).start()
    rng = random.Random(12)
    alog = open(tmp_path / "agent.log", "ab")  # noqa: SIM115
    try:
        for _ in range(10):
            agent = subprocess.Popen(agent_argv(cfg), stdout=alog, stderr=alog)
            time.sleep(rng.uniform(1.0, 2.5))
            agent.send_signal(signal.SIGKILL)
            agent.wait(30)
        load.done.wait(60)
        agent = subprocess.Popen(agent_argv(cfg), stdout=alog, stderr=alog)
        try:
            wait_for(lambda: Held(col["data_dir"]).report(load.written)["stored"] >= 4000, 90)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)
    finally:
        alog.close()
        collector.close()
    held = Held(col["data_dir"])
    report = held.report(load.written)
    show("agent SIGKILL x10", report)
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["invented"] == 0
    seqs = sorted(r[2] for r in held.rows if r[0] == "audit")
    assert seqs == list(range(1, 4001))  # sealed once each: no seq reused or skipped across the kills
    assert not held.loss
    verify_ok(col["data_dir"])
