"""Which rule of a policy a request hits, with the apiserver's exact semantics (``checker.go``).

First matching rule wins; no match means level ``None`` with the policy-level ``omitStages``.
Every non-empty selector must match. ``users``/``userGroups`` see the *authenticated* user (the
impersonator), and a request without a user (a 401) never matches a rule that names users or
groups. The per-field predicates are public so that ``explain`` can say which field failed,
using the same code that decides.

Rules are compiled once into sets and prefix lists; ``tests/unit/posture`` checks the result
against a line-by-line transcription of the Go algorithm on random policies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kubetrail.posture.policy.model import GroupResources, Level, Policy, PolicyRule


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestAttrs:
    """The attributes the policy checker sees (``authorizer.Attributes``)."""

    user: UserInfo | None
    verb: str
    resource_request: bool = True
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True)
class Decision:
    level: Level
    omit_stages: frozenset[str]
    omit_managed_fields: bool
    rule_index: int | None  # None: no rule matched

    def keeps(self, stage: str) -> bool:
        """Whether an event at ``stage`` would be written at all."""
        return self.level > Level.NONE and stage not in self.omit_stages


class CompiledRule:
    """One rule with its selectors as sets; each ``*_ok`` method is one line of ``ruleMatches``."""

    def __init__(self, rule: PolicyRule, policy_omit: tuple[str, ...]) -> None:
        self.rule = rule
        self.users = frozenset(rule.users)
        self.groups = frozenset(rule.user_groups)
        self.verbs = frozenset(rule.verbs)
        self.namespaces = frozenset(rule.namespaces)
        self.omit_stages = frozenset(policy_omit) | frozenset(rule.omit_stages)
        self.url_exact = frozenset(u for u in rule.non_resource_urls if not u.endswith("*"))
        self.url_prefixes = tuple(u.rstrip("*") for u in rule.non_resource_urls if u.endswith("*"))
        self.resource_kind = bool(rule.namespaces or rule.resources)

    def user_ok(self, a: RequestAttrs) -> bool:
        return not self.users or (a.user is not None and a.user.name in self.users)

    def groups_ok(self, a: RequestAttrs) -> bool:
        return not self.groups or (a.user is not None and not self.groups.isdisjoint(a.user.groups))

    def verb_ok(self, a: RequestAttrs) -> bool:
        return not self.verbs or a.verb in self.verbs

    def namespace_ok(self, a: RequestAttrs) -> bool:
        return not self.namespaces or a.namespace in self.namespaces

    def resource_ok(self, a: RequestAttrs) -> bool:
        return not self.rule.resources or any(_group_matches(g, a) for g in self.rule.resources)

    def url_ok(self, a: RequestAttrs) -> bool:
        # "*" is the empty prefix after stripping, so it lands in url_prefixes and matches every path
        return a.path in self.url_exact or any(a.path.startswith(p) for p in self.url_prefixes)

    def target_ok(self, a: RequestAttrs) -> bool:
        """The resource / non-resource half of ``ruleMatches``; selector-less rules match both kinds."""
        if self.resource_kind:
            return a.resource_request and self.namespace_ok(a) and self.resource_ok(a)
        if self.rule.non_resource_urls:
            return not a.resource_request and self.url_ok(a)
        return True

    def matches(self, a: RequestAttrs) -> bool:
        return self.user_ok(a) and self.groups_ok(a) and self.verb_ok(a) and self.target_ok(a)


def _group_matches(g: GroupResources, a: RequestAttrs) -> bool:
    if g.group not in (a.api_group, "*"):
        return False
    if not g.resources:
        return True  # the whole group, subresources included
    if g.resource_names and a.name not in g.resource_names:
        return False
    return any(resource_pattern_matches(p, a.resource, a.subresource) for p in g.resources)


def resource_pattern_matches(pattern: str, resource: str, subresource: str) -> bool:
    """``pods`` (not its subresources), ``pods/log``, ``*/status``, ``*``, and ``pods/*``.

    ``pods/*`` also matches ``pods`` itself: ``checker.go`` compares only the resource part, whatever
    the upstream docs suggest.
    """
    if pattern == "*":
        return True
    if pattern == (f"{resource}/{subresource}" if subresource else resource):
        return True
    if subresource and pattern.startswith("*/") and pattern[2:] == subresource:
        return True
    return pattern.endswith("/*") and pattern[:-2] == resource


class Evaluator:
    """A policy compiled for repeated evaluation (simulate runs it over millions of events)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.rules = [CompiledRule(r, policy.omit_stages) for r in policy.rules]
        self._none = Decision(Level.NONE, frozenset(policy.omit_stages), policy.omit_managed_fields, None)

    def evaluate(self, attrs: RequestAttrs) -> Decision:
        for i, rule in enumerate(self.rules):
            if rule.matches(attrs):
                omf = rule.rule.omit_managed_fields
                return Decision(rule.rule.level, rule.omit_stages,
                                self.policy.omit_managed_fields if omf is None else omf, i)
        return self._none


def evaluate(policy: Policy, attrs: RequestAttrs) -> Decision:
    """One-off evaluation; build an ``Evaluator`` when evaluating many requests."""
    return Evaluator(policy).evaluate(attrs)


def attrs_from_event(event: Mapping[str, Any]) -> RequestAttrs:
    """The checker's attributes recovered from a recorded audit Event.

    ``objectRef`` is present exactly for resource requests. The event's ``user`` is the
    authenticated identity (``impersonatedUser`` is separate), which is what the policy sees; an
    empty user (failed authentication) becomes ``None``.
    """
    raw_user = event.get("user") or {}
    name = raw_user.get("username")
    groups = raw_user.get("groups") or []
    user = UserInfo(str(name or ""), tuple(str(g) for g in groups)) if (name or groups) else None
    ref = event.get("objectRef")
    verb = str(event.get("verb") or "")
    if isinstance(ref, Mapping):
        return RequestAttrs(user, verb, True, str(ref.get("apiGroup") or ""), str(ref.get("resource") or ""),
                            str(ref.get("subresource") or ""), str(ref.get("namespace") or ""),
                            str(ref.get("name") or ""))
    uri = str(event.get("requestURI") or "")
    return RequestAttrs(user, verb, False, path=urlsplit(uri).path or uri)
