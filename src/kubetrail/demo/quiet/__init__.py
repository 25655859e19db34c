"""Benign-traffic regression corpora: a quiet cluster's audit log for several Kubernetes versions
and platforms, generated deterministically (never committed as data).

``generate(profile)`` returns the Events a kube-apiserver would write under the demo's audit policy
(``kubetrail.demo.policy``: bodies of Secrets, TokenRequests, CSRs and RBAC, request bodies of
writes) for half an hour of a quiet cluster (``traffic.py``, ``managed.py``) with the cast of
``cast.py``; ``profiles.CORPORA`` lists the corpora the regression test requires to raise no alert
(tests/unit/detect/test_benign_corpus.py) and ``scripts/make_benign_corpus.py`` writes them.
"""

from __future__ import annotations

import random
from typing import Any

from kubetrail.demo.model import AuditLog
from kubetrail.demo.quiet.cast import Cast
from kubetrail.demo.quiet.managed import ManagedTraffic
from kubetrail.demo.quiet.profiles import CORPORA, Profile, parse
from kubetrail.demo.quiet.traffic import Traffic

__all__ = ["CORPORA", "Profile", "generate", "parse"]
DURATION_SECS = 1800.0


def generate(profile: Profile, seed: int = 15, duration: float = DURATION_SECS) -> list[dict[str, Any]]:
    """The corpus of one profile, in the order the apiserver writes it; same arguments, same bytes."""
    rng = random.Random(f"kubetrail-quiet/{profile.name}/{seed}")
    cast = Cast(profile, rng)
    log = AuditLog(random.Random(f"kubetrail-quiet/{profile.name}/{seed}/log"), end=duration)
    Traffic(log, cast).run()
    ManagedTraffic(log, cast).run()
    log.events.sort(key=lambda e: (e["stageTimestamp"], e["stage"] != "ResponseStarted", e["auditID"]))
    return log.events
