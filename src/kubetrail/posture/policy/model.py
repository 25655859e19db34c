"""The ``audit.k8s.io`` ``Policy`` as the apiserver loads it, plus what kubetrail refuses to gloss over.

Loading mirrors ``pkg/audit/policy/reader.go``: decode strictly; where the apiserver would fall back
to lenient decoding (unknown or duplicate fields, since 1.26) kubetrail keeps the lenient result,
which is what the apiserver would actually run, and reports every dropped key as an *error*,
because a typo like ``verb:`` silently widens a rule to every verb. Checks that make the apiserver
refuse to start (``validation.go``) are errors with ``code="invalid"``; a policy with any of them
has no model (``Loaded.policy is None``).

Invariants: ``PolicyRule.omit_stages`` is the rule's own list (the union with the policy-level
list happens in ``match``); lists keep file order and duplicates, exactly as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import yaml

from kubetrail.errors import InputError


class Level(IntEnum):
    """Audit levels, ordered as ``pkg/apis/audit/helpers.go`` orders them."""

    NONE = 0
    METADATA = 1
    REQUEST = 2
    REQUEST_RESPONSE = 3

    @property
    def wire(self) -> str:
        return _LEVEL_WIRE[self]

    @classmethod
    def parse(cls, text: str) -> Level:
        return _WIRE_LEVEL[text]


_LEVEL_WIRE = {Level.NONE: "None", Level.METADATA: "Metadata", Level.REQUEST: "Request",
               Level.REQUEST_RESPONSE: "RequestResponse"}
_WIRE_LEVEL = {v: k for k, v in _LEVEL_WIRE.items()}

STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
API_VERSIONS = ("audit.k8s.io/v1", "audit.k8s.io/v1beta1")

_RULE_FIELDS = {"level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs",
                "omitStages", "omitManagedFields"}
_GR_FIELDS = {"group", "resources", "resourceNames"}
_POLICY_FIELDS = {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")


@dataclass(frozen=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyRule:
    level: Level
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: tuple[str, ...] = ()
    omit_managed_fields: bool | None = None

    @property
    def is_catch_all(self) -> bool:
        """True when the rule has no selector at all, so every later rule is unreachable."""
        return not (self.users or self.user_groups or self.verbs or self.resources or self.namespaces
                    or self.non_resource_urls)


@dataclass(frozen=True)
class Policy:
    rules: tuple[PolicyRule, ...]
    omit_stages: tuple[str, ...] = ()
    omit_managed_fields: bool = False
    api_version: str = "audit.k8s.io/v1"


@dataclass(frozen=True)
class Problem:
    """Something wrong with the file itself. ``where`` is a path like ``rules[2].verb``."""

    severity: str  # "error" | "warn" | "info"
    code: str
    where: str
    message: str


@dataclass
class Loaded:
    policy: Policy | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        """True when the apiserver would refuse to start with this file."""
        return self.policy is None


class _DupCheckLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys (strict decoding rejects them; YAML keeps the last)."""

    duplicates: list[tuple[str, int]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` (go-yaml merges it too)
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            if isinstance(key, str) and key in seen:
                self.duplicates.append((key, key_node.start_mark.line + 1))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_policy_file(path: str | Path) -> Loaded:
    """Read and load a policy file; an unreadable file is an ``InputError`` (exit 2)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read policy: {exc}") from exc
    return parse_policy(text)


def parse_policy(text: str) -> Loaded:
    """Load policy YAML/JSON text as the apiserver would, collecting every problem on the way."""
    loader = _DupCheckLoader(text)
    loader.duplicates = []
    try:
        docs = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            doc = loader.get_data()  # type: ignore[no-untyped-call]
            if doc is not None:
                docs.append(doc)
    except yaml.YAMLError as exc:
        return Loaded(None, [Problem("error", "invalid", "", f"not valid YAML: {exc}")])
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]
    problems = [Problem("error", "duplicate-field", f"line {line}",
                        f"duplicate field {key!r}: the apiserver's strict decoding rejects it and the lenient "
                        "fallback silently keeps one value") for key, line in loader.duplicates]
    if len(docs) != 1:
        problems.append(Problem("error", "invalid", "", f"expected one Policy document, found {len(docs)}"))
        return Loaded(None, problems)
    return _build(docs[0], problems)


def _unknown(obj: dict[str, Any], known: set[str], where: str, problems: list[Problem]) -> None:
    for key in obj:
        if key not in known:
            hint = {"verb": "verbs", "resource": "resources", "user": "users", "group": "userGroups",
                    "userGroup": "userGroups", "namespace": "namespaces", "nonResourceURL": "nonResourceURLs",
                    "omitStage": "omitStages", "resourceName": "resourceNames"}.get(str(key))
            extra = f" (did you mean {hint!r}?)" if hint and hint in known else ""
            problems.append(Problem("error", "unknown-field", f"{where}{'.' if where else ''}{key}",
                                    f"unknown field {key!r}{extra}: the apiserver silently ignores it "
                                    "(lenient fallback, only a log warning), so the rule is broader than written"))


def _strings(value: Any, where: str, problems: list[Problem]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(Problem("error", "invalid", where,
                                "must be a list of strings; the apiserver refuses to load this policy"))
        return ()
    return tuple(value)


def _stages(value: Any, where: str, problems: list[Problem]) -> tuple[str, ...]:
    stages = _strings(value, where, problems)
    for s in stages:
        if s not in STAGES:
            problems.append(Problem("error", "invalid", where, f"unknown stage {s!r} (valid: {', '.join(STAGES)})"))
    return stages


def _bool(value: Any, where: str, problems: list[Problem]) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    problems.append(Problem("error", "invalid", where, "must be true or false"))
    return None


def _build(doc: Any, problems: list[Problem]) -> Loaded:
    if not isinstance(doc, dict):
        problems.append(Problem("error", "invalid", "", "a Policy must be a mapping"))
        return Loaded(None, problems)
    api = doc.get("apiVersion")
    if not api or not doc.get("kind"):
        problems.append(Problem("error", "invalid", "apiVersion",
                                "apiVersion and kind are required (apiserver: 'unknown group version field')"))
    elif doc.get("kind") != "Policy" or api not in API_VERSIONS:
        problems.append(Problem("error", "invalid", "apiVersion", f"{api}/{doc.get('kind')} is not an audit Policy"))
    elif api != "audit.k8s.io/v1":
        problems.append(Problem("error", "deprecated-version", "apiVersion",
                                f"{api} was removed in Kubernetes 1.24: current apiservers refuse to load it; "
                                "use audit.k8s.io/v1 (the rule format is the same)"))
    _unknown(doc, _POLICY_FIELDS, "", problems)
    omit = _stages(doc.get("omitStages"), "omitStages", problems)
    omf = _bool(doc.get("omitManagedFields"), "omitManagedFields", problems)
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        problems.append(Problem("error", "invalid", "rules", "a policy needs at least one rule "
                                "(apiserver: 'loaded illegal policy with 0 rules')"))
        raw_rules = []
    rules = [_rule(r, f"rules[{i}]", problems) for i, r in enumerate(raw_rules)]
    if any(p.code == "invalid" for p in problems) or any(r is None for r in rules):
        return Loaded(None, problems)
    policy = Policy(tuple(r for r in rules if r is not None), omit, bool(omf), str(api))
    return Loaded(policy, problems)


def _rule(raw: Any, where: str, problems: list[Problem]) -> PolicyRule | None:
    if not isinstance(raw, dict):
        problems.append(Problem("error", "invalid", where, "a rule must be a mapping"))
        return None
    _unknown(raw, _RULE_FIELDS, where, problems)
    level_text = raw.get("level")
    if level_text not in _WIRE_LEVEL:
        problems.append(Problem("error", "invalid", f"{where}.level",
                                f"level {level_text!r} must be one of None, Metadata, Request, RequestResponse"))
        return None
    groups = tuple(_group(g, f"{where}.resources[{j}]", problems) for j, g in enumerate(raw.get("resources") or []))
    if raw.get("resources") is not None and not isinstance(raw.get("resources"), list):
        problems.append(Problem("error", "invalid", f"{where}.resources", "must be a list"))
    urls = _strings(raw.get("nonResourceURLs"), f"{where}.nonResourceURLs", problems)
    namespaces = _strings(raw.get("namespaces"), f"{where}.namespaces", problems)
    for url in urls:
        if url != "*" and not url.startswith("/"):
            problems.append(Problem("error", "invalid", f"{where}.nonResourceURLs",
                                    f"{url!r} must start with '/' (or be exactly '*')"))
        if "*" in url[:-1]:
            problems.append(Problem("error", "invalid", f"{where}.nonResourceURLs",
                                    f"{url!r}: '*' is only allowed as the last character"))
    if urls and (groups or namespaces):
        problems.append(Problem("error", "invalid", where,
                                "rules cannot apply to both regular resources and non-resource URLs"))
    return PolicyRule(
        level=Level.parse(level_text),
        users=_strings(raw.get("users"), f"{where}.users", problems),
        user_groups=_strings(raw.get("userGroups"), f"{where}.userGroups", problems),
        verbs=_strings(raw.get("verbs"), f"{where}.verbs", problems),
        resources=tuple(g for g in groups if g is not None),
        namespaces=namespaces,
        non_resource_urls=urls,
        omit_stages=_stages(raw.get("omitStages"), f"{where}.omitStages", problems),
        omit_managed_fields=_bool(raw.get("omitManagedFields"), f"{where}.omitManagedFields", problems),
    )


def _group(raw: Any, where: str, problems: list[Problem]) -> GroupResources | None:
    if not isinstance(raw, dict):
        problems.append(Problem("error", "invalid", where, "must be a mapping with group/resources/resourceNames"))
        return None
    _unknown(raw, _GR_FIELDS, where, problems)
    group = raw.get("group", "") or ""
    if not isinstance(group, str):
        problems.append(Problem("error", "invalid", f"{where}.group", "must be a string"))
        return None
    if group not in ("", "*") and not _DNS_SUBDOMAIN.match(group):
        problems.append(Problem("error", "invalid", f"{where}.group",
                                f"{group!r} is not a DNS subdomain (write the group without a version, "
                                "'' for core)"))
    names = _strings(raw.get("resourceNames"), f"{where}.resourceNames", problems)
    resources = _strings(raw.get("resources"), f"{where}.resources", problems)
    if names and not resources:
        problems.append(Problem("error", "invalid", f"{where}.resourceNames",
                                "resourceNames requires at least one entry in resources"))
    return GroupResources(group, resources, names)
