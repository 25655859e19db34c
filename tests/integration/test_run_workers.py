"""`kubetrail run --workers N` (issue 18): with N > 0 detection and credentials run in a process of
their own beside the writer, fed what the writer committed; they decide the same alerts and the same
credential inventory as `run --workers 0`, from a real audit file the run tails, and stop cleanly on
SIGTERM, even one sent to the whole process group. `workers:` in the config file is the same setting
(the flag wins)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from kubetrail.demo.scenario import generate
from kubetrail.errors import StoreError
from kubetrail.stages.redaction_key import KEY_FILE, load_or_create
from kubetrail.store import open_store
from kubetrail.store.testing import execute as sql

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 600


def _descendants(root: int) -> list[int]:
    """Processes below ``root`` (multiprocessing's fork server and what it started)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    parents[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out = []
    for pid in parents:
        p = parents.get(pid)
        for _ in range(8):
            if p is None or p == root:
                break
            p = parents.get(p)
        if p == root:
            out.append(pid)
    return out


def _run(tmp_path: Path, name: str, log: Path, key: Path, flag: list[str], config_workers: int | None,
         group: bool = False) -> dict[str, Any]:
    """``group``: SIGTERM goes to the whole process group (systemd's stop, a Ctrl-C's SIGINT alike),
    the consumers' process included: it must leave the stop to the writer."""
    data = tmp_path / name
    data.mkdir()
    (data / KEY_FILE).write_bytes(key.read_bytes())
    cfg: dict[str, Any] = {"data_dir": str(data), "checkpoint_interval_secs": 0.5,
                           "sources": [{"type": "audit_file", "path": str(log), "poll_ms": 50}]}
    if config_workers is not None:
        cfg["workers"] = config_workers
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "kubetrail", "run", "--config", str(path), *flag],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=group)
    try:
        deadline = time.monotonic() + 120
        size = 0
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                with open_store(str(data), readonly=True) as s:
                    size = s.size()
            except StoreError:  # not created, or not migrated yet
                size = 0
            if size == EVENTS:
                break
            time.sleep(0.2)
        assert size == EVENTS, f"stored {size} of {EVENTS}"
        helpers = _descendants(proc.pid)
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    with open_store(str(data), readonly=True) as s:
        state = {
            "alerts": sorted(tuple(r) for r in sql(s, "SELECT rule, subject, priority, time, occurrences FROM alerts")),
            "creds": list(sql(s, "SELECT kind, credential_id, subject, doc FROM credentials ORDER BY id")),
            "uses": len(list(sql(s, "SELECT credential, request FROM credential_uses"))),
        }
    return {"state": state, "helpers": helpers, "err": err}


def test_run_with_workers_decides_what_one_process_does(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate(events=EVENTS).events[:EVENTS]))
    key = tmp_path / "redaction.key"
    load_or_create(str(key))

    one = _run(tmp_path, "one", log, key, ["--workers", "0"], config_workers=3)
    apart = _run(tmp_path, "apart", log, key, ["--workers", "2"], config_workers=0)
    from_config = _run(tmp_path, "config", log, key, [], config_workers=1, group=True)

    assert one["helpers"] == [] and "process of their own" not in one["err"]
    for r, n in ((apart, 2), (from_config, 1)):
        assert f"detection and credentials run in a process of their own (workers: {n})" in r["err"]
        assert len(r["helpers"]) >= 2  # the fork server and the detection/credentials process
    a = one["state"]
    assert len(a["alerts"]) > 5 and a["creds"] and a["uses"]
    assert apart["state"] == a and from_config["state"] == a


def test_a_negative_workers_setting_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "k.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "d"), "workers": -1,
                                   "sources": [{"type": "audit_file", "path": str(tmp_path / "a.log")}]}))
    out = subprocess.run([sys.executable, "-m", "kubetrail", "run", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "workers" in out.stderr and "0 or more" in out.stderr
