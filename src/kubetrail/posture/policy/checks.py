"""Static checks on a policy's rules: mistakes the apiserver accepts silently (reference §1.2, §4.4).

Each check yields ``Problem``s. None of them needs requests: they read the rules, so they also
catch entries that no synthetic request happens to exercise (a ``tokenreviews`` under group ``""``
never matches anything, whatever the coverage matrix says).
"""

from __future__ import annotations

from collections.abc import Iterator

from kubetrail.posture.policy.model import GroupResources, Level, Policy, PolicyRule, Problem

RESOURCE_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
                            "proxy"})
HTTP_VERBS = frozenset({"get", "post", "put", "patch", "delete", "head", "options"})

# Where well-known resources live; a name listed under another group never matches.
KNOWN_GROUPS: dict[str, frozenset[str]] = {
    "pods": frozenset({""}), "secrets": frozenset({""}), "configmaps": frozenset({""}),
    "serviceaccounts": frozenset({""}), "nodes": frozenset({""}), "namespaces": frozenset({""}),
    "services": frozenset({""}), "endpoints": frozenset({""}), "persistentvolumes": frozenset({""}),
    "persistentvolumeclaims": frozenset({""}), "replicationcontrollers": frozenset({""}),
    "events": frozenset({"", "events.k8s.io"}),
    "tokenreviews": frozenset({"authentication.k8s.io"}),
    "selfsubjectreviews": frozenset({"authentication.k8s.io"}),
    "subjectaccessreviews": frozenset({"authorization.k8s.io"}),
    "selfsubjectaccessreviews": frozenset({"authorization.k8s.io"}),
    "deployments": frozenset({"apps", "extensions"}), "daemonsets": frozenset({"apps", "extensions"}),
    "replicasets": frozenset({"apps", "extensions"}), "statefulsets": frozenset({"apps"}),
    "controllerrevisions": frozenset({"apps"}),
    "jobs": frozenset({"batch"}), "cronjobs": frozenset({"batch"}),
    "roles": frozenset({"rbac.authorization.k8s.io"}), "clusterroles": frozenset({"rbac.authorization.k8s.io"}),
    "rolebindings": frozenset({"rbac.authorization.k8s.io"}),
    "clusterrolebindings": frozenset({"rbac.authorization.k8s.io"}),
    "certificatesigningrequests": frozenset({"certificates.k8s.io"}),
    "validatingwebhookconfigurations": frozenset({"admissionregistration.k8s.io"}),
    "mutatingwebhookconfigurations": frozenset({"admissionregistration.k8s.io"}),
    "customresourcedefinitions": frozenset({"apiextensions.k8s.io"}),
    "leases": frozenset({"coordination.k8s.io"}),
    "networkpolicies": frozenset({"networking.k8s.io"}), "ingresses": frozenset({"networking.k8s.io", "extensions"}),
    "endpointslices": frozenset({"discovery.k8s.io"}),
}
_SINGULAR = {r[:-1]: r for r in KNOWN_GROUPS if r.endswith("s")}


def rule_checks(policy: Policy) -> Iterator[Problem]:
    """Every static finding for the policy, in rule order."""
    if "ResponseStarted" in policy.omit_stages:
        yield Problem("warn", "omits-response-started", "omitStages",
                      "omitting ResponseStarted loses every rejected (401) request, whose only stage it is, "
                      "and the start of exec/attach/port-forward sessions")
    if any(r.level > Level.NONE and "RequestReceived" not in r.omit_stages for r in policy.rules) \
            and "RequestReceived" not in policy.omit_stages:
        yield Problem("info", "keeps-request-received", "omitStages",
                      "RequestReceived is recorded: it roughly doubles the volume and adds nothing once "
                      "ResponseComplete arrives (keep it only with --audit-log-mode=blocking-strict)")
    for i, rule in enumerate(policy.rules):
        yield from _rule_checks(i, rule, policy)
    if not any(r.is_catch_all for r in policy.rules):
        yield Problem("info", "no-catch-all", "rules",
                      "no catch-all rule: requests that match nothing are not recorded (level None)")
    yield from unreachable(policy)


def _rule_checks(i: int, rule: PolicyRule, policy: Policy) -> Iterator[Problem]:
    where = f"rules[{i}]"
    if "ResponseStarted" in rule.omit_stages and "ResponseStarted" not in policy.omit_stages:
        yield Problem("warn", "omits-response-started", f"{where}.omitStages",
                      "omitting ResponseStarted here loses rejected (401) requests and exec/attach/port-forward "
                      "starts that reach this rule")
    for field, values in (("users", rule.users), ("userGroups", rule.user_groups), ("namespaces", rule.namespaces)):
        if "*" in values:
            yield Problem("error", "not-a-wildcard", f"{where}.{field}",
                          f"'*' is not a wildcard in {field}: it matches only the literal name '*'")
    yield from _verb_checks(where, rule)
    for j, g in enumerate(rule.resources):
        yield from _group_checks(f"{where}.resources[{j}]", g, rule)


