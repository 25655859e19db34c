"""Detectors that need memory across events; ``build_detectors`` is the whole registry.

Each is a small class with ``observe(record) -> list[Alert]`` (and ``tick(now_ns)`` when it has
wall-clock work); their state lives in the store through ``StateStore``. A detector that acts only
on some verbs or resources says so with class attributes ``verbs``/``resources`` (frozensets; absent
or None = any): the consumer then never calls it for other requests (``DetectConsumer._observers``),
so its ``observe`` must return nothing and change nothing for them. A detector that reads the parsed
event may also have ``note(record)``: called as the record arrives (beside the rules, while the parsed
event is at hand), it keeps on the record what ``observe`` will read, so a held record whose parsed
event the reorder buffer dropped is not parsed again; ``observe`` must give the same answer for a
record that was never noted (``pod_ips``; tests/unit/speed/test_detect_fast_paths.py).
``EVENT_FACTS`` lists what the notes keep, so that the preparation workers, which parse every event
anyway, can find it before the writer, which would have to parse the body again (``kubetrail.workers``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.first_seen import FirstSeen
from kubetrail.detect.stateful.images import MirrorPod, NewImage
from kubetrail.detect.stateful.machinery import MachineryProfile
from kubetrail.detect.stateful.pod_ips import FACTS as POD_IPS_FACTS
from kubetrail.detect.stateful.pod_ips import NO_FACTS as POD_IPS_NONE
from kubetrail.detect.stateful.pod_ips import PodTokenElsewhere, event_facts
from kubetrail.detect.stateful.privileged_sa import PrivilegedTokenRequest
from kubetrail.detect.stateful.rate import DeleteBurst, DeniedBurst, DiscoveryBurst, SecretReadBurst
from kubetrail.detect.stateful.secrets import SecretReadBaseline
from kubetrail.detect.stateful.sequence import CsrSelfApproval, RbacThenWorkload
from kubetrail.detect.stateful.silence import AuditSilence
from kubetrail.detect.stateful.state import StateStore
from kubetrail.detect.stateful.transit import TransitGaps

DETECTORS = (FirstSeen, DeniedBurst, DiscoveryBurst, DeleteBurst, SecretReadBurst, CsrSelfApproval,
             RbacThenWorkload, AuditSilence, NewImage, MirrorPod, SecretReadBaseline, PrivilegedTokenRequest,
             PodTokenElsewhere, TransitGaps, MachineryProfile)


# (the record's __dict__ key a detector's ``note`` keeps, a pure function of the record that reads its parsed
# event, the shared value meaning "nothing here" — most records — sent as None between processes).
EVENT_FACTS: tuple[tuple[str, Callable[[Any], Any], Any], ...] = ((POD_IPS_FACTS, event_facts, POD_IPS_NONE),)


def build_detectors(state: StateStore, config: StatefulConfig) -> list[Any]:
    return [cls(state, config) for cls in DETECTORS] if config.enabled else []


def max_window_secs(config: StatefulConfig) -> float:
    """The longest stretch of event time one stateful decision looks across (windows, sequences,
    silence): a late record can have changed the alerts decided within this distance of it."""
    return max(config.denied_window_secs, config.discovery_window_secs, config.delete_window_secs,
               config.secrets_window_secs, config.sequence_window_secs, config.silence_secs)
