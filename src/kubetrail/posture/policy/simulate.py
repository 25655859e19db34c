"""Replay recorded audit events through a policy: what it would keep, at which level, and what is lost.

An event is *lost* when the policy gives its request level ``None`` or omits its stage; it is
*downgraded* when it was recorded at a higher level than the policy would give (its bodies would
be gone). Events are matched with the attributes the apiserver had: the authenticated user, the
``objectRef`` for resource requests, the URL path otherwise. Security classes (``classes.py``) are
attached by selector (verb, group, resource, subresource), so the summary can say "3 exec sessions
would be lost" rather than only counting events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetrail.posture.policy.classes import CLASSES, RequestClass
from kubetrail.posture.policy.match import Evaluator, RequestAttrs, attrs_from_event
from kubetrail.posture.policy.model import Level, Policy


def _class_key(a: RequestAttrs) -> tuple[str, str, str, str, bool]:
    return (a.verb, a.api_group, a.resource, a.subresource, a.resource_request)


def _index(classes: Iterable[RequestClass]) -> dict[tuple[str, str, str, str, bool], list[str]]:
    out: dict[tuple[str, str, str, str, bool], list[str]] = {}
    for cls in classes:
        if cls.id in ("unauthenticated", "anonymous", "impersonation", "coredns-configmap", "aws-auth"):
            continue  # selected by who/which object, not by verb+resource; handled in classes_of()
        for r in cls.requests:
            ids = out.setdefault(_class_key(r), [])
            if cls.id not in ids:
                ids.append(cls.id)
    return out


_SELECTORS = _index(CLASSES)


def classes_of(a: RequestAttrs, event: Mapping[str, Any]) -> list[str]:
    """The security classes a recorded request belongs to."""
    ids = list(_SELECTORS.get(_class_key(a), ()))
    if a.user is None:
        ids.append("unauthenticated")
    elif a.user.name == "system:anonymous":
        ids.append("anonymous")
    if event.get("impersonatedUser"):
        ids.append("impersonation")
    if a.resource == "configmaps" and a.namespace == "kube-system" and a.name in ("coredns", "aws-auth") \
            and a.verb in ("update", "patch"):
        ids.append("coredns-configmap" if a.name == "coredns" else "aws-auth")
    return ids


@dataclass(frozen=True)
class SimRow:
    auditID: str  # noqa: N815 - the contract spells it so
    stage: str
    verb: str
    resource: str
    subresource: str
    path: str
    user: str
    level: str
    stage_kept: bool
    rule_index: int | None
    recorded_level: str
    classes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"auditID": self.auditID, "stage": self.stage, "verb": self.verb, "resource": self.resource,
                "subresource": self.subresource, "path": self.path, "user": self.user, "level": self.level,
                "stage_kept": self.stage_kept, "rule_index": self.rule_index,
                "recorded_level": self.recorded_level, "classes": list(self.classes)}


@dataclass
class Summary:
    events: int = 0
    kept: int = 0
    lost: int = 0
    downgraded: int = 0
    rejected_inputs: int = 0
    lost_by_reason: Counter[str] = field(default_factory=Counter)
    lost_by_rule: Counter[str] = field(default_factory=Counter)
    lost_by_class: Counter[str] = field(default_factory=Counter)
    downgraded_by_class: Counter[str] = field(default_factory=Counter)
    levels: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        """The summary object; deliberately without an ``auditID`` key so row filters skip it."""
        return {"summary": {"events": self.events, "kept": self.kept, "lost": self.lost,
                            "downgraded": self.downgraded, "rejected_inputs": self.rejected_inputs,
                            "levels": dict(self.levels), "lost_by_reason": dict(self.lost_by_reason),
                            "lost_by_rule": dict(self.lost_by_rule), "lost_by_class": dict(self.lost_by_class),
                            "downgraded_by_class": dict(self.downgraded_by_class)}}


class Simulator:
    """Feed events one at a time (``row``); ``summary`` accumulates as it goes."""

    def __init__(self, policy: Policy) -> None:
        self.evaluator = Evaluator(policy)
        self.summary = Summary()

    def row(self, event: Mapping[str, Any]) -> SimRow:
        a = attrs_from_event(event)
        d = self.evaluator.evaluate(a)
        stage = str(event.get("stage") or "ResponseComplete")
        kept = d.keeps(stage)
        recorded = str(event.get("level") or "")
        cls = tuple(classes_of(a, event))
        s = self.summary
        s.events += 1
        s.levels[d.level.wire] += 1
        rule = "no rule" if d.rule_index is None else f"rules[{d.rule_index}]"
        if kept:
            s.kept += 1
            try:
                was = Level.parse(recorded)
            except KeyError:
                was = d.level
            if was > d.level:
                s.downgraded += 1
                for c in cls:
                    s.downgraded_by_class[c] += 1
        else:
            s.lost += 1
            s.lost_by_reason["level None" if d.level == Level.NONE else f"stage {stage} omitted"] += 1
            s.lost_by_rule[rule] += 1
            for c in cls:
                s.lost_by_class[c] += 1
        user = (event.get("user") or {}).get("username") or ""
        return SimRow(str(event.get("auditID") or ""), stage, a.verb, a.resource, a.subresource, a.path,
                      str(user), d.level.wire, kept, d.rule_index, recorded, cls)