def _verb_checks(where: str, rule: PolicyRule) -> Iterator[Problem]:
    if rule.non_resource_urls:
        valid, kind = HTTP_VERBS, "non-resource verbs are lower-case HTTP methods"
    elif rule.resources or rule.namespaces:
        valid, kind = RESOURCE_VERBS, "resource verbs are get, list, watch, create, update, patch, delete, " \
                                      "deletecollection (and proxy)"
    else:
        valid, kind = RESOURCE_VERBS | HTTP_VERBS, "verbs are request verbs or lower-case HTTP methods"
    for verb in rule.verbs:
        if verb in valid:
            continue
        why = {"impersonate": "impersonated requests keep their own verb",
               "exec": "exec is the subresource pods/exec (verbs create and get)"}.get(verb, kind)
        yield Problem("error", "impossible-verb", f"{where}.verbs", f"verb {verb!r} never matches: {why}")
    if rule.verbs and set(rule.verbs) <= {"create"}:
        subs = {r for g in rule.resources if g.group in ("", "*") for r in g.resources}
        for sub in sorted(subs & {"pods/exec", "pods/attach", "pods/portforward"}):
            yield Problem("error", "exec-create-only", f"{where}.verbs",
                          f"{sub} with verbs [create] misses WebSocket sessions (kubectl >= 1.31 sends them as get)")


def _group_checks(where: str, g: GroupResources, rule: PolicyRule) -> Iterator[Problem]:
    if g.group == "*":
        yield Problem("warn", "group-wildcard", f"{where}.group",
                      "group '*' needs Kubernetes 1.36 or later; older apiservers refuse the policy")
    if g.group in ("v1",) or g.group.endswith(".v1"):
        yield Problem("error", "misplaced-group", f"{where}.group",
                      f"group {g.group!r} never matches: groups are written without a version ('' is core)")
        return
    for res in g.resources:
        base = res.split("/", 1)[0]
        if base != "*" and base.lower() != base:
            yield Problem("error", "resource-case", f"{where}.resources",
                          f"{res!r} never matches: resource names are lower-case")
        elif base in _SINGULAR:
            yield Problem("error", "resource-singular", f"{where}.resources",
                          f"{res!r} never matches: resources are plural ({_SINGULAR[base]!r})")
        elif base in KNOWN_GROUPS and g.group != "*" and g.group not in KNOWN_GROUPS[base]:
            homes = " or ".join(repr(h) if h else "'' (core)" for h in sorted(KNOWN_GROUPS[base]))
            yield Problem("error", "misplaced-group", f"{where}.resources",
                          f"{res!r} is not in group {g.group or chr(39) * 2 + ' (core)'}: it lives in {homes}, "
                          "so this entry never matches")
    if g.resource_names and rule.verbs and set(rule.verbs) <= {"create"}:
        yield Problem("warn", "names-on-create", f"{where}.resourceNames",
                      "a create has no name when the policy is evaluated, so resourceNames never match it")


# --- shadowing -----------------------------------------------------------------------------------

def _subset(later: tuple[str, ...], earlier: tuple[str, ...]) -> bool:
    """An earlier selector admits everything the later one does."""
    return not earlier or (bool(later) and set(later) <= set(earlier))


def _pattern_covers(e: str, lat: str) -> bool:
    if e in ("*", lat):
        return True
    if e.startswith("*/"):
        return "/" in lat and lat.split("/", 1)[1] == e[2:]
    if e.endswith("/*"):  # "pods/*" matches pods itself too: checker.go compares only the resource
        return lat == e[:-2] or (lat.startswith(e[:-1]) and len(lat) > len(e) - 1)
    return False


def _gr_covers(e: GroupResources, lat: GroupResources) -> bool:
    if e.group not in ("*", lat.group):
        return False
    if not e.resources:
        return True
    if not lat.resources or not _subset(lat.resource_names, e.resource_names):
        return False
    return all(any(_pattern_covers(pe, pl) for pe in e.resources) for pl in lat.resources)


def _url_covers(e: str, lat: str) -> bool:
    if e == lat or e == "*":
        return True
    return e.endswith("*") and lat.rstrip("*").startswith(e.rstrip("*"))


def shadows(e: PolicyRule, lat: PolicyRule) -> bool:
    """Conservatively: every request that ``lat`` matches is matched by the earlier ``e``."""
    if not (_subset(lat.users, e.users) and _subset(lat.user_groups, e.user_groups) and _subset(lat.verbs, e.verbs)):
        return False
    if e.resources or e.namespaces:
        if not (lat.resources or lat.namespaces):
            return False
        if not _subset(lat.namespaces, e.namespaces):
            return False
        return not e.resources or (bool(lat.resources) and all(any(_gr_covers(ge, gl) for ge in e.resources)
                                                                for gl in lat.resources))
    if e.non_resource_urls:
        return bool(lat.non_resource_urls) and all(any(_url_covers(ue, ul) for ue in e.non_resource_urls)
                                                   for ul in lat.non_resource_urls)
    return True


def unreachable(policy: Policy) -> Iterator[Problem]:
    for j, later in enumerate(policy.rules):
        for i in range(j):
            earlier = policy.rules[i]
            if shadows(earlier, later):
                sev = "error" if earlier.is_catch_all else "warn"
                what = "the catch-all" if earlier.is_catch_all else "rule"
                yield Problem(sev, "unreachable-rule", f"rules[{j}]",
                              f"never applies: {what} rules[{i}] (level {earlier.level.wire}) matches every "
                              f"request it would match, and the first match wins")
                break
