"""The compiled matcher agrees with a plain transcription of checker.go on random policies and requests."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from posture_reference_checker import evaluate_policy_rule

from kubetrail.posture.policy.match import Evaluator, RequestAttrs, UserInfo
from kubetrail.posture.policy.model import STAGES, parse_policy

USERS = ["alice", "bob", "system:kube-proxy", "*", ""]
GROUPS = ["system:authenticated", "system:nodes", "devs", "system:unauthenticated", "*"]
VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "post", "impersonate"]
API_GROUPS = ["", "apps", "rbac.authorization.k8s.io", "*"]
RESOURCES = ["pods", "pods/exec", "pods/log", "pods/*", "*/status", "*", "secrets", "deployments",
             "deployments/scale", "nodes/status", "exec", "status"]
NAMES = ["", "x", "coredns", "kube-system"]
NAMESPACES = ["", "default", "kube-system", "*"]
URLS = ["*", "/healthz", "/healthz*", "/api*", "/apis", "/version", "/", "/*", "/metrics"]
PATHS = ["/healthz", "/healthzfoo", "/healthz/etcd", "/api", "/apis", "/api/v1", "/version", "/", "/metrics", ""]


def _sub(xs: list[str], max_size: int = 3) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(xs), max_size=max_size)


group_resources = st.fixed_dictionaries({"group": st.sampled_from(API_GROUPS)},
                                        optional={"resources": _sub(RESOURCES)}).flatmap(
    lambda g: st.just(g) if not g.get("resources") else
    st.fixed_dictionaries({}, optional={"resourceNames": _sub(NAMES[1:], 2)}).map(lambda extra: {**g, **extra}))


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"level": draw(st.sampled_from(["None", "Metadata", "Request", "RequestResponse"]))}
    for key, values in (("users", USERS), ("userGroups", GROUPS), ("verbs", VERBS)):
        if draw(st.integers(0, 3)) == 0:
            rule[key] = draw(_sub(values))
    kind = draw(st.sampled_from(["resource", "resource", "nonresource", "none"]))
    if kind == "resource":
        if draw(st.integers(0, 3)) == 0:
            rule["namespaces"] = draw(_sub(NAMESPACES))
        if draw(st.integers(0, 3)) > 0:
            rule["resources"] = draw(st.lists(group_resources, max_size=3))
    elif kind == "nonresource":
        rule["nonResourceURLs"] = draw(_sub(URLS))
    if draw(st.booleans()):
        rule["omitStages"] = draw(_sub(list(STAGES), 2))
    if draw(st.booleans()):
        rule["omitManagedFields"] = draw(st.booleans())
    return rule


policies = st.fixed_dictionaries(
    {"apiVersion": st.just("audit.k8s.io/v1"), "kind": st.just("Policy"), "rules": st.lists(rules(), min_size=1,
                                                                                            max_size=6)},
    optional={"omitStages": _sub(list(STAGES), 2), "omitManagedFields": st.booleans()})


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    user = draw(st.none() | st.fixed_dictionaries({"name": st.sampled_from(USERS[:3] + ["carol"]),
                                                   "groups": _sub(GROUPS[:4])}))
    is_resource = draw(st.booleans())
    attrs: dict[str, Any] = {"user": user, "verb": draw(st.sampled_from(VERBS)), "is_resource": is_resource,
                             "api_group": "", "resource": "", "subresource": "", "namespace": "", "name": "",
                             "path": ""}
    if is_resource:
        attrs.update(api_group=draw(st.sampled_from(API_GROUPS[:3] + ["batch"])),
                     resource=draw(st.sampled_from(["pods", "pods", "secrets", "deployments", "nodes"])),
                     subresource=draw(st.sampled_from(["", "", "exec", "log", "status", "scale"])),
                     namespace=draw(st.sampled_from(NAMESPACES[:3] + ["*"])), name=draw(st.sampled_from(NAMES)))
    else:
        attrs["path"] = draw(st.sampled_from(PATHS))
    return attrs


def _to_attrs(a: dict[str, Any]) -> RequestAttrs:
    user = None if a["user"] is None else UserInfo(a["user"]["name"], tuple(a["user"]["groups"]))
    return RequestAttrs(user, a["verb"], a["is_resource"], a["api_group"], a["resource"], a["subresource"],
                        a["namespace"], a["name"], a["path"])


@settings(max_examples=800, deadline=None)
@given(policies, st.lists(requests(), min_size=1, max_size=30))
def test_model_matches_transcribed_checker(policy: dict[str, Any], reqs: list[dict[str, Any]]) -> None:
    """For any valid policy and request, level, stages, managed fields and rule index equal the oracle's."""
    loaded = parse_policy(__import__("json").dumps(policy))
    assert loaded.policy is not None, loaded.problems
    ev = Evaluator(loaded.policy)
    for a in reqs:
        level, omit, omf, index = evaluate_policy_rule(policy, a)
        d = ev.evaluate(_to_attrs(a))
        assert (d.level.wire, set(d.omit_stages), d.omit_managed_fields, d.rule_index) == (level, omit, omf, index)
