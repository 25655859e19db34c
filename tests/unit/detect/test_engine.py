"""The engine: verb/resource indexing, first/all matching, records vs dicts, Match JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from kubetrail.detect.engine import Match, RuleSet, builtin_rule_paths, load_rules
from kubetrail.record import AuditMeta, Record, SourceRef
from kubetrail.testing import fixtures_dir

RULES = """
- macro: kcreate
  condition: ka.verb=create
- rule: pod create
  desc: d
  condition: kcreate and ka.target.resource=pods
  output: pod %ka.target.name by %ka.user.name
  priority: WARNING
  source: k8s_audit
  tags: [k8s, T1610]
- rule: write
  desc: d
  condition: ka.verb in (create, update, patch) and (ka.target.resource=secrets or ka.target.resource=pods)
  output: write %ka.verb
  priority: NOTICE
  source: k8s_audit
- rule: anything
  desc: d
  condition: ka.user.name=eve or ka.verb=delete
  output: any
  priority: INFO
  source: k8s_audit
- rule: not delete
  desc: d
  condition: not ka.verb=delete and ka.user.name=zed
  output: nd
  priority: INFO
  source: k8s_audit
"""


def ev(verb: str, resource: str, user: str = "bob", **kw: Any) -> dict[str, Any]:
    return {"auditID": "id-1", "stage": "ResponseComplete", "verb": verb, "user": {"username": user},
            "objectRef": {"resource": resource, "name": "x"}, "stageTimestamp": "2024-01-01T00:00:00.5Z", **kw}


def rs(**kw: Any) -> RuleSet:
    r = load_rules([], texts={"t.yaml": RULES}, **kw)
    assert r.ok, r.errors
    return r


def test_rules_are_indexed_by_verb_and_resource() -> None:
    r = rs()
    by_name = {x.name: x for x in r.rules}
    assert by_name["pod create"].verbs == {"create"} and by_name["pod create"].resources == {"pods"}
    assert by_name["write"].verbs == {"create", "update", "patch"}
    assert by_name["write"].resources == {"secrets", "pods"}
    assert by_name["anything"].verbs is None  # an `or` with an unconstrained branch
    assert by_name["not delete"].verbs is None
    assert [x.name for x in r.candidates("get", "pods")] == ["anything"]  # "not delete" needs user zed
    assert [x.name for x in r.candidates("get", "pods", user="zed")] == ["anything", "not delete"]
    assert [x.name for x in r.candidates("create", "pods", user="zed")] == ["pod create", "write", "anything",
                                                                             "not delete"]
    assert [x.name for x in r.candidates(None, None, user="someone-else")] == ["anything"]
    assert len(r._candidates) == 4  # unnamed users, verbs and resources share one key: the cache stays small


def test_index_by_subresource_and_user_keeps_results() -> None:
    r = load_rules([], match="all", texts={"t.yaml": RULES + """
- rule: exec
  desc: d
  condition: ka.target.subresource in (exec, attach) and ka.verb in (create, get)
  output: exec
  priority: INFO
  source: k8s_audit
"""})
    assert [x.name for x in r.candidates("get", "pods", "exec")][-1] == "exec"
    assert "exec" not in [x.name for x in r.candidates("get", "pods", "log")]
    exec_ev = ev("get", "pods", user="zed")
    exec_ev["objectRef"]["subresource"] = "exec"
    assert [m.rule for m in r.evaluate(exec_ev)] == ["not delete", "exec"]
    assert [m.rule for m in r.evaluate(ev("get", "pods", user="zed"))] == ["not delete"]


def test_first_and_all() -> None:
    e = ev("create", "pods", user="eve")
    assert [m.rule for m in rs().evaluate(e)] == ["pod create"]
    assert [m.rule for m in rs(match="all").evaluate(e)] == ["pod create", "write", "anything"]
    assert [m.rule for m in rs(match="all").evaluate(ev("get", "pods", user="zed"))] == ["not delete"]


def test_match_contents_and_json() -> None:
    m = rs().evaluate(ev("create", "pods"))[0]
    assert isinstance(m, Match)
    assert (m.rule, m.priority, m.priority_level, m.output) == ("pod create", "Warning", 4, "pod x by bob")
    assert m.tags == ("k8s", "T1610")
    assert m.fields == {"ka.target.name": "x", "ka.user.name": "bob"}
    j = m.to_json()
    assert {k: j[k] for k in ("rule", "priority", "output", "auditID", "stage", "leaf_index")} == {
        "rule": "pod create", "priority": "Warning", "output": "pod x by bob", "auditID": "id-1",
        "stage": "ResponseComplete", "leaf_index": None}
    assert j["time"] == 1704067200_500000000


def test_records_are_accepted() -> None:
    body = orjson.dumps(ev("create", "pods"))
    rec = Record(kind="audit", key="k", time=1, source=SourceRef(cluster="c"), body=body, meta=AuditMeta(),
                 leaf_index=7)
    (m,) = rs().evaluate(rec)
    assert (m.leaf_index, m.key) == (7, "k")
    assert [x for _, x in rs().evaluate_many([rec, ev("get", "x")])] == [m]


def test_non_audit_and_odd_events_do_not_crash() -> None:
    r = rs(match="all")
    for e in ({}, {"kind": 0}, {"auditID": 1, "verb": ["x"], "objectRef": "pods"}, ev("create", "pods", user=None)):
        r.evaluate(e)  # type: ignore[arg-type]


def test_builtin_rules_dir_is_loadable() -> None:
    paths = builtin_rule_paths()
    if paths:
        assert load_rules(paths).ok


def test_indexing_agrees_with_full_scan_on_the_trace_files() -> None:
    import glob

    falco = fixtures_dir() / "falco"
    files = sorted(glob.glob(str(falco / "trace_files" / "k8s_audit" / "*.json")))
    if not files:
        return
    r = load_rules([str(falco / "rules" / "k8s_audit_rules.yaml")], match="all")
    for path in files:
        for line in filter(None, Path(path).read_bytes().splitlines()):
            e = orjson.loads(line)
            if not isinstance(e, dict):
                continue
            from kubetrail.detect.falco.context import EventContext

            ctx = EventContext(e)
            full = [x.name for x in r.rules if x.enabled and x.condition(ctx)]
            assert [m.rule for m in r.evaluate(e)] == full, path


def test_enable_and_disable_by_name_or_tag() -> None:
    r = rs(match="all")
    e = ev("create", "pods", user="eve")
    assert r.set_enabled(False, tag="T1610") == 1
    assert [m.rule for m in r.evaluate(e)] == ["write", "anything"]
    assert r.set_enabled(False, rule="wr*") == 1
    assert r.set_enabled(True, rule="*") == 2
    assert [m.rule for m in r.evaluate(e)] == ["pod create", "write", "anything"]


def test_a_failing_rule_is_counted_not_fatal() -> None:
    r = rs(match="all")

    def boom(ctx: object) -> bool:
        raise RuntimeError("bug")

    r.rules[0].condition = boom
    assert [m.rule for m in r.evaluate(ev("create", "pods", user="eve"))] == ["write", "anything"]
    assert r.eval_errors == 1
