"""The demo's node-agent part: container logs that line up with the audit trail.

Three simulated nodes write container logs exactly as the kubelet does (``demo/node.py``):

* the shop's ``payments`` Deployment runs on demo-worker-1 and is rescheduled to demo-worker-2 at
  10:20, in the middle of the attack (a new pod, a new UID, another node's directory);
* the attacker's privileged pod (``kube-system/node-debugger`` on demo-control-plane) gets the
  output of the two ``exec`` sessions the audit log records: a root shell on the host, then
  ``cat /host/etc/kubernetes/pki/ca.key``, whose key lines the agent redacts before storing them.

``kubetrail agent``'s pipeline reads them (``pipeline.run_agent``: cri_logs → redact → enrich →
store) with a stand-in API server that knows the pods, so every line carries its workload, and
``kubetrail logs --workload deployment/shop/payments`` follows the app across both nodes.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field

import orjson

from kubetrail.config import parse
from kubetrail.demo.apiserver import StandInApiServer
from kubetrail.demo.model import T0
from kubetrail.demo.node import SimNode
from kubetrail.pipeline import run_agent
from kubetrail.record import Record
from kubetrail.store import LogFilters, QueryFilters, open_store

EPOCH_NS = int(T0.timestamp()) * 1_000_000_000
MIN = 60 * 1_000_000_000
RS = "payments-7c9d8f6b5"
PODS = [("payments-7c9d8f6b5-k2x9p", "5f0d3c1e-0000-4a1b-9c2d-0000000000a1", "demo-worker-1", 0, 80),
        ("payments-7c9d8f6b5-r8m4t", "5f0d3c1e-0000-4a1b-9c2d-0000000000b2", "demo-worker-2", 81, 120)]
DEBUGGER_NODE = "demo-control-plane"


@dataclass
class NodeAgentFacts:
    lines: int = 0
    stored: int = 0
    debugger_pod: str = ""
    exec_times: list[int] = field(default_factory=list)
    key_lines: list[str] = field(default_factory=list)  # the CA key as the attacker saw it: never stored


def _pod(name: str, uid: str, node: str, owner: tuple[str, str] | None, image: str, container: str,
         ns: str) -> dict[str, object]:
    md: dict[str, object] = {"name": name, "namespace": ns, "uid": uid, "labels": {"app": name.split("-")[0]}}
    if owner:
        md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "controller": True,
                                  "uid": "5f0d3c1e-0000-4a1b-9c2d-0000000000ff"}]
        md["labels"] = {"app": "payments", "pod-template-hash": RS.rsplit("-", 1)[1]}
    return {"metadata": md, "spec": {"nodeName": node, "containers": [{"name": container, "image": image}]},
            "status": {"containerStatuses": [{"name": container, "image": image, "imageID": f"{image}@sha256:" + "5e" * 32,
                                              "containerID": "containerd://" + uid.replace("-", "")}]}}


def _exec_facts(data_dir: str) -> tuple[str, str, list[int]]:
    """The attacker's pod (name, uid) and the times of its exec sessions, from the stored audit trail."""
    with open_store(data_dir, readonly=True) as store:
        execs = list(store.query(QueryFilters(subresource=["exec"], namespace=["kube-system"])))
        execs = [r for r in execs if r.meta.user == "evil-admin"]  # type: ignore[union-attr]
        name = execs[0].meta.name if execs else "node-debugger"  # type: ignore[union-attr]
        uid = ""
        for r in store.query(QueryFilters(name=[name], subresource=["status"]), limit=1):
            uid = str((r.event().get("objectRef") or {}).get("uid") or "")
    return name, uid or "5f0d3c1e-0000-4a1b-9c2d-0000000000dd", [r.time for r in execs]


