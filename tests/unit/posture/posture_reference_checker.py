# ruff: noqa: SIM102, SIM103, SIM110  -- the Go control flow is kept on purpose
"""A plain, line-by-line transcription of the apiserver's policy checker (``pkg/audit/policy/checker.go``,
as quoted in the shared reference §1.3), working on the raw policy dict. It is the oracle for the
property tests: deliberately naive, no compilation, no sets, the Go control flow kept as is.
"""

from __future__ import annotations

from typing import Any


def has_string(slice_: list[str], value: str) -> bool:
    for s in slice_:
        if s == value:
            return True
    return False


def new_evaluator(policy: dict[str, Any]) -> list[dict[str, Any]]:
    rules = []
    for rule in policy["rules"]:
        r = dict(rule)
        union: list[str] = []
        for s in list(policy.get("omitStages") or []) + list(rule.get("omitStages") or []):
            if s not in union:
                union.append(s)
        r["omitStages"] = union
        rules.append(r)
    return rules


def evaluate_policy_rule(policy: dict[str, Any], attrs: dict[str, Any]) -> tuple[str, set[str], bool, int | None]:
    """(level, omitStages, omitManagedFields, index of the matching rule)."""
    rules = new_evaluator(policy)
    for i, rule in enumerate(rules):
        if rule_matches(rule, attrs):
            omf = rule.get("omitManagedFields")
            if omf is None:
                omf = bool(policy.get("omitManagedFields"))
            return rule["level"], set(rule["omitStages"]), omf, i
    return "None", set(policy.get("omitStages") or []), bool(policy.get("omitManagedFields")), None


def rule_matches(r: dict[str, Any], attrs: dict[str, Any]) -> bool:
    user = attrs["user"]
    if r.get("users"):
        if user is None or not has_string(r["users"], user["name"]):
            return False
    if r.get("userGroups"):
        if user is None:
            return False
        matched = False
        for group in user["groups"]:
            if has_string(r["userGroups"], group):
                matched = True
        if not matched:
            return False
    if r.get("verbs"):
        if not has_string(r["verbs"], attrs["verb"]):
            return False
    if r.get("namespaces") or r.get("resources"):
        return rule_matches_resource(r, attrs)
    if r.get("nonResourceURLs"):
        return rule_matches_non_resource(r, attrs)
    return True


def rule_matches_non_resource(r: dict[str, Any], attrs: dict[str, Any]) -> bool:
    if attrs["is_resource"]:
        return False
    path = attrs["path"]
    for spec in r["nonResourceURLs"]:
        if path_matches(path, spec):
            return True
    return False


def path_matches(path: str, spec: str) -> bool:
    if spec == "*":
        return True
    if spec == path:
        return True
    if spec.endswith("*") and path.startswith(spec.rstrip("*")):
        return True
    return False


def rule_matches_resource(r: dict[str, Any], attrs: dict[str, Any]) -> bool:
    if not attrs["is_resource"]:
        return False
    if r.get("namespaces"):
        if not has_string(r["namespaces"], attrs["namespace"]):
            return False
    if not r.get("resources"):
        return True
    api_group = attrs["api_group"]
    resource = attrs["resource"]
    subresource = attrs["subresource"]
    combined = resource
    if subresource != "":
        combined = resource + "/" + subresource
    name = attrs["name"]
    for gr in r["resources"]:
        if gr.get("group", "") == api_group or gr.get("group", "") == "*":
            if not gr.get("resources"):
                return True
            for res in gr["resources"]:
                if not gr.get("resourceNames") or has_string(gr["resourceNames"], name):
                    if res == combined or res == "*":
                        return True
                    if len(subresource) > 0 and res.startswith("*/") and subresource == res[len("*/"):]:
                        return True
                    if res.endswith("/*") and resource == res[: -len("/*")]:
                        return True
    return False
