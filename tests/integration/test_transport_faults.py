"""Fault tests of issue 13 ("Done means"): each prints written / stored / lost / duplicated.

The agent runs in this process (threads) except where it is the one being killed; collectors run as
``kubetrail collector`` child processes where they are killed, nats-server is always a real child
process. A broker outage lasts ``KUBETRAIL_OUTAGE_SECS`` (default 5 s; the literal 60 s variant is
the ``slow`` test at the end).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import orjson
import pytest
from transport_util import (
    Held,
    InProc,
    Load,
    agent_config,
    alerts,
    collector_config,
    kubetrail_proc,
    names,
    show,
    verify_ok,
    wait_for,
    write_config,
)

from kubetrail.buffer import inspect
from kubetrail.config import parse
from kubetrail.pipeline import run_agent, run_collector
from kubetrail.testing import NatsServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OUTAGE_SECS = float(os.environ.get("KUBETRAIL_OUTAGE_SECS", "5"))


@pytest.fixture
def inproc():
    r = InProc()
    yield r
    r.close()


@pytest.fixture
def own_nats(tmp_path: Path, nats_server):  # nats_server: the CI/skip check and the binary exist
    servers: list[NatsServer] = []

    def make(**kw) -> NatsServer:
        s = NatsServer(tmp_path / f"nats{len(servers)}", **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.kill()


def settle(data: Path, written: set[str], secs: float = 90.0) -> dict[str, int]:
    wait_for(lambda: Held(data).report(written)["stored"] >= len(written), secs)
    return Held(data).report(written)


def test_collector_sigkilled_ten_times_under_load(tmp_path: Path, nats_server, inproc) -> None:
    stream, subject, durable = names()
    log = tmp_path / "audit.log"
    log.touch()
    inproc.start(run_agent, parse(agent_config(tmp_path, nats_server.url, stream, subject, log)))
    col = collector_config(tmp_path, nats_server.url, stream, durable)
    col["source"]["ack_wait_secs"] = 2
    cfg = write_config(tmp_path / "collector.yaml", col)
    load = Load(log, 4000, rate=250).start()
    rng = random.Random(13)
    for _ in range(10):
        proc = kubetrail_proc("collector", "--config", cfg, log=tmp_path / "collector.log")
        time.sleep(rng.uniform(1.0, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    load.done.wait(60)
    clog = tmp_path / "collector.log"
    before = clog.read_text().count("kubetrail collector: reading")
    final = kubetrail_proc("collector", "--config", cfg, log=clog)
    # up (its signal handlers set) before it is asked to stop
    assert wait_for(lambda: clog.read_text().count("kubetrail collector: reading") > before, 60)
    try:
        report = settle(Path(col["data_dir"]), load.written)
    finally:
        final.send_signal(signal.SIGTERM)
        final.wait(60)
    show("collector SIGKILL x10", report)
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["invented"] == 0
    assert Held(col["data_dir"]).ids and final.returncode == 0
    verify_ok(col["data_dir"])


def test_nats_server_sigkilled_and_restarted_under_load(tmp_path: Path, own_nats, inproc) -> None:
    server = own_nats().start()
    stream, subject, durable = names()
    log = tmp_path / "audit.log"
    log.touch()
    inproc.start(run_agent, parse(agent_config(tmp_path, server.url, stream, subject, log)))
    col = collector_config(tmp_path, server.url, stream, durable)
    col["source"]["ack_wait_secs"] = 2
    inproc.start(run_collector, parse(col))
    load = Load(log, 3000, rate=500).start()
    for _ in range(2):
        time.sleep(1.5)
        server.kill()
        time.sleep(0.5)
        server.start()
    load.done.wait(60)
    report = settle(Path(col["data_dir"]), load.written)
    inproc.close()
    show("nats-server SIGKILL + restart x2", report)
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["invented"] == 0
    verify_ok(col["data_dir"])


def test_one_of_three_cluster_servers_killed_during_load(tmp_path: Path, own_nats, inproc) -> None:
    ports = [free_port() for _ in range(3)]
    cluster = [own_nats(name=f"kt{i}", cluster_ports=ports, index=i) for i in range(3)]
    for s in cluster:
        s.start()
    urls = ",".join(s.url for s in cluster)
    stream, subject, durable = names()
    log = tmp_path / "audit.log"
    log.touch()
    agent = agent_config(tmp_path, urls, stream, subject, log)
    agent["sink"]["replicas"] = 3
    inproc.start(run_agent, parse(agent))
    col = collector_config(tmp_path, urls, stream, durable)
    col["source"]["ack_wait_secs"] = 2
    inproc.start(run_collector, parse(col))
    load = Load(log, 3000, rate=500).start()
    time.sleep(2.5)
    cluster[1].kill()
    load.done.wait(60)
    report = settle(Path(col["data_dir"]), load.written, secs=120)
    inproc.close()
    show("R3 cluster, one server SIGKILLed", report)
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["invented"] == 0
    verify_ok(col["data_dir"])


def broker_outage(tmp_path: Path, own_nats, inproc, outage: float) -> None:
    server = own_nats().start()
    stream, subject, durable = names()
    log = tmp_path / "audit.log"
    log.touch()
    inproc.start(run_agent, parse(agent_config(tmp_path, server.url, stream, subject, log)))
    col = collector_config(tmp_path, server.url, stream, durable)
    inproc.start(run_collector, parse(col))
    wal = str(tmp_path / "agent" / "wal")
    load = Load(log, int(200 * (outage + 4)), rate=200).start()
    time.sleep(1.0)
    server.kill()
    sizes = []
    end = time.monotonic() + outage
    while time.monotonic() < end:
        time.sleep(min(1.0, outage / 4))
        sizes.append(inspect(wal).records)
    server.start()
    load.done.wait(outage + 60)
    report = settle(Path(col["data_dir"]), load.written)
    drained = wait_for(lambda: inspect(wal).records == 0, 30)
    inproc.close()
    show(f"broker down {outage:.0f}s (WAL records during: {sizes})", report)
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0] > 0, sizes  # the WAL grew while it was down
    assert drained, inspect(wal)  # and drained after
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["invented"] == 0
    verify_ok(col["data_dir"])


def test_broker_down_the_wal_grows_then_drains(tmp_path: Path, own_nats, inproc) -> None:
    broker_outage(tmp_path, own_nats, inproc, OUTAGE_SECS)


@pytest.mark.skipif(os.environ.get("KUBETRAIL_LONG_FAULTS") != "1",
                    reason="the literal 60 s outage: set KUBETRAIL_LONG_FAULTS=1 (the short one always runs)")
def test_broker_down_sixty_seconds(tmp_path: Path, own_nats, inproc) -> None:
    broker_outage(tmp_path, own_nats, inproc, 60.0)


def test_corrupted_wal_segment_is_quarantined_alerted_and_the_rest_delivered(tmp_path: Path, own_nats,
                                                                             inproc) -> None:
    server = own_nats()  # not started yet: the agent buffers everything
    stream, subject, durable = names()
    log = tmp_path / "audit.log"
    log.touch()
    agent = parse(agent_config(tmp_path, server.url, stream, subject, log, segment_bytes=64 << 10))
    stop = inproc.start(run_agent, agent)
    load = Load(log, 2000, rate=4000).start()
    load.done.wait(30)
    wal = tmp_path / "agent" / "wal"
    assert wait_for(lambda: inspect(str(wal)).records == 2000, 30)
    stop.set()
    inproc.close()
    segs = sorted(wal.glob("wal-*.seg"))
    assert len(segs) >= 4
    with open(segs[1], "r+b") as fh:  # bytes flipped in the middle of an old segment
        fh.seek(segs[1].stat().st_size // 2)
        fh.write(b"\xa5" * 32)
    server.start()
    inproc.__init__()
    inproc.start(run_agent, agent)
    col = collector_config(tmp_path, server.url, stream, durable)
    inproc.start(run_collector, parse(col))
    data = Path(col["data_dir"])
    assert wait_for(lambda: Held(data).loss, 60)
    loss = [orjson.loads(b) for b in _loss_bodies(data)]
    declared = {f"r-{s - 1:08d}" for b in loss for s in range(b["first_seq"], b["last_seq"] + 1)}
    report = settle(data, load.written - declared)
    status = inspect(str(wal))
    inproc.close()
    full = Held(data).report(load.written)
    show("WAL segment corrupted", full)
    assert [b["reason"] for b in loss] == ["corrupt"] and 0 < len(declared) < 2000  # one damaged frame
    assert report["lost"] == 0 and report["duplicated"] == 0  # everything else delivered
    assert set(Held(data).ids) == load.written - declared  # lost exactly what was declared
    assert status.quarantined_segments == 1
    gaps = alerts(data, "Records Lost in Transit")
    assert [(a["fields"]["declared_drop"], a["fields"]["reason"]) for a in gaps] == [(True, "corrupt")]
    verify_ok(data)


def _loss_bodies(data: Path) -> list[bytes]:
    from kubetrail.store import open_store

    store = open_store(str(data), readonly=True)
    try:
        return [store.get(key).body for key in Held(data).loss_keys]
    finally:
        store.close()


def full_fs_agent(tmp_path: Path, url: str, stream: str, subject: str, log: Path, wal: str, when_full: str):
    cfg = agent_config(tmp_path, url, stream, subject, log, when_full=when_full, segment_bytes=256 << 10)
    cfg["buffer"]["dir"] = wal
    cfg["sources"][0]["max_batch_bytes"] = 64 << 10  # frames far smaller than the filesystem
    return parse(cfg)


def test_full_filesystem_with_block_stops_reading_and_resumes_without_loss(tmp_path: Path, own_nats, inproc,
                                                                          small_fs) -> None:
    wal = small_fs(2 << 20)
    server = own_nats()  # down: everything stays in the WAL until the filesystem is full
    stream, subject, durable = names()
    log = tmp_path / "audit.log"
    log.write_bytes(b"")
    inproc.start(run_agent, full_fs_agent(tmp_path, server.url, stream, subject, log, wal, "block"))
    load = Load(log, 5000, rate=20000).start()
    load.done.wait(30)
    counts = []
    for _ in range(3):  # the WAL stops growing: the source stopped reading
        time.sleep(1.0)
        counts.append(inspect(wal).records)
    assert counts[0] == counts[-1] and 0 < counts[-1] < 5000, counts
    server.start()
    col = collector_config(tmp_path, server.url, stream, durable)
    inproc.start(run_collector, parse(col))
    report = settle(Path(col["data_dir"]), load.written)
    inproc.close()
    show(f"WAL on a full 2 MiB tmpfs, block (stalled at {counts[-1]} records)", report)
    assert report["lost"] == 0 and report["duplicated"] == 0 and report["invented"] == 0
    verify_ok(col["data_dir"])


def test_full_filesystem_with_drop_oldest_loses_exactly_what_it_declares(tmp_path: Path, own_nats, inproc,
                                                                         small_fs) -> None:
    wal = small_fs(2 << 20)
    server = own_nats()
    stream, subject, durable = names()
    log = tmp_path / "audit.log"
    log.write_bytes(b"")
    inproc.start(run_agent, full_fs_agent(tmp_path, server.url, stream, subject, log, wal, "drop_oldest"))
    load = Load(log, 8000, rate=20000).start()
    load.done.wait(30)
    assert wait_for(lambda: _read_all(tmp_path), 30)
    server.start()
    col = collector_config(tmp_path, server.url, stream, durable)
    inproc.start(run_collector, parse(col))
    data = Path(col["data_dir"])
    assert wait_for(lambda: Held(data).loss, 60)
    time.sleep(1.0)
    bodies = [orjson.loads(b) for b in _loss_bodies(data)]
    declared = {f"r-{s - 1:08d}" for b in bodies for s in range(b["first_seq"], b["last_seq"] + 1)}
    report = settle(data, load.written - declared)
    inproc.close()
    full = Held(data).report(load.written)
    show(f"WAL on a full 2 MiB tmpfs, drop_oldest ({len(declared)} declared lost)", full)
    assert declared and all(b["reason"] == "dropped" for b in bodies)
    assert set(Held(data).ids) == load.written - declared  # lost exactly what the markers say
    assert report["duplicated"] == 0 and report["invented"] == 0
    gaps = alerts(data, "Records Lost in Transit")
    ranges = {(b["first_seq"], b["last_seq"]) for b in bodies}
    assert {(a["fields"]["first_seq"], a["fields"]["last_seq"]) for a in gaps} <= ranges
    assert sum(1 + a["suppressed"] for a in gaps) == len(ranges)  # one per range (past 20, folded: rate limit)
    assert all(a["fields"]["declared_drop"] is True for a in gaps)
    verify_ok(data)


def _read_all(tmp_path: Path) -> bool:
    """The agent has read the whole log (its WAL position is at the end of the file)."""
    from kubetrail.buffer import recovery

    found = recovery.inspect(str(next(tmp_path.glob("fs*"))), None)
    log = tmp_path / "audit.log"
    return any(f'"offset": {log.stat().st_size}' in p or f'"offset":{log.stat().st_size}' in p
               for p in found.positions.values())
