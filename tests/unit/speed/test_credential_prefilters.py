"""The credential consumer's shortcuts change nothing (credentials/inventory.py, ledger.py):

* ``handle`` dismisses records of resources none of its branches is about, and of verbs the branch
  of their resource does not act on, before the dry-run check (``inventory.RESOURCES``, ``VERBS``): the inventory, uses, flags and alerts are what handling every record
  gives — the test also shows that narrowing the set would be caught;
* ``add_use`` builds a use's evidence only when it is kept (a first use, a new source IP): the stored
  aggregates (first use, source IPs with their evidence) are those of building it every time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from kubetrail.credentials import inventory
from kubetrail.demo.scenario import generate
from kubetrail.stages.redaction_key import load_or_create
from kubetrail.store.testing import execute as sql

from ._ingest import ingested


class _Everything(frozenset[str]):
    """Contains every resource: every record goes through the whole of ``handle`` (the old way)."""

    def __contains__(self, item: object) -> bool:
        return True


def _inventory(path: Path, data: Path, key_from: Path) -> dict[str, Any]:
    with ingested(path, data, key_from) as s:
        return {
            "creds": list(sql(s, "SELECT id, kind, credential_id, subject, lookup, accounted, created_at, expires_at, "
                                 "doc FROM credentials ORDER BY id")),
            "aggregates": list(sql(s, "SELECT * FROM credential_aggregates ORDER BY credential")),
            "uses": list(sql(s, "SELECT u.credential, u.request, e.key, e.audit_id, e.stage, u.leaf_index, u.time, u.code, "
                                "e.verb, e.resource, e.namespace, e.name, e.source_ip, e.user_agent, u.link, u.received "
                                "FROM credential_uses u JOIN entries e ON e.leaf_index = u.leaf_index "
                                "ORDER BY u.credential, u.request")),
            "flags": list(sql(s, "SELECT credential, flag, priority, explanation, time, key, leaf_index, alerted "
                                 "FROM credential_flags ORDER BY 1, 2")),
            "bindings": list(sql(s, "SELECT * FROM credential_admin_bindings ORDER BY 1, 2")),
            "alerts": sorted(tuple(r) for r in sql(s, "SELECT rule, subject, priority, time, output, fields_json, "
                                                      "dedup_key FROM alerts WHERE rule LIKE 'Credential risk:%'")),
        }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("scenario")
    path = tmp / "audit.log"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate(events=2500).events))
    key = tmp / "redaction.key"
    load_or_create(str(key))
    return path, key


def test_dismissing_other_resources_changes_nothing(scenario: tuple[Path, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path, key = scenario
    filtered = _inventory(path, tmp_path / "filtered", key)
    monkeypatch.setattr(inventory, "RESOURCES", _Everything())
    monkeypatch.setattr(inventory, "VERBS", {})
    everything = _inventory(path, tmp_path / "everything", key)
    assert len(everything["creds"]) >= 10 and everything["flags"] and everything["bindings"]
    assert {c[1] for c in everything["creds"]} >= {"cert", "token", "legacy"}  # CSRs, TokenRequests, Secrets
    assert filtered == everything


def test_a_narrower_resource_set_would_be_caught(scenario: tuple[Path, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path, key = scenario
    full = _inventory(path, tmp_path / "full", key)
    monkeypatch.setattr(inventory, "RESOURCES", inventory.RESOURCES - {"certificatesigningrequests"})
    assert _inventory(path, tmp_path / "narrow", key)["creds"] != full["creds"]


def test_use_evidence_is_what_building_it_every_time_gives(scenario: tuple[Path, Path], tmp_path: Path) -> None:
    path, key = scenario
    inv = _inventory(path, tmp_path / "d", key)
    uses: dict[str, list[tuple[Any, ...]]] = {}
    for u in inv["uses"]:
        uses.setdefault(u[0], []).append(u)
    checked = 0
    for cred, *_rest, stats in inv["aggregates"]:
        doc = orjson.loads(stats)
        mine = sorted(uses.get(cred, []), key=lambda u: (u[6], u[2]))
        if not mine:
            continue
        first = doc["first_use"]
        assert first["time"] == min(u[6] for u in mine) and first["key"] in {u[2] for u in mine}
        assert set(first) == {"key", "audit_id", "stage", "leaf_index", "time"}
        for ip, info in doc["ips"].items():
            assert {"key", "audit_id", "stage", "leaf_index", "time", "uses_before", "after_first_ns"} <= set(info)
            assert any(u[12] == ip and u[2] == info["key"] for u in mine)
        checked += 1
    assert checked >= 10
