"""Rules-file loading: YAML as Falco reads it, definitions, append/override, lists, macros, errors."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrail.detect.engine import RuleSet, load_rules
from kubetrail.detect.falco.collector import ExceptionDef
from kubetrail.detect.falco.loader import exceptions_text, substitute_list
from kubetrail.detect.falco.yamlsrc import Pos
from kubetrail.errors import RuleError

EV: dict[str, Any] = {"auditID": "a", "stage": "ResponseComplete", "verb": "create", "user": {"username": "bob"},
                      "objectRef": {"resource": "namespaces", "name": "yes"}, "responseStatus": {"code": 201},
                      "stageTimestamp": "2024-01-01T00:00:00Z"}


def R(name: str, cond: str, prio: str = "WARNING", output: str = "out %ka.user.name", extra: str = "") -> str:
    return (f"- rule: {name}\n  desc: d\n  condition: {cond}\n  output: {output}\n  priority: {prio}\n"
            f"  source: k8s_audit\n{extra}")


def load(*texts: str, **kw: Any) -> RuleSet:
    return load_rules([], texts={f"f{i}.yaml": t for i, t in enumerate(texts)}, **kw)


def names(rs: RuleSet, ev: dict[str, Any] = EV) -> list[str]:
    return [m.rule for m in rs.evaluate(ev)]


def test_scalars_are_text_like_falco() -> None:
    rs = load("- list: words\n  items: [yes, on, 1.10, 0755, true]\n" + R("r", "ka.target.name in (words)"))
    assert rs.ok, rs.errors
    assert names(rs) == ["r"]
    assert load(R("r", "ka.target.name in (1.10)")).evaluate({**EV, "objectRef": {"name": "1.10"}})


def test_null_items_are_skipped_and_counts() -> None:
    rs = load("-\n- macro: m\n  condition: ka.verb=create\n" + R("r", "m"))
    assert rs.ok and rs.counts == {"lists": 0, "macros": 1, "rules": 1, "compiled": 1, "skipped": 0}


def test_every_error_is_reported_with_file_line_col() -> None:
    text = (R("bad1", "ka.verb = ") + R("bad2", "ka.nope = x") + "- list: l\n  items: 3\n"
            + "- rule: r3\n  desc: d\n")
    rs = load(text)
    errs = [str(e) for e in rs.errors]
    assert len(errs) == 4, errs
    assert errs[0].startswith("f0.yaml:")
    assert errs[0].startswith("f0.yaml:3:23: error: rule 'bad1' condition")  # the column of the problem
    assert errs[1].startswith("f0.yaml:9:14: error: rule 'bad2' condition")  # sorted by position
    assert any("nonexistent field ka.nope" in e for e in errs)
    assert any("List items must be a sequence" in e for e in errs)
    assert any("Item has no mapping for key 'condition'" in e for e in errs)
    with pytest.raises(RuleError):
        rs.raise_for_errors()


def test_yaml_syntax_error_has_position() -> None:
    rs = load("- rule: [\n")
    assert not rs.ok and str(rs.errors[0]).startswith("f0.yaml:2:")


def test_top_level_shape() -> None:
    assert "not yaml array" in str(load("rule: x\n").errors[0])
    assert load("- foo: bar\n").warnings[0].message == "Unknown top level item"
    rs = load(R("r", "ka.verb=create", extra="  colour: red\n"))
    assert any("Unknown key 'colour'" in w.message for w in rs.warnings)


def test_list_substitution_is_textual() -> None:
    assert substitute_list("x in (a, l)", "l", ["p", "q r"]) == ('x in (a, p, "q r" )', True)
    assert substitute_list("x in (a, l)", "l", [])[0].split() == ["x", "in", "(a", ")"]
    assert substitute_list("x in (l, a)", "l", [])[0].split() == ["x", "in", "(", "a)"]
    assert substitute_list("x in (ll)", "l", ["p"]) == ("x in (ll)", False)


def test_lists_can_be_used_before_definition_and_undefined_stay_literal() -> None:
    rs = load(R("r", "ka.target.name in (later)") + "- list: later\n  items: [yes]\n")
    assert names(rs) == ["r"]
    rs = load(R("r", "ka.target.name in (undefined_list)"))
    assert rs.ok and names(rs, {**EV, "objectRef": {"name": "undefined_list"}}) == ["r"]


def test_nested_lists_follow_definition_order() -> None:
    rs = load("- list: a\n  items: [x]\n- list: b\n  items: [a, y]\n- list: c\n  items: [d]\n"
              "- list: d\n  items: [z]\n"
              + R("rb", "ka.target.name in (b)") + R("rc", "ka.target.name in (c)", extra=""))
    assert names(rs, {**EV, "objectRef": {"name": "x"}}) == ["rb"]
    # d is defined after c, so c keeps the word "d" -- which the later textual pass over list d expands
    assert names(rs, {**EV, "objectRef": {"name": "z"}}) == ["rc"]


def test_list_append_and_override() -> None:
    base = "- list: l\n  items: [a]\n" + R("r", "ka.target.name in (l)")
    assert names(load(base, "- list: l\n  items: [yes]\n  append: true\n")) == ["r"]
    assert names(load(base, "- list: l\n  items: [yes]\n  override:\n    items: append\n")) == ["r"]
    assert names(load(base, "- list: l\n  items: [b]\n  override:\n    items: replace\n")) == []
    rs = load("- list: nope\n  items: [a]\n  append: true\n")
    assert "no list by that name already exists" in rs.errors[0].message


def test_macro_append_is_text_and_visibility() -> None:
    rs = load("- macro: m\n  condition: ka.verb=get\n" + R("r", "m"), "- macro: m\n  condition: or ka.verb=create\n"
              "  append: true\n")
    assert names(rs) == ["r"]
    # inside a macro, only macros defined before it are visible
    rs = load("- macro: a\n  condition: b\n- macro: b\n  condition: ka.verb=create\n" + R("r", "a"))
    assert any("Undefined macro 'b'" in e.message for e in rs.errors)
    # inside a rule, every macro is visible
    assert load(R("r", "later") + "- macro: later\n  condition: ka.verb=create\n").ok


def test_macro_loop_and_undefined() -> None:
    rs = load("- macro: a\n  condition: ka.verb=x\n- macro: b\n  condition: a\n"
              "- macro: a\n  condition: b\n" + R("r", "a"))
    assert any("loop" in e.message or "Undefined" in e.message for e in rs.errors)
    assert "Undefined macro 'zz'" in load(R("r", "zz")).errors[0].message


def test_macro_grouping_is_kept() -> None:
    rs = load("- macro: m\n  condition: ka.verb=get or ka.verb=create\n" + R("r", "ka.user.name=nobody and m"))
    assert names(rs) == []


def test_rule_override_and_append() -> None:
    base = R("r", "ka.verb=create", extra="  tags: [a]\n")
    rs = load(base, "- rule: r\n  condition: and ka.user.name=alice\n  override:\n    condition: append\n")
    assert names(rs) == []
    rs = load(base, "- rule: r\n  priority: ERROR\n  tags: [b]\n  override:\n    priority: replace\n"
                    "    tags: append\n")
    m = rs.evaluate(EV)[0]
    assert (m.priority, m.tags) == ("Error", ("a", "b"))
    rs = load(base, "- rule: r\n  condition: and ka.user.name=alice\n  append: true\n")
    assert names(rs) == [] and any("deprecated" in w.message for w in rs.warnings)
    rs = load(base, "- rule: r\n  condition: x\n  priority: ERROR\n  override:\n    condition: append\n")
    assert "Unexpected key 'priority'" in rs.errors[0].message
    rs = load(base, "- rule: r\n  priority: ERROR\n  override:\n    priority: append\n")
    assert "cannot be overridden" in rs.errors[0].message
    rs = load("- rule: nope\n  condition: x\n  override:\n    condition: append\n")
    assert "no rule by that name already exists" in rs.errors[0].message
    rs = load(base, "- rule: r\n  condition: x\n  append: true\n  override:\n    condition: append\n")
    assert "cannot be used together" in rs.errors[0].message


def test_redefinition_keeps_position_and_enabled_toggle() -> None:
    rs = load(R("first", "ka.verb=create") + R("second", "ka.verb=create"), R("first", "ka.verb=create", "ERROR"))
    assert [r.name for r in rs.rules] == ["first", "second"] and names(rs) == ["first"]
    rs = load(R("first", "ka.verb=create") + R("second", "ka.verb=create"), "- rule: first\n  enabled: false\n")
    assert names(rs) == ["second"]
    rs = load(R("first", "ka.verb=create"), "- rule: first\n  enabled: no\n  override:\n    enabled: replace\n")
    assert names(rs) == []
    assert "no rule by that name" in load("- rule: x\n  enabled: false\n").errors[0].message
    no_source = "- rule: first\n  desc: d\n  condition: ka.verb=get\n  output: o\n  priority: INFO\n"
    assert "different source" in load(R("first", "ka.verb=create"), no_source).errors[0].message


def test_exceptions() -> None:
    ex = ("  exceptions:\n  - name: e1\n    fields: [ka.user.name, ka.target.name]\n    comps: [=, in]\n"
          "    values:\n    - [bob, [yes, no]]\n  - name: e2\n    fields: ka.user.name\n    values: [carol]\n")
    rs = load(R("r", "ka.verb=create", extra=ex))
    assert rs.ok, rs.errors
    assert names(rs) == []
    assert names(rs, {**EV, "user": {"username": "dave"}}) == ["r"]
    assert names(rs, {**EV, "user": {"username": "carol"}}) == []
    more = "- rule: r\n  exceptions:\n  - name: e2\n    values: [dave]\n  override:\n    exceptions: append\n"
    assert names(load(R("r", "ka.verb=create", extra=ex), more), {**EV, "user": {"username": "dave"}}) == []
    bad = "  exceptions:\n  - name: e\n    fields: [ka.user.name, ka.verb]\n    comps: [=]\n"
    assert "equal length" in load(R("r", "ka.verb=create", extra=bad)).errors[0].message
    bad = "  exceptions:\n  - name: e\n    fields: [ka.nope]\n    values: [[x]]\n"
    assert "not a supported filter field" in load(R("r", "ka.verb=create", extra=bad)).errors[0].message


def test_exception_text_matches_falco() -> None:
    pos = Pos("f", 1, 1)
    ex = [ExceptionDef("e", ["proc.name", "fd.name"], ["=", "in"], [["apt", ["apt_files"]]], pos)]
    assert exceptions_text("c", ex) == "(c) and not (( proc.name = apt and fd.name in (apt_files)))"
    ex = [ExceptionDef("e", "f.x", None, ["a", "b c"], pos)]
    assert exceptions_text("c", ex) == '(c) and not (f.x in (a, "b c"))'
    ex = [ExceptionDef("e", ["f.x"], ["in"], [["lst"]], pos)]
    assert exceptions_text("c", ex) == "(c) and not (( f.x in (lst)))"


def test_versions() -> None:
    assert load("- required_engine_version: 15\n").ok
    assert load("- required_engine_version: 0.31.0\n").ok
    rs = load("- required_engine_version: 999\n")
    assert "Rules require engine version 0.999.0, but engine version is" in rs.errors[0].message
    ok = "- required_plugin_versions:\n  - name: k8saudit\n    version: 0.18.0\n"
    assert load(ok).ok
    rs = load("- required_plugin_versions:\n  - name: k8saudit\n    version: 0.99.0\n    alternatives:\n"
              "    - name: other\n      version: 1.0.0\n")
    assert rs.errors[0].message == ("Plugin requirement not satisfied, must load one of: k8saudit (>= 0.99.0), "
                                    "other (>= 1.0.0)")
    assert "not valid" in load("- required_plugin_versions:\n  - name: json\n    version: x\n").errors[0].message


def test_priorities_sources_and_outputs() -> None:
    rs = load(R("r", "ka.verb=create", "info", "u=%ka.user.name i=%ka.impuser.name g=%ka.user.groups"))
    m = rs.evaluate({**EV, "user": {"username": "bob", "groups": ["a", "b"]}})[0]
    assert (m.priority, m.output) == ("Informational", "u=bob i=<NA> g=(a,b)")
    assert m.fields == {"ka.user.name": "bob", "ka.impuser.name": None, "ka.user.groups": ["a", "b"]}
    assert "Invalid priority" in load(R("r", "ka.verb=create", "LOUD")).errors[0].message
    rs = load("- rule: s\n  desc: d\n  condition: evt.type=open\n  output: o\n  priority: INFO\n")
    assert rs.ok and rs.counts["skipped"] == 1 and "Unknown source syscall" in rs.warnings[0].message
    assert "output" in load(R("r", "ka.verb=create", output="bad %")).errors[0].message
    skip = "  skip-if-unknown-filter: true\n"
    rs = load(R("r", "ka.nope=1", extra=skip))
    assert rs.ok and rs.counts["compiled"] == 0


def test_match_first_all_and_min_priority() -> None:
    text = R("a", "ka.verb=create", "NOTICE") + R("b", "ka.verb=create", "CRITICAL")
    assert names(load(text)) == ["a"]
    assert names(load(text, match="all")) == ["a", "b"]
    assert names(load(text, min_priority="warning")) == ["b"]


def test_missing_file_is_an_error_not_a_crash() -> None:
    rs = load_rules(["/nonexistent/rules.yaml"])
    assert not rs.ok and "cannot read" in rs.errors[0].message
