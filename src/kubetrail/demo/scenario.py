"""The bundled demo scenario: a seeded, reproducible two-hour audit log with an attack inside.

``generate(seed, events)`` builds the cluster cast, the ordinary traffic (``background``,
``workloads``) and the attack (``attack``), each from its own RNG derived from the seed, and returns
the Events in the order the apiserver writes them (by ``stageTimestamp``). Only the periodic
background traffic depends on ``events``, so the attack is byte-for-byte the same at every size,
and the same seed and size always give the same bytes: ingesting the demo twice stores nothing new.

``write_log(path, …)`` writes the log as ``audit.k8s.io/v1`` Event JSON lines, as
``--audit-log-path`` would; ``write_policy`` writes the demo cluster's audit policy beside it.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from kubetrail.demo.attack import Attack, AttackFacts
from kubetrail.demo.background import Background
from kubetrail.demo.cluster import Cluster
from kubetrail.demo.model import T0, AuditLog
from kubetrail.demo.pki import CertificateAuthority, Issued
from kubetrail.demo.policy import POLICY_YAML
from kubetrail.demo.workloads import Workloads

DEFAULT_SEED = 20260314
DEFAULT_EVENTS = 2500
MIN_EVENTS = 300
LOG_NAME = "audit.log"
POLICY_NAME = "audit-policy.yaml"


@dataclass
class Scenario:
    seed: int
    events: list[dict[str, Any]]
    facts: AttackFacts
    planted: list[str] = field(default_factory=list)  # secret values that must never be stored
    kubelet_cert: Issued | None = None

    def lines(self) -> bytes:
        return b"".join(orjson.dumps(e) + b"\n" for e in self.events)


def _build(seed: int, scale: float) -> tuple[Scenario, int]:
    """One attempt at ``scale``; also returns how many events the scaled background produced."""
    rng = random.Random(f"kubetrail-demo/{seed}/cluster")
    cluster = Cluster(rng)
    ca = CertificateAuthority(random.Random(f"kubetrail-demo/{seed}/ca"), T0 - timedelta(days=142))
    planted: list[str] = []
    work_log = AuditLog(random.Random(f"kubetrail-demo/{seed}/workloads"))
    workloads = Workloads(work_log, cluster, ca, planted)
    workloads.run()
    attack_log = AuditLog(random.Random(f"kubetrail-demo/{seed}/attack"))
    facts = Attack(attack_log, cluster, ca, planted).run()
    bg_log = AuditLog(random.Random(f"kubetrail-demo/{seed}/background"))
    Background(bg_log, cluster, scale).run()
    events = work_log.events + attack_log.events + bg_log.events
    events.sort(key=lambda e: (e["stageTimestamp"], e["stage"] != "ResponseStarted"))
    return Scenario(seed, events, facts, planted, workloads.kubelet_cert), len(bg_log.events)


def generate(seed: int = DEFAULT_SEED, events: int = DEFAULT_EVENTS) -> Scenario:
    """At least ``events`` (minimum ``MIN_EVENTS``) Events; the same arguments give the same log."""
    target = max(events, MIN_EVENTS)
    scale = 1.0
    scenario, periodic = _build(seed, scale)
    for _ in range(8):
        total = len(scenario.events)
        if total >= target and (total <= target * 1.1 or scale <= 0.05):
            break
        fixed = total - periodic
        wanted = max(target - fixed, 1)
        scale = max(0.05, scale * wanted / max(periodic, 1)) * (1.02 if total < target else 1.0)
        scenario, periodic = _build(seed, scale)
    while len(scenario.events) < target:
        scale *= 1.05
        scenario, periodic = _build(seed, scale)
    return scenario


def write_log(path: str, scenario: Scenario) -> int:
    """Write the log atomically (a reader never sees half a file); returns the number of events."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(scenario.lines())
    os.replace(tmp, path)
    return len(scenario.events)


def write_policy(path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(POLICY_YAML)
