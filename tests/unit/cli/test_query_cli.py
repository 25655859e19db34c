"""`kubetrail query` filters and `show`'s key prefixes, over events ingested for real."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.testing import make_event

EXTRA_USER = {"authentication.kubernetes.io/credential-id": ["JTI=7a9b"]}


def events() -> list[dict[str, object]]:
    evs = [
        make_event("a-1", user="system:serviceaccount:dev:builder", verb="list", namespace="dev",
                   time="2024-05-01T10:00:01Z"),
        make_event("a-2", user="system:serviceaccount:dev:deployer", verb="watch", namespace="dev",
                   time="2024-05-01T10:00:02Z"),
        make_event("a-3", user="system:serviceaccount:prod:x", verb="get", namespace="prod", name="web-1",
                   time="2024-05-01T10:00:03Z"),
        make_event("a-4", user="kubernetes-admin", verb="get", resource="secrets", namespace="prod", name="db",
                   time="2024-05-01T10:00:04Z", impersonatedUser={"username": "bob"}),
        make_event("a-4", user="kubernetes-admin", verb="get", resource="secrets", namespace="prod", name="db",
                   stage="RequestReceived", time="2024-05-01T10:00:04Z", impersonatedUser={"username": "bob"}),
        make_event("a-5", user="alice", verb="create", namespace="prod", name="web-2", time="2024-05-01T10:00:05Z"),
    ]
    evs[5]["user"]["extra"] = EXTRA_USER  # type: ignore[index]
    return evs


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("q")
    log = base / "audit.log"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events()))
    r = CliRunner().invoke(cli, ["ingest", str(log), "--cluster", "east", "--no-detect", "--data", str(base / "d")])
    assert r.exit_code == 0, r.output
    return str(base / "d")


def ids(data: str, *args: str) -> list[str]:
    r = CliRunner().invoke(cli, ["query", "--json", *args, "--data", data])
    assert r.exit_code == 0, r.output
    return [f"{row['auditID']}{'' if row['stage'] == 'ResponseComplete' else '/' + row['stage']}"
            for row in map(orjson.loads, r.stdout.splitlines())]


@pytest.mark.parametrize(("args", "expect"), [
    (["--user", "system:serviceaccount:dev:*"], ["a-1", "a-2"]),
    (["--user", "system:serviceaccount:?ev:builder"], ["a-1"]),
    (["--namespace", "pr*", "--name", "web-*"], ["a-3", "a-5"]),
    (["--exclude-user", "system:serviceaccount:*"], ["a-4", "a-4/RequestReceived", "a-5"]),
    (["--exclude-verb", "watch", "--exclude-verb", "get"], ["a-1", "a-5"]),
    (["--impersonated-user", "bob", "--stage", "ResponseComplete"], ["a-4"]),
    (["--audit-id", "a-4"], ["a-4", "a-4/RequestReceived"]),
    (["--credential", "JTI=7a9b"], ["a-5"]),
    (["--cluster", "east", "--limit", "2"], ["a-1", "a-2"]),
    (["--cluster", "west"], []),
    (["--source", "east/*"], ["a-1", "a-2", "a-3", "a-4", "a-4/RequestReceived", "a-5"]),
    (["--order", "newest", "--limit", "2"], ["a-5", "a-4"]),
])
def test_filters(data: str, args: list[str], expect: list[str]) -> None:
    got = ids(data, *args)
    if args[:2] == ["--order", "newest"]:
        assert got[0] == "a-5" and got[1].startswith("a-4")
    else:
        assert sorted(got) == sorted(expect)


def test_table_shows_stage_and_impersonation(data: str) -> None:
    r = CliRunner().invoke(cli, ["query", "--audit-id", "a-4", "--data", data])
    lines = r.stdout.splitlines()
    assert "STAGE" in lines[0]
    assert any("Received" in line and "kubernetes-admin as bob" in line for line in lines[1:])
    assert any("Complete" in line and "kubernetes-admin as bob" in line for line in lines[1:])


def test_show_takes_a_key_prefix_and_says_ambiguous(data: str) -> None:
    rows = [orjson.loads(line) for line in CliRunner().invoke(cli, ["query", "--json", "--data", data]).stdout.splitlines()]
    key = rows[2]["key"]
    r = CliRunner().invoke(cli, ["show", key[:12], "--json", "--data", data])
    assert r.exit_code == 0 and orjson.loads(r.stdout)["key"] == key
    r = CliRunner().invoke(cli, ["show", f"#{rows[2]['leaf_index']}", "--json", "--data", data])
    assert orjson.loads(r.stdout)["key"] == key
    r = CliRunner().invoke(cli, ["show", "abc", "--data", data])
    assert r.exit_code == 2 and "too short" in r.stderr
    r = CliRunner().invoke(cli, ["show", "ffff" * 16, "--data", data])
    assert r.exit_code == 2 and "no stored record" in r.stderr


def test_an_ambiguous_prefix_is_a_clear_error(tmp_path: Path) -> None:
    # 2,000 keys over 65,536 four-digit prefixes: two of them share one (birthday bound, p > 0.999)
    log = tmp_path / "many.log"
    log.write_bytes(b"".join(orjson.dumps(make_event(f"id-{i}", time=f"2024-05-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z"))
                             + b"\n" for i in range(2000)))
    data = str(tmp_path / "d")
    assert CliRunner().invoke(cli, ["ingest", str(log), "--no-detect", "--data", data]).exit_code == 0
    out = CliRunner().invoke(cli, ["query", "--json", "--data", data]).stdout
    keys = sorted(orjson.loads(line)["key"] for line in out.splitlines())
    shared = next(a[:4] for a, b in zip(keys, keys[1:], strict=False) if a[:4] == b[:4] and not a[:4].isdigit())
    r = CliRunner().invoke(cli, ["show", shared, "--data", data])
    assert r.exit_code == 2 and "ambiguous" in r.stderr and len(r.stderr.splitlines()) == 1
    whole = next(k for k in keys if k.startswith(shared))
    assert CliRunner().invoke(cli, ["show", whole, "--json", "--data", data]).exit_code == 0