def write_nodes(root: str, data_dir: str, seed: int) -> tuple[NodeAgentFacts, dict[str, dict[str, object]]]:
    """The three nodes' log directories under ``root``; returns the facts and the API objects."""
    rng = random.Random(f"kubetrail-demo/{seed}/nodes")
    facts = NodeAgentFacts()
    nodes = {n: SimNode(os.path.join(root, n), n) for n in ("demo-worker-1", "demo-worker-2", DEBUGGER_NODE)}
    pods = []
    for name, uid, node_name, start, end in PODS:
        node = nodes[node_name]
        node.start_pod("shop", name, uid, ["payments"])
        node.clock_ns = EPOCH_NS + start * MIN
        node.write(uid, "payments", f"payments-api 2.3.1 listening on :8080 (pod {name})")
        while node.clock_ns < EPOCH_NS + end * MIN:
            node.clock_ns += rng.randint(60, 150) * 1_000_000_000
            amount = rng.randint(5, 400)
            node.write(uid, "payments", f"POST /v1/charges 201 {rng.randint(8, 90)}ms amount={amount}.00 EUR")
            if rng.random() < 0.1:
                node.write(uid, "payments", f"WARN card declined: card_token=tok_{rng.getrandbits(48):012x}",
                           "stderr")
        pods.append(_pod(name, uid, node_name, ("ReplicaSet", RS), "registry.example.com/shop/payments:2.3.1",
                         "payments", "shop"))
    name, uid, execs = _exec_facts(data_dir)
    facts.debugger_pod, facts.exec_times = name, execs
    node = nodes[DEBUGGER_NODE]
    node.start_pod("kube-system", name, uid, ["debugger"])
    key = [f"MIIE{rng.getrandbits(300):075x}"[:64].replace("0", "Q").replace("a", "Z") for _ in range(6)]
    facts.key_lines = key
    sessions = [["/ # chroot /host sh", "# id", "uid=0(root) gid=0(root) groups=0(root)", "# hostname",
                 DEBUGGER_NODE, "# ls /etc/kubernetes/pki", "apiserver.crt  apiserver.key  ca.crt  ca.key  sa.key",
                 "# exit"],
                ["-----BEGIN RSA PRIVATE KEY-----", *key, "-----END RSA PRIVATE KEY-----"]]
    for at, lines in zip(execs, sessions, strict=False):
        node.clock_ns = at + 1_000_000_000
        for text in lines:
            node.clock_ns += rng.randint(200, 2000) * 1_000_000
            node.write(uid, "debugger", text)
    pods.append(_pod(name, uid, DEBUGGER_NODE, None, "docker.io/library/alpine:3.20", "debugger", "kube-system"))
    facts.lines = sum(len(n.written) for n in nodes.values())
    api = {"/api/v1/pods": {"kind": "PodList", "items": pods},
           "/apis/apps/v1/replicasets": {"kind": "ReplicaSetList", "items": [
               {"metadata": {"name": RS, "namespace": "shop", "uid": "5f0d3c1e-0000-4a1b-9c2d-0000000000ff",
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "payments",
                                                  "controller": True, "uid": "5f0d3c1e-0000-4a1b-9c2d-0000000000fe"}]}}]}}
    return facts, api


def run_node_agent(data_dir: str, seed: int, timeout_secs: float = 60.0) -> NodeAgentFacts:
    """Write the nodes' logs to a temporary directory and run the agent's pipeline over them."""
    with tempfile.TemporaryDirectory(prefix="kubetrail-demo-nodes-") as tmp:
        facts, objects = write_nodes(tmp, data_dir, seed)
        api = StandInApiServer()
        api.load(objects)
        api.start()
        try:
            kubeconfig = os.path.join(tmp, "kubeconfig")
            with open(kubeconfig, "wb") as fh:
                fh.write(orjson.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "demo",
                                       "clusters": [{"name": "demo", "cluster": {"server": api.url}}],
                                       "users": [{"name": "demo", "user": {"token": "demo"}}],
                                       "contexts": [{"name": "demo", "context": {"cluster": "demo", "user": "demo"}}]}))
            config = parse({"data_dir": data_dir, "cluster": "demo", "checkpoint_interval_secs": 3600,
                            "sources": [{"type": "cri_logs", "root": os.path.join(tmp, n), "node": n, "poll_ms": 50}
                                        for n in sorted(os.listdir(tmp)) if n.startswith("demo-")],
                            "enrich": {"kubeconfig": kubeconfig}})
            stop = threading.Event()
            t = threading.Thread(target=run_agent, args=(config, stop, lambda _m: None), daemon=True)
            t.start()
            deadline = time.monotonic() + timeout_secs
            while time.monotonic() < deadline and _stored(data_dir) < facts.lines:
                time.sleep(0.1)
            stop.set()
            t.join(timeout=30)
        finally:
            api.stop()
    facts.stored = _stored(data_dir)
    return facts


def _stored(data_dir: str) -> int:
    try:
        with open_store(data_dir, readonly=True) as store:
            return store.count_logs(LogFilters(kind=["container"]))
    except Exception:  # noqa: BLE001 - not created yet by the agent's first commit
        return 0


def node_lines(data_dir: str, filters: LogFilters) -> list[Record]:
    with open_store(data_dir, readonly=True) as store:
        return list(store.logs(filters))


def report(data_dir: str, facts: NodeAgentFacts) -> list[str]:
    """What the section prints: the app across the reschedule, and the attacker's shell next to its exec."""
    from kubetrail.timefmt import format_ns

    out = [f"{facts.stored} container log lines from 3 nodes (of {facts.lines} written), each with its workload"]
    app = node_lines(data_dir, LogFilters(workload=["deployment/shop/payments"]))
    for node in ("demo-worker-1", "demo-worker-2"):
        mine = [r for r in app if r.log().node == node]
        if mine:
            out.append(f"  deployment/shop/payments on {node}: {len(mine)} lines, {format_ns(mine[0].time)} .. "
                       f"{format_ns(mine[-1].time)} (pod {mine[0].log().pod})")
    shell = node_lines(data_dir, LogFilters(namespace=["kube-system"], pod=[facts.debugger_pod]))
    if facts.exec_times:
        out.append(f"  the attacker's exec into kube-system/{facts.debugger_pod} (audit log, "
                   f"{format_ns(facts.exec_times[0])}) and what the shell printed (container log):")
        for r in shell[:12]:
            out.append(f"    {format_ns(r.time)}  {r.body.decode()}")
        redacted = sum(1 for r in shell if r.redactions)
        out.append(f"  {redacted} lines of the CA private key it printed were redacted before anything was stored")
    return out
