"""Rule matching, field by field and wildcard form by wildcard form (reference §1.3-§1.5)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetrail.posture.policy.match import Evaluator, RequestAttrs, UserInfo, attrs_from_event
from kubetrail.posture.policy.model import Level, parse_policy

ALICE = UserInfo("alice", ("devs", "system:authenticated"))


def ev(*rules: dict[str, Any], **policy: Any) -> Evaluator:
    doc = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": list(rules), **policy}
    loaded = parse_policy(json.dumps(doc))
    assert loaded.policy is not None, loaded.problems
    return Evaluator(loaded.policy)


def res(verb: str = "get", group: str = "", resource: str = "pods", sub: str = "", ns: str = "default",
        name: str = "p1", user: UserInfo | None = ALICE) -> RequestAttrs:
    return RequestAttrs(user, verb, True, group, resource, sub, ns, name)


def url(path: str, verb: str = "get", user: UserInfo | None = ALICE) -> RequestAttrs:
    return RequestAttrs(user, verb, False, path=path)


def level(e: Evaluator, a: RequestAttrs) -> str:
    return e.evaluate(a).level.wire


def test_first_matching_rule_wins_and_no_match_is_none() -> None:
    """Rules are tried in order; nothing matching gives None with the policy-level omitStages."""
    e = ev({"level": "Request", "verbs": ["get"]}, {"level": "Metadata", "verbs": ["get", "list"]},
           omitStages=["RequestReceived"])
    assert e.evaluate(res("get")).rule_index == 0
    assert e.evaluate(res("list")).rule_index == 1
    d = e.evaluate(res("delete"))
    assert (d.level, d.rule_index, d.omit_stages) == (Level.NONE, None, frozenset({"RequestReceived"}))
    assert not d.keeps("ResponseComplete")


def test_users_exact_and_star_is_literal() -> None:
    """users matches the name exactly; '*' is just a name; a missing user (401) never matches."""
    e = ev({"level": "Request", "users": ["alice"]}, {"level": "Metadata", "users": ["*"]})
    assert level(e, res()) == "Request"
    assert level(e, res(user=UserInfo("bob"))) == "None"
    assert level(e, res(user=UserInfo("*"))) == "Metadata"
    assert level(e, res(user=None)) == "None"


def test_user_groups_any_overlap() -> None:
    """userGroups matches when any of the user's groups is listed; nil user never matches."""
    e = ev({"level": "Request", "userGroups": ["system:nodes", "devs"]})
    assert level(e, res()) == "Request"
    assert level(e, res(user=UserInfo("n", ("system:authenticated",)))) == "None"
    assert level(e, res(user=None)) == "None"


def test_verbs_exact_websocket_exec_is_get() -> None:
    """verbs: exact strings; exec over WebSocket is get, so [create] misses it."""
    e = ev({"level": "Request", "verbs": ["create"], "resources": [{"group": "", "resources": ["pods/exec"]}]})
    assert level(e, res("create", sub="exec")) == "Request"
    assert level(e, res("get", sub="exec")) == "None"


def test_group_core_named_and_star() -> None:
    """group '' is core only; a named group only itself; '*' every group."""
    e = ev({"level": "Request", "resources": [{"group": "", "resources": ["deployments"]}]},
           {"level": "Metadata", "resources": [{"group": "apps", "resources": ["deployments"]}]},
           {"level": "RequestResponse", "resources": [{"group": "*", "resources": ["jobs"]}]})
    assert level(e, res(group="apps", resource="deployments")) == "Metadata"
    assert level(e, res(group="", resource="deployments")) == "Request"
    assert level(e, res(group="batch", resource="jobs")) == "RequestResponse"
    assert level(e, res(group="example.com", resource="jobs")) == "RequestResponse"


def test_group_without_resources_covers_subresources() -> None:
    """A group entry without resources matches every resource and subresource of the group."""
    e = ev({"level": "Request", "resources": [{"group": ""}]})
    assert level(e, res(sub="exec")) == "Request"
    assert level(e, res(group="apps", resource="deployments")) == "None"


@pytest.mark.parametrize(("pattern", "resource", "sub", "hit"), [
    ("pods", "pods", "", True),
    ("pods", "pods", "log", False),  # consistent with RBAC: pods is not pods/log
    ("pods/log", "pods", "log", True),
    ("pods/log", "pods", "", False),
    ("*", "pods", "", True),
    ("*", "pods", "exec", True),
    ("pods/*", "pods", "exec", True),
    ("pods/*", "pods", "", True),  # checker.go compares only the resource part
    ("pods/*", "secrets", "", False),
    ("*/status", "deployments", "status", True),
    ("*/status", "deployments", "", False),
    ("*/status", "deployments", "scale", False),
])
def test_resource_wildcard_forms(pattern: str, resource: str, sub: str, hit: bool) -> None:
    """pods, pods/log, *, pods/*, */status."""
    e = ev({"level": "Request", "resources": [{"group": "*", "resources": [pattern]}]})
    assert (level(e, res(resource=resource, sub=sub)) == "Request") is hit


