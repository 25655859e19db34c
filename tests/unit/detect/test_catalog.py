"""Issue 15, safe tuning: every detector has an id in one catalog (`rules list`), and detect.yaml (or the
config file's detect: section) naming a detector that does not exist is an error naming the key."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.alerts.config import parse_settings
from kubetrail.cli import cli
from kubetrail.config import parse
from kubetrail.credentials import flags
from kubetrail.detect.catalog import catalog, check_names
from kubetrail.detect.consumer import DetectConsumer, build_ruleset
from kubetrail.detect.engine import builtin_rule_paths, load_rules
from kubetrail.detect.stateful import DETECTORS
from kubetrail.errors import ConfigError
from kubetrail.store.sqlite import Store


def test_every_detector_has_one_id_origin_and_priority() -> None:
    found = catalog(load_rules(builtin_rule_paths()))
    ids = [d.id for d in found]
    assert len(ids) == len(set(ids))
    by_origin = {o: {d.id for d in found if d.origin == o} for o in ("rule", "stateful", "credentials")}
    assert {"Binding to Privileged Role", "Legacy Service Account Token Used"} <= by_origin["rule"]
    assert {"K8s Control-Plane Credential Used Out of Profile", "K8s Identity Used From New Source IP",
            "Audit ID Reused With Different Content"} <= by_origin["stateful"]
    assert by_origin["credentials"] == {flags.RULE_PREFIX + f for f in flags.PRIORITIES}
    assert all(d.priority and d.where for d in found)
    assert all(getattr(cls, "rules", None) for cls in DETECTORS), "declare `rules` on every stateful detector"
    facts = {d.id for d in found if d.alerts.startswith("no")}
    assert "Credential risk: long-lived" in facts and "Credential risk: self-approved" not in facts


@pytest.mark.parametrize("doc, where", [
    ({"disable": ["Binding to Privileged Role", "Legacy Servce Account Token Used"]}, "detect.yaml: disable[1]"),
    ({"exceptions": [{"rule": "K8s Identity Used From New IP", "name": "vpn", "fields": ["source_ip"],
                      "values": [["10.8.0.1"]]}]}, "detect.yaml: exceptions[0].rule"),
    ({"suppress": {"rules": {"Exec Into Pod": {"window_secs": 0}}}}, "detect.yaml: suppress.rules.Exec Into Pod"),
])
def test_a_name_that_matches_no_detector_is_an_error_naming_it(doc: dict, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_ruleset(parse_settings(doc))
    assert str(info.value).startswith(where + ": ")


def test_names_tags_origins_and_groups_are_accepted() -> None:
    settings = parse_settings({"disable": ["K8s * Burst*", "mitre_discovery", "credentials", "first_seen",
                                           "Credential risk: long-lived"],
                               "exceptions": [{"rule": "Credential risk: *", "name": "ci", "fields": ["subject"],
                                               "values": [["system:serviceaccount:ci:deployer"]]}]})
    check_names(settings, catalog(load_rules(builtin_rule_paths())))


def test_disabled_stateful_detectors_do_not_run(data_dir: str) -> None:
    store = Store.open(data_dir)
    settings = parse_settings({"disable": ["first_seen", "K8s Control-Plane Credential Used Out of Profile"]})
    names = {d.name for d in DetectConsumer(store, settings, deliver=False).detectors}
    assert "first_seen" not in names and "machinery" not in names and "rate.denied" in names


def test_rules_list_shows_every_detector_and_what_detect_yaml_turns_off(tmp_path: Path) -> None:
    run = CliRunner().invoke
    rows = [orjson.loads(x) for x in run(cli, ["rules", "list", "-o", "json"]).stdout.splitlines()]
    assert {r["origin"] for r in rows} == {"rule", "stateful", "credentials"}
    assert all({"id", "origin", "priority", "enabled", "source", "where"} <= set(r) for r in rows)
    (tmp_path / "detect.yaml").write_text("disable: [first_seen, 'Credential risk: long-lived']\n")
    rows = [orjson.loads(x) for x in run(cli, ["rules", "list", "-o", "json", "--data", str(tmp_path)]).stdout.splitlines()]
    off = {r["id"] for r in rows if not r["enabled"]}
    assert off == {"Credential risk: long-lived", "K8s Identity Used From New Source IP",
                   "K8s Identity Used With New User Agent", "K8s Credential Used From Another Source IP"}
    (tmp_path / "detect.yaml").write_text("disable: [frist_seen]\n")
    bad = run(cli, ["rules", "list", "--data", str(tmp_path)])
    assert bad.exit_code == 2 and "disable[0]: no detector, tag or detector group 'frist_seen'" in bad.output


def test_ingest_refuses_a_typo_before_storing_anything(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "detect.yaml").write_text("disable: ['Legacy Servce Account Token Used']\n")
    log = tmp_path / "a.log"
    log.write_text('{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete",'
                   '"verb":"get","requestURI":"/api","user":{"username":"u"},"stageTimestamp":"2025-01-01T00:00:00Z"}\n')
    r = CliRunner().invoke(cli, ["ingest", str(log), "--data", str(data)])
    assert r.exit_code == 2, r.output
    assert "disable[0]" in r.output and "Legacy Servce Account Token Used" in r.output
    assert not (data / "kubetrail.db").exists() or Store.open(str(data)).size() == 0


def test_the_config_file_detect_section(tmp_path: Path) -> None:
    config = parse({"data_dir": str(tmp_path), "detect": {"disable": ["first_seen"],
                                                          "stateful": {"learning_secs": 60}}})
    settings = config.detect.settings()
    assert settings is not None and settings.disable == ["first_seen"] and settings.stateful.learning_secs == 60
    assert parse({"data_dir": str(tmp_path), "detect": {"enabled": False}}).detect.settings() is None
    for doc, where in (({"suppress": {"by": ["subjekt"]}}, "detect.suppress.by[0]"),
                       ({"suppres": {}}, "detect.suppres"),
                       ({"rate_limit": {"max_alerts": "many"}}, "detect.rate_limit.max_alerts")):
        with pytest.raises(ConfigError) as info:
            parse({"data_dir": str(tmp_path), "detect": doc})
        assert str(info.value).startswith(where + ": "), str(info.value)
    (tmp_path / "detect.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match="keep them in one place"):
        parse({"data_dir": str(tmp_path), "detect": {"disable": ["first_seen"]}})


def test_the_pipeline_uses_the_config_sections_settings(tmp_path: Path) -> None:
    from kubetrail.alerts.store import list_alerts
    from kubetrail.pipeline import Options, open_pipeline
    from kubetrail.record import Decoded, SourceRef
    from kubetrail.stages.extract import to_record
    from kubetrail.testing import make_event

    exec_ = make_event("x-1", verb="create", resource="pods", subresource="exec", name="web", user="mallory",
                       requestURI="/api/v1/namespaces/default/pods/web/exec?command=id")
    for n, settings in enumerate((None, parse({"data_dir": str(tmp_path), "detect": {
            "disable": ["Exec or Attach Into Pod"]}}).detect.settings())):
        pipe = open_pipeline(Options(data_dir=str(tmp_path / f"d{n}"), detect_settings=settings))
        try:
            pipe.commit([to_record(Decoded(exec_, "event", "x"), SourceRef(stream="s"))])
            rules = {a.rule for a in list_alerts(pipe.store)}
        finally:
            pipe.close()
            pipe.store.close()
        assert ("Exec or Attach Into Pod" in rules) == (settings is None)


def test_rules_list_as_a_table_names_every_kind_of_detector() -> None:
    out = CliRunner().invoke(cli, ["rules", "list"])
    assert out.exit_code == 0, out.output
    header, *lines = out.stdout.splitlines()
    assert header.split()[:4] == ["PRIORITY", "ID", "ORIGIN", "ENABLED"]
    for detector, origin, priority in (("Binding to Anonymous or All Users", "rule", "Critical"),
                                       ("K8s Pod-Bound Token Used Outside Its Pod", "stateful", "Critical"),
                                       ("K8s Control-Plane Credential Used Out of Profile", "stateful", "Warning"),
                                       ("Credential risk: self-approved", "credentials", "Error")):
        [line] = [x for x in lines if f" {detector} " in x]
        assert line.split()[0] == priority and f" {origin} " in line, line


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_typo_in_the_config_files_detect_section_stops_run_naming_it(tmp_path: Path, workers: str) -> None:
    """With workers the detect settings are read in the consumers' own process: the run still stops
    at once (a live source may commit nothing for hours) with the same error and exit status."""
    (tmp_path / "a.log").touch()
    (tmp_path / "c.yaml").write_text(f"data_dir: {tmp_path}/d\ndetect:\n  disable: [first_seen, frist_seen]\n"
                                     f"sources:\n- {{type: audit_file, path: {tmp_path}/a.log}}\n")
    r = CliRunner().invoke(cli, ["run", "--config", str(tmp_path / "c.yaml"), "--workers", workers])
    assert r.exit_code == 2, r.output
    assert "error: detect.disable[1]: no detector, tag or detector group 'frist_seen'" in r.output


def test_a_typo_in_detect_yaml_stops_ingest_with_workers_before_anything_is_stored(tmp_path: Path) -> None:
    from kubetrail.demo.scenario import generate

    log = tmp_path / "a.log"
    log.write_bytes(generate(events=300).lines())
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "detect.yaml").write_text("disable: [frist_seen]\n")
    r = CliRunner().invoke(cli, ["ingest", "--workers", "2", "--data", str(tmp_path / "d"), str(log)])
    assert r.exit_code == 2, r.output
    assert "detect.yaml: disable[0]: no detector, tag or detector group 'frist_seen'" in r.output
    r = CliRunner().invoke(cli, ["query", "--data", str(tmp_path / "d"), "--count"])
    assert r.output.strip() == "0", r.output


def _key_paths(struct: type, prefix: str = "") -> list[str]:
    import msgspec

    from kubetrail.alerts import config as detect_config

    out = []
    for f in msgspec.structs.fields(struct):
        path = prefix + f.name
        out.append(path)
        inner = [t for t in (f.type, *getattr(f.type, "__args__", ())) if isinstance(t, type)
                 and issubclass(t, msgspec.Struct)]
        for t in inner:
            out += _key_paths(t, path + ".")
    if struct is detect_config.DetectSettings:
        out = [p for p in out if not p.startswith(("sinks", "exceptions", "suppress.rules"))]
        out += [f"sinks[].{f}" for t in detect_config.SinkConfig.__args__ for f in t.__struct_fields__]
        out += [f"exceptions[].{f}" for f in detect_config.DetectorException.__struct_fields__]
        out += [f"suppress.rules.ID.{f}" for f in detect_config.Suppression.__struct_fields__]
    return sorted(set(out))


def test_docs_config_md_documents_every_detect_key() -> None:
    import re

    from kubetrail.alerts.config import DetectSettings

    docs = (Path(__file__).parents[3] / "docs" / "config.md").read_text()
    section = docs.split("## Detection settings", 1)[1].split("\n## ", 1)[0]
    documented = {name for line in section.splitlines() if line.startswith("| `")
                  for name in re.findall(r"`([^`]+)`", line.split(" | ")[0])}
    paths = _key_paths(DetectSettings)
    leaves = [p for p in paths if not any(q.startswith(p + ".") for q in paths)]
    missing = [p for p in leaves if p not in documented]
    assert not missing, f"docs/config.md, 'Detection settings', lacks {missing}"
