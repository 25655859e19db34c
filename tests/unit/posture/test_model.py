"""Policy loading: what the apiserver refuses, what it silently ignores, and what kubetrail reports."""

from __future__ import annotations

from kubetrail.posture.policy.model import Level, parse_policy

HEAD = "apiVersion: audit.k8s.io/v1\nkind: Policy\n"


def codes(text: str) -> list[tuple[str, str]]:
    return [(p.code, p.where) for p in parse_policy(text).problems]


def test_valid_policy_loads_with_all_fields() -> None:
    """Every field of Policy and PolicyRule lands in the model."""
    loaded = parse_policy(HEAD + """omitStages: [RequestReceived]
omitManagedFields: true
rules:
- level: Request
  users: [a]
  userGroups: [g]
  verbs: [get]
  namespaces: [ns]
  resources: [{group: apps, resources: [deployments], resourceNames: [d]}]
  omitStages: [Panic]
  omitManagedFields: false
- level: None
  nonResourceURLs: ["/healthz*"]
""")
    assert loaded.problems == [] and loaded.policy is not None
    r = loaded.policy.rules[0]
    assert (r.level, r.users, r.user_groups, r.verbs, r.namespaces) == (Level.REQUEST, ("a",), ("g",), ("get",),
                                                                         ("ns",))
    assert r.resources[0].group == "apps" and r.resources[0].resource_names == ("d",)
    assert r.omit_stages == ("Panic",) and r.omit_managed_fields is False
    assert loaded.policy.omit_managed_fields is True
    assert loaded.policy.rules[1].non_resource_urls == ("/healthz*",)


def test_unknown_fields_are_errors_but_policy_still_models_the_apiserver() -> None:
    """`verb:` is dropped by the apiserver; kubetrail reports it and models the broader rule."""
    loaded = parse_policy(HEAD + "rules:\n- level: None\n  verb: [watch]\n  resources: [{group: '', resource: x}]\n")
    assert ("unknown-field", "rules[0].verb") in [(p.code, p.where) for p in loaded.problems]
    assert ("unknown-field", "rules[0].resources[0].resource") in [(p.code, p.where) for p in loaded.problems]
    assert all(p.severity == "error" for p in loaded.problems)
    assert "silently ignores" in loaded.problems[0].message and "verbs" in loaded.problems[0].message
    assert loaded.policy is not None and loaded.policy.rules[0].verbs == ()


def test_duplicate_fields_reported() -> None:
    """Strict decoding rejects duplicate keys; YAML would silently keep the last."""
    assert [c for c, _ in codes(HEAD + "rules:\n- level: None\n  level: Metadata\n")] == ["duplicate-field"]


def test_apiserver_refusals() -> None:
    """Each validation the apiserver enforces makes the policy unloadable."""
    bad = {
        "rules: []\n": "rules",
        "rules:\n- level: Verbose\n": "rules[0].level",
        "rules:\n- {level: None, nonResourceURLs: [healthz]}\n": "rules[0].nonResourceURLs",
        "rules:\n- {level: None, nonResourceURLs: ['/a*b']}\n": "rules[0].nonResourceURLs",
        "rules:\n- {level: None, nonResourceURLs: ['/a'], namespaces: [x]}\n": "rules[0]",
        "rules:\n- {level: None, resources: [{group: 'rbac.authorization.k8s.io/v1'}]}\n":
            "rules[0].resources[0].group",
        "rules:\n- {level: None, resources: [{group: '', resourceNames: [x]}]}\n": "rules[0].resources[0].resourceNames",
        "rules:\n- {level: None, omitStages: [Done]}\n": "rules[0].omitStages",
        "rules:\n- {level: None, users: alice}\n": "rules[0].users",
    }
    for body, where in bad.items():
        loaded = parse_policy(HEAD + body)
        assert loaded.refused, body
        assert ("invalid", where) in [(p.code, p.where) for p in loaded.problems], (body, loaded.problems)


def test_missing_kind_and_old_versions() -> None:
    """No apiVersion/kind is refused; v1beta1 loads in kubetrail but is flagged as removed in 1.24."""
    assert parse_policy("rules:\n- level: None\n").refused
    old = parse_policy("apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules:\n- level: Metadata\n")
    assert old.policy is not None and [p.code for p in old.problems] == ["deprecated-version"]
    assert parse_policy("not: [valid").refused
    assert parse_policy(HEAD + "rules:\n- level: None\n---\n" + HEAD + "rules:\n- level: None\n").refused


def test_yaml_merge_keys_are_accepted() -> None:
    """`<<: *anchor` merges like go-yaml does; merged keys overridden explicitly are no duplicates."""
    from kubetrail.posture.policy.model import parse_policy

    loaded = parse_policy("base: &b {level: Metadata, verbs: [list]}\napiVersion: audit.k8s.io/v1\nkind: Policy\n"
                          "rules: [{<<: *b, verbs: [get]}]\n")
    assert loaded.policy is not None
    assert loaded.policy.rules[0].level.name == "METADATA" and loaded.policy.rules[0].verbs == ("get",)
    assert not [p for p in loaded.problems if p.code in ("invalid", "duplicate-field")]