def test_resource_names_and_create_without_name() -> None:
    """resourceNames restricts by name; a create has no name yet and never matches."""
    e = ev({"level": "Request", "resources": [{"group": "", "resources": ["configmaps"],
                                               "resourceNames": ["coredns"]}]})
    assert level(e, res("update", resource="configmaps", name="coredns")) == "Request"
    assert level(e, res("update", resource="configmaps", name="other")) == "None"
    assert level(e, res("create", resource="configmaps", name="")) == "None"


def test_namespaces_cluster_scope_and_namespace_objects() -> None:
    """'' selects cluster-scoped requests; a Namespace object is in its own namespace; '*' is literal."""
    e = ev({"level": "Request", "namespaces": ["kube-system"]}, {"level": "Metadata", "namespaces": [""]},
           {"level": "RequestResponse", "namespaces": ["*"]})
    assert level(e, res(resource="namespaces", ns="kube-system", name="kube-system")) == "Request"
    assert level(e, res("list", resource="nodes", ns="", name="")) == "Metadata"
    assert level(e, res(ns="default")) == "None"
    assert level(e, url("/healthz")) == "None"  # a namespace-only rule needs a resource request


@pytest.mark.parametrize(("spec", "path", "hit"), [
    ("/healthz", "/healthz", True),
    ("/healthz", "/healthz/etcd", False),
    ("/healthz*", "/healthz", True),
    ("/healthz*", "/healthz/etcd", True),
    ("/healthz*", "/healthzfoo", True),  # plain string prefix
    ("/api*", "/apis/apps/v1", True),
    ("*", "/anything", True),
])
def test_non_resource_urls(spec: str, path: str, hit: bool) -> None:
    """Exact paths, trailing-* prefixes and the lone '*'."""
    e = ev({"level": "Request", "nonResourceURLs": [spec]})
    assert (level(e, url(path)) == "Request") is hit


def test_kinds_do_not_cross() -> None:
    """Resource rules never match non-resource requests and vice versa; selector-less rules match both."""
    e = ev({"level": "Request", "nonResourceURLs": ["*"]}, {"level": "Metadata", "users": ["alice"]})
    assert level(e, url("/api")) == "Request"
    assert level(e, res()) == "Metadata"
    e2 = ev({"level": "Request", "resources": [{"group": "*"}]})
    assert level(e2, url("/api")) == "None"


def test_omit_stages_union_and_managed_fields_override() -> None:
    """Rule omitStages are unioned with the policy's; rule omitManagedFields overrides the policy default."""
    e = ev({"level": "Request", "verbs": ["get"], "omitStages": ["ResponseStarted"], "omitManagedFields": False},
           {"level": "Metadata"}, omitStages=["RequestReceived"], omitManagedFields=True)
    d = e.evaluate(res("get"))
    assert d.omit_stages == frozenset({"RequestReceived", "ResponseStarted"})
    assert d.omit_managed_fields is False
    assert not d.keeps("ResponseStarted") and d.keeps("ResponseComplete")
    d2 = e.evaluate(res("list"))
    assert d2.omit_stages == frozenset({"RequestReceived"}) and d2.omit_managed_fields is True


def test_attrs_from_event_uses_authenticated_user() -> None:
    """Impersonation: the policy sees the impersonator; 401 events have no user; the query is not the path."""
    event = {"auditID": "a", "verb": "get", "user": {"username": "ci", "groups": ["system:authenticated"]},
             "impersonatedUser": {"username": "system:admin", "groups": ["system:masters"]},
             "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"}}
    a = attrs_from_event(event)
    assert a.user == UserInfo("ci", ("system:authenticated",))
    assert (a.resource_request, a.api_group, a.resource, a.namespace, a.name) == (True, "", "secrets", "prod", "db")
    anon = attrs_from_event({"auditID": "b", "verb": "get", "user": {}, "requestURI": "/healthz?verbose=1"})
    assert anon.user is None and not anon.resource_request and anon.path == "/healthz"
    e = ev({"level": "Request", "users": ["system:admin"]}, {"level": "Metadata"})
    assert level(e, a) == "Metadata"
