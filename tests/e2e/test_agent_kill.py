"""The node agent under SIGKILL: a simulated node writes CRI files exactly as containerd and the
kubelet do (partial lines, rename+gzip rotation, a restart, a pod deletion, a Deployment's pod
rescheduled from node-a's directory to node-b's) while `kubetrail agent` is SIGKILLed at random
moments 10 times. Afterwards every line is stored exactly once, partial lines joined intact, each
with its pod and workload, and `kubetrail logs --workload deployment/shop/web` follows the app
across both nodes in time order. The API server is the stand-in, serving the recorded cluster."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kubetrail.demo.apiserver import StandInApiServer
from kubetrail.demo.node import SimNode
from kubetrail.timefmt import parse_when

pytestmark = pytest.mark.slow
KT = os.path.join(os.path.dirname(sys.executable), "kubetrail")
RECORDING = Path(__file__).parents[1] / "data" / "kube" / "cluster.json"
PODS = "/api/v1/pods"
WEB_A = "0b4d6a3e-1111-4d7c-9a4b-000000000001"  # deployment shop/web, recorded on node-a
DB = "0b4d6a3e-1111-4d7c-9a4b-000000000002"  # statefulset shop/db
JOB = "0b4d6a3e-1111-4d7c-9a4b-000000000003"  # cronjob ops/report
WEB_B = "0b4d6a3e-1111-4d7c-9a4b-0000000000b1"  # the rescheduled web pod, on node-b
WORKLOAD = {WEB_A: "deployment/shop/web", WEB_B: "deployment/shop/web", DB: "statefulset/shop/db",
            JOB: "cronjob/ops/report"}


def logs(data: str, *args: str, check: bool = True) -> list[dict[str, Any]]:
    out = subprocess.run([KT, "logs", "--json", "--data", data, *args], capture_output=True, text=True)
    assert out.returncode == 0 or not check, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


class Agent:
    """`kubetrail agent` as a child process that can be SIGKILLed and started again."""

    def __init__(self, config: str) -> None:
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.mark = 0  # the log's size when the current agent started
        self.lock = threading.Lock()

    def start(self) -> None:
        self.mark = os.path.getsize(self.config + ".log") if os.path.exists(self.config + ".log") else 0
        with open(self.config + ".log", "ab") as err:  # kept in tmp_path for a failure's post-mortem
            self.proc = subprocess.Popen([KT, "agent", "--config", self.config, "--log-level", os.environ.get("KT_AGENT_LOG", "info")],
                                         stdout=subprocess.DEVNULL, stderr=err)

    def kill_and_restart(self) -> None:
        with self.lock:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1
            self.start()

    def stop(self) -> int:
        """SIGTERM once the current agent is up (a process still importing dies of the signal)."""
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(self.config + ".log", "rb") as fh:
                fh.seek(self.mark)
                if b"kubetrail agent: " in fh.read():
                    break
            time.sleep(0.2)
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def _processes_of(config: str) -> list[int]:
    """The processes whose command line names ``config`` (the agents and their workers)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as fh:
            if config.encode() in fh.read():
                found.append(int(pid))
    return found


