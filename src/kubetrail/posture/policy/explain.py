"""Say which rule a request hits and why each earlier rule did not, in the checker's own order.

The reasons come from the same per-field predicates that decide (``match.CompiledRule``), so an
explanation cannot disagree with the evaluation. The field order follows ``ruleMatches``: users,
userGroups, verbs, then the resource (namespaces, resources) or non-resource half.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetrail.posture.policy.match import CompiledRule, Decision, Evaluator, RequestAttrs
from kubetrail.posture.policy.model import STAGES


@dataclass(frozen=True)
class Step:
    rule_index: int
    level: str
    matched: bool
    reason: str


@dataclass(frozen=True)
class Explanation:
    request: RequestAttrs
    decision: Decision
    steps: tuple[Step, ...]

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        return {"rule_index": d.rule_index, "level": d.level.wire,
                "stages_kept": [s for s in STAGES if d.keeps(s)], "omit_stages": sorted(d.omit_stages),
                "omit_managed_fields": d.omit_managed_fields,
                "steps": [{"rule_index": s.rule_index, "level": s.level, "matched": s.matched, "reason": s.reason}
                          for s in self.steps]}


def _list(values: frozenset[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(v if v else '""' for v in sorted(values)) + "]"  # "" = cluster scope, visibly


def why_not(rule: CompiledRule, a: RequestAttrs) -> str | None:
    """The first selector that rejects the request, in ``ruleMatches`` order; None if the rule matches."""
    r = rule.rule
    if not rule.user_ok(a):
        return ("no authenticated user (failed authentication) and the rule names users" if a.user is None
                else f"user {a.user.name!r} not in users {_list(rule.users)}")
    if not rule.groups_ok(a):
        return ("no authenticated user and the rule names userGroups" if a.user is None
                else f"groups {_list(a.user.groups)} share none with userGroups {_list(rule.groups)}")
    if not rule.verb_ok(a):
        return f"verb {a.verb!r} not in verbs {_list(rule.verbs)}"
    if rule.resource_kind:
        if not a.resource_request:
            return "rule selects resources/namespaces; this is a non-resource request"
        if not rule.namespace_ok(a):
            return f"namespace {a.namespace or '(cluster scope)'!r} not in namespaces {_list(rule.namespaces)}"
        if not rule.resource_ok(a):
            gr = f"{a.combined_resource} in group {a.api_group or chr(39) * 2}"
            names = [n for g in r.resources for n in g.resource_names]
            extra = f" (or name {a.name!r} not in resourceNames {_list(tuple(names))})" if names else ""
            return f"{gr} is not selected by resources{extra}"
        return None
    if r.non_resource_urls:
        if a.resource_request:
            return "rule selects nonResourceURLs; this is a resource request"
        if not rule.url_ok(a):
            return f"path {a.path!r} not matched by nonResourceURLs {_list(r.non_resource_urls)}"
    return None


def _match_reason(rule: CompiledRule) -> str:
    r = rule.rule
    parts = [name for name, v in (("users", r.users), ("userGroups", r.user_groups), ("verbs", r.verbs),
                                  ("namespaces", r.namespaces), ("resources", r.resources),
                                  ("nonResourceURLs", r.non_resource_urls)) if v]
    return "matches: " + (", ".join(parts) + " all match" if parts else "no selectors (catch-all)")


def explain(evaluator: Evaluator, a: RequestAttrs) -> Explanation:
    steps = []
    for i, rule in enumerate(evaluator.rules):
        reason = why_not(rule, a)
        steps.append(Step(i, rule.rule.level.wire, reason is None, reason or _match_reason(rule)))
        if reason is None:
            break
    return Explanation(a, evaluator.evaluate(a), tuple(steps))
