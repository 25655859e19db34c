"""`kubetrail timeline`: one subject's requests, alerts and credential steps, in time order."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.testing import make_event


def events() -> list[dict[str, object]]:
    binding = make_event("b-1", user="mallory", verb="create", resource="clusterrolebindings", namespace="",
                         name="mallory-admin", api_group="rbac.authorization.k8s.io", code=201,
                         time="2024-05-01T10:00:02Z", level="RequestResponse",
                         requestObject={"kind": "ClusterRoleBinding", "metadata": {"name": "mallory-admin"},
                                        "roleRef": {"kind": "ClusterRole", "name": "cluster-admin",
                                                    "apiGroup": "rbac.authorization.k8s.io"},
                                        "subjects": [{"kind": "User", "name": "mallory"}]})
    return [
        make_event("a-1", user="mallory", verb="list", resource="secrets", namespace="", time="2024-05-01T10:00:01Z"),
        binding,
        make_event("a-3", user="kubernetes-admin", verb="get", resource="pods", namespace="prod", name="web",
                   time="2024-05-01T10:00:03Z", impersonatedUser={"username": "mallory"}),
        make_event("a-4", user="mallory", verb="create", resource="pods", subresource="exec", namespace="prod",
                   name="web", code=101, time="2024-05-01T10:00:04Z"),
        make_event("a-5", user="alice", verb="get", resource="pods", namespace="prod", name="web",
                   time="2024-05-01T10:00:05Z"),
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("tl")
    (base / "audit.log").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events()))
    r = CliRunner().invoke(cli, ["ingest", str(base / "audit.log"), "--data", str(base / "d")])
    assert r.exit_code == 0, r.output
    return str(base / "d")


def story(data: str, *args: str) -> list[dict[str, object]]:
    r = CliRunner().invoke(cli, ["timeline", *args, "--json", "--data", data])
    assert r.exit_code == 0, r.output
    return [orjson.loads(line) for line in r.stdout.splitlines()]


def test_a_users_story_has_their_requests_impersonation_and_alerts_in_order(data: str) -> None:
    rows = story(data, "--user", "mallory")
    requests = [r["event"]["auditID"] for r in rows if r["kind"] == "request"]
    assert requests == ["a-1", "b-1", "a-3", "a-4"]  # a-3: kubernetes-admin acting as mallory
    assert [r["time_ns"] for r in rows] == sorted(r["time_ns"] for r in rows)
    alerts = [r for r in rows if r["kind"] == "alert"]
    assert any(r["alert"]["rule"] == "Binding to Privileged Role" for r in alerts)
    assert all(r["leaf_index"] is not None for r in rows)
    text = CliRunner().invoke(cli, ["timeline", "--user", "mallory", "--data", data]).stdout
    assert "kubernetes-admin as mallory" in text and "Binding to Privileged Role" in text


def test_a_pods_story_and_the_subject_is_exactly_one(data: str, tmp_path: Path) -> None:
    assert [r["event"]["auditID"] for r in story(data, "--pod", "prod/web") if r["kind"] == "request"] == \
        ["a-3", "a-4", "a-5"]
    for args in ([], ["--user", "mallory", "--pod", "prod/web"]):
        r = CliRunner().invoke(cli, ["timeline", *args, "--data", data])
        assert r.exit_code == 2 and "exactly one of" in r.stderr
    r = CliRunner().invoke(cli, ["timeline", "--pod", "web", "--data", data])
    assert r.exit_code == 2 and "NAMESPACE/NAME" in r.stderr
    r = CliRunner().invoke(cli, ["timeline", "--namespace", "nowhere", "--data", data])
    assert r.exit_code == 2 and "nothing in the store" in r.stderr


@pytest.mark.parametrize("args", [
    ["alerts"], ["alerts", "-o", "wide"], ["alerts", "-o", "yaml"], ["alerts", "sinks"], ["detect"],
    ["detect", "-o", "json"], ["creds", "list", "-o", "wide"], ["query", "-o", "wide"], ["stats"], ["show", "#0"],
    ["timeline", "--namespace", "prod", "-o", "yaml"], ["checkpoint"], ["verify"], ["keys", "show", "--json"],
])
def test_data_commands_print_in_every_format(data: str, args: list[str]) -> None:
    r = CliRunner().invoke(cli, [*args, "--data", data], prog_name="kubetrail")
    assert r.exit_code == 0 and r.exception is None, r.output


def test_alerts_show_text_and_json(data: str) -> None:
    first = orjson.loads(CliRunner().invoke(cli, ["alerts", "--json", "--data", data]).stdout.splitlines()[0])
    text = CliRunner().invoke(cli, ["alerts", "show", str(first["id"]), "--data", data])
    assert text.exit_code == 0 and f"leaf {first['evidence'][0]['leaf_index']}" in text.stdout, text.output
    doc = orjson.loads(CliRunner().invoke(cli, ["alerts", "show", str(first["id"]), "--json", "--data", data]).stdout)
    assert doc["id"] == first["id"] and doc["records"]
