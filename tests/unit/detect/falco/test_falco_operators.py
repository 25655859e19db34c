"""Every comparison operator, missing values, list fields, transformers and compat differences."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrail.detect.falco.compiler import CompileError, Compiler, glob_regex
from kubetrail.detect.falco.context import EventContext
from kubetrail.detect.falco.parser import parse_condition

EV: dict[str, Any] = {
    "auditID": "a1",
    "stage": "ResponseComplete",
    "verb": "create",
    "requestURI": "/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=id&container=c1",
    "user": {"username": "Alice", "groups": ["system:authenticated", "devs"]},
    "objectRef": {"resource": "pods", "namespace": "default", "name": "p"},
    "responseStatus": {"code": 99},
    "sourceIPs": ["10.0.0.1", "192.168.1.9"],
    "stageTimestamp": "2024-01-02T03:04:05.123456Z",
    "requestObject": {"spec": {"volumes": [{"name": "a", "hostPath": {"path": "/var/run/docker.sock"}}]}},
}


def ev_match(cond: str, ev: dict[str, Any] | None = None, compat: str = "kubetrail") -> bool:
    pred = Compiler(compat).compile(parse_condition(cond))
    return pred(EventContext(EV if ev is None else ev))


@pytest.mark.parametrize("cond,expected", [
    ("ka.verb = create", True), ("ka.verb == create", True), ("ka.verb = get", False),
    ("ka.verb != get", True), ("ka.verb != create", False),
    ("ka.user.name contains lic", True), ("ka.user.name contains LIC", False),
    ("ka.user.name icontains LIC", True),
    ("ka.user.name startswith Al", True), ("ka.user.name endswith ice", True), ("ka.user.name endswith Al", False),
    ("ka.uri glob '/api/*/exec?*'", True), ("ka.uri glob '/API/*'", False), ("ka.uri iglob '/API/*'", True),
    ("ka.target.name glob '[!q]'", True), ("ka.target.name glob '[q]'", False),
    ("ka.user.name regex 'A[a-z]+'", True), ("ka.user.name regex 'lic'", False),
    ("ka.verb in (get, create)", True), ("ka.verb in (get)", False), ("ka.verb intersects (create)", True),
    ("ka.verb in ()", False),
    ("jevt.value[/requestObject/spec/volumes/0/hostPath/path] pmatch (/var/run)", True),
    ("jevt.value[/requestObject/spec/volumes/0/hostPath/path] pmatch (/var/ru)", False),
    ("jevt.value[/requestObject/spec/volumes/0/hostPath/path] pmatch (/)", True),
    ("jevt.value[/requestObject/spec/volumes/0/hostPath/path] pmatch (/var/*/docker.sock)", True),
    ("ka.verb exists", True), ("ka.impuser.name exists", False),
    ("ka.user.name startswith anyof (x, Al)", True), ("ka.user.name startswith allof (A, Al)", True),
    ("ka.user.name startswith allof (A, x)", False), ("ka.user.name startswith oneof (A, Al)", False),
    ("ka.user.name startswith oneof (A, x)", True),
])
def test_scalar_operators(cond: str, expected: bool) -> None:
    assert ev_match(cond) is expected


@pytest.mark.parametrize("cond", [
    "ka.impuser.name = x", "ka.impuser.name != x", "ka.impuser.name contains x", "ka.impuser.name in (x)",
    "ka.impuser.name exists", "ka.impuser.name startswith ''", "ka.impuser.name = '<NA>'",
    "ka.req.pod.containers.image in (nginx)", "ka.req.pod.containers.image intersects (nginx)",
])
def test_missing_values_make_every_comparison_false(cond: str) -> None:
    assert ev_match(cond) is False
    assert ev_match(f"not {cond}") is True  # `not` just negates


def test_no_audit_id_means_every_ka_field_is_missing() -> None:
    ev = {k: v for k, v in EV.items() if k != "auditID"}
    assert not ev_match("ka.verb = create", ev)
    assert ev_match("jevt.value[/verb] = create", ev)  # json fields still work


def test_list_fields() -> None:
    assert ev_match("ka.user.groups in (system:authenticated, devs, x)")
    assert not ev_match("ka.user.groups in (devs)")  # in = every element
    assert ev_match("ka.user.groups intersects (devs)")  # some element
    assert ev_match("ka.user.groups exists")
    assert not ev_match("ka.user.groups exists", {**EV, "user": {"username": "a", "groups": []}})


def test_list_field_with_scalar_operator_warns_and_tests_some_element() -> None:
    c = Compiler()
    pred = c.compile(parse_condition("ka.user.groups contains dev"))
    assert pred(EventContext(EV)) and any("list field" in w for w in c.warnings)


def test_numeric_comparison_compat() -> None:
    # Falco compares strings: "99" >= "400" is true (strcmp)
    assert ev_match("ka.response.code >= 400", compat="falco")
    assert not ev_match("ka.response.code >= 400", compat="kubetrail")
    assert ev_match("ka.response.code < 100", compat="kubetrail")
    assert ev_match("len(ka.user.groups) = 2") and ev_match("len(ka.user.groups) > 1", compat="falco")


def test_transformers() -> None:
    assert ev_match("tolower(ka.user.name) = alice")
    assert ev_match("toupper(ka.user.name) = ALICE")
    assert ev_match("basename(ka.uri) startswith exec")
    ev = {**EV, "annotations": {"x": "aGVsbG8="}}
    assert ev_match("b64(jevt.value[/annotations/x]) = hello", ev)
    assert not ev_match("b64(ka.user.name) = x")  # not base64 -> missing


def test_field_on_the_right() -> None:
    ev = {**EV, "impersonatedUser": {"username": "Alice"}}
    assert ev_match("ka.user.name = val(ka.impuser.name)", ev)
    assert not ev_match("ka.user.name = val(ka.impuser.name)")  # missing right side
    assert ev_match("ka.user.name != val(ka.verb)")
    assert ev_match("ka.verb in val(ka.verb)")


@pytest.mark.parametrize("cond,message", [
    ("ka.nope = x", "nonexistent field"),
    ("ka.uri bcontains x", "not supported"),
    ("ka.verb[1] = x", "does not take an argument"),
    ("jevt.value exists", "requires an argument"),
    ("ka.req.pod.containers.image[01] = x", "index"),
    ("ka.user.name regex \\d+", "regex"),
    ("ka.user.name regex '(?i)a'", "regex"),
    ("ka.user.name regex '('", "regex"),
    ("ka.uri pmatch val(ka.verb)", "right side"),
])
def test_compile_errors(cond: str, message: str) -> None:
    with pytest.raises(CompileError, match=message):
        Compiler().compile(parse_condition(cond))


def test_na_comparison_warns() -> None:
    c = Compiler()
    c.compile(parse_condition("ka.user.name != '<NA>'"))
    assert any("LOAD_UNSAFE_NA_CHECK" in w for w in c.warnings)


def test_glob_is_fnmatch() -> None:
    assert glob_regex("*").fullmatch("a/b")  # '*' also matches '/'
    assert glob_regex("a\\*").fullmatch("a*") and not glob_regex("a\\*").fullmatch("ab")
    assert glob_regex("[a-c]x").fullmatch("bx") and not glob_regex("[!a-c]x").fullmatch("bx")
    assert glob_regex("a[").fullmatch("a[")


def test_and_or_evaluate_left_to_right() -> None:
    assert ev_match("ka.verb = get or ka.verb = create and ka.user.name = Alice")
    assert not ev_match("(ka.verb = get or ka.verb = create) and ka.user.name = Bob")