def wait_stored(data: str, want: int, secs: float = 60, *args: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + secs
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = logs(data, *args, check=False)  # the first agent may still be creating the store
        if len(rows) >= want:
            return rows
        time.sleep(0.3)
    return rows


def test_sigkilled_agent_stores_every_line_once_with_its_workload(tmp_path: Path) -> None:
    """10 random SIGKILLs during partial lines, rotations, a restart, a deletion and a reschedule."""
    rng = random.Random(12)
    api = StandInApiServer()
    api.load(json.loads(RECORDING.read_text()))
    api.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": api.url}}], "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    root_a, root_b, data = tmp_path / "node-a", tmp_path / "node-b", tmp_path / "data"
    root_a.mkdir()
    root_b.mkdir()
    config = tmp_path / "agent.yaml"
    config.write_text(f"data_dir: {data}\ncheckpoint_interval_secs: 2\ndetect: {{enabled: false}}\n"
                      f"sources:\n  - {{type: cri_logs, root: {root_a}, node: node-a, poll_ms: 100}}\n"
                      f"  - {{type: cri_logs, root: {root_b}, node: node-b, poll_ms: 100}}\n"
                      f"enrich: {{kubeconfig: {kubeconfig}, tombstone_secs: 600}}\n")
    # Rotations are gzipped as the kubelet does; none is pruned (max_files), since what the kubelet
    # deletes before any agent ran cannot be stored by anyone.
    a = SimNode(str(root_a), "node-a", partial_bytes=64, max_files=100)
    b = SimNode(str(root_b), "node-b", partial_bytes=64, max_files=100)
    b.clock_ns = a.clock_ns  # one cluster clock
    a.start_pod("shop", "web-5d8f7c9b6-abcde", WEB_A, ["web"])
    a.start_pod("shop", "db-0", DB, ["postgres"])
    a.start_pod("ops", "report-28599000-x7k2p", JOB, ["report"])

    agent = Agent(str(config))
    agent.start()
    done = threading.Event()

    def killer() -> None:
        while agent.kills < 10 and not done.is_set():
            time.sleep(rng.uniform(1.0, 3.5))  # alive from before its start-up to well into its work
            agent.kill_and_restart()

    k = threading.Thread(target=killer)
    k.start()
    seq = 0
    try:
        def burst(node: SimNode, uid: str, container: str, n: int) -> None:
            nonlocal seq
            for _ in range(n):
                seq += 1
                roll = rng.random()
                text = f"#{seq} {container} " + "y" * rng.choice([5, 40, 150, 400])
                if roll < 0.15:
                    node.write_torn(uid, container, f"#{seq} torn-first-half ", "and the second half", "stderr")
                else:
                    node.write(uid, container, text, "stderr" if roll < 0.3 else "stdout")
                if rng.random() < 0.03:
                    node.rotate(uid, container)
            time.sleep(rng.uniform(0.05, 0.2))

        for _ in range(8):
            burst(a, WEB_A, "web", 20)
            burst(a, DB, "postgres", 10)
            burst(a, JOB, "report", 5)
        a.restart(DB, "postgres")  # the container restarted: 1.log
        for _ in range(6):
            burst(a, WEB_A, "web", 20)
            burst(a, DB, "postgres", 10)
        # The Job's pod finishes and is deleted once its lines are in (a pod deleted while no agent
        # runs cannot be read by anyone: see docs/agent.md).
        job_lines = sum(1 for w in a.written if w[0] == JOB)
        assert len(wait_stored(str(data), job_lines, 90, "--pod", "report-28599000-x7k2p")) == job_lines
        api.delete(PODS, "ops", "report-28599000-x7k2p")
        a.delete_pod(JOB)
        # Reschedule: a new web pod starts on node-b, the old one on node-a is deleted.
        web_b = copy.deepcopy(json.loads(RECORDING.read_text())[PODS]["items"][0])
        web_b["metadata"].update(name="web-5d8f7c9b6-zzzzz", uid=WEB_B)
        web_b["spec"]["nodeName"] = "node-b"
        api.put(PODS, web_b)
        b.clock_ns = max(a.clock_ns, b.clock_ns)
        b.start_pod("shop", "web-5d8f7c9b6-zzzzz", WEB_B, ["web"])
        web_a_lines = sum(1 for w in a.written if w[0] == WEB_A)
        assert len(wait_stored(str(data), web_a_lines, 90, "--pod", "web-5d8f7c9b6-abcde")) == web_a_lines
        api.delete(PODS, "shop", "web-5d8f7c9b6-abcde")
        a.delete_pod(WEB_A)
        for _ in range(6):
            burst(b, WEB_B, "web", 20)
            burst(a, DB, "postgres", 5)
        while agent.kills < 10:  # the tenth SIGKILL lands while the app runs on node-b
            burst(b, WEB_B, "web", 10)
    finally:
        done.set()
        k.join()
    written = a.written + b.written
    rows = wait_stored(str(data), len(written), 120)
    assert agent.stop() == 0
    api.stop()

    assert agent.kills == 10
    # the SIGKILLed agents' preparation workers left when their agent did (workers._exit_when_orphaned)
    deadline = time.monotonic() + 10
    while (left := _processes_of(agent.config)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes of the killed agents still run: {left}"
    assert sum(1 for w in b.written) > 100
    uid_of = {"web-5d8f7c9b6-abcde": WEB_A, "db-0": DB, "report-28599000-x7k2p": JOB, "web-5d8f7c9b6-zzzzz": WEB_B}
    got = Counter((r["pod_uid"], r["container"], r["stream"], r["message"]) for r in rows)
    want = Counter(written)
    assert got == want, f"missing {list((want - got).items())[:3]}, extra {list((got - want).items())[:3]}"
    for r in rows:
        assert uid_of[r["pod"]] == r["pod_uid"]
        assert r["workload"] == WORKLOAD[r["pod_uid"]], r
        assert r["node"] == ("node-b" if r["pod_uid"] == WEB_B else "node-a")
    assert any("torn-first-half and the second half" in r["message"] for r in rows)
    assert any(len(r["message"]) > 64 for r in rows)  # joined from several P parts

    web = logs(str(data), "--workload", "deployment/shop/web")
    assert {r["node"] for r in web} == {"node-a", "node-b"}
    assert len(web) == sum(1 for w in written if w[0] in (WEB_A, WEB_B))
    times = [parse_when(r["time"]) for r in web]
    assert times == sorted(times)
    assert subprocess.run([KT, "verify", "--data", str(data)], capture_output=True).returncode == 0
