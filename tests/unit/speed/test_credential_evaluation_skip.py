"""A credential whose flag inputs did not change is not evaluated again (credentials/consumer.py):
the inventory, its flags (text, evidence, alerted state) and the alerts are what evaluating on
every use gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from kubetrail.credentials import consumer as creds_consumer
from kubetrail.demo.scenario import generate
from kubetrail.stages.redaction_key import load_or_create
from kubetrail.store.testing import execute as sql

from ._ingest import ingested


class _Forgetful(dict[str, Any]):
    """Remembers nothing: every credential a record touched is evaluated again (the old behaviour)."""

    def get(self, key: str, default: Any = None) -> Any:
        return None


def _ingest(path: Path, data: Path, key_from: Path) -> dict[str, Any]:
    with ingested(path, data, key_from) as s:
        return {
            "creds": list(sql(s, "SELECT id, kind, credential_id, subject, doc FROM credentials ORDER BY id")),
            "aggregates": list(sql(s, "SELECT * FROM credential_aggregates ORDER BY credential")),
            "flags": list(sql(s, "SELECT credential, flag, priority, explanation, time, key, leaf_index, alerted "
                                 "FROM credential_flags ORDER BY 1, 2")),
            "alerts": sorted(tuple(r) for r in sql(s, "SELECT rule, subject, priority, time, output, fields_json, dedup_key FROM alerts "
                                                      "WHERE rule LIKE 'Credential risk:%'")),
        }


def test_skipping_unchanged_credentials_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate(events=2500).events))
    key = tmp_path / "redaction.key"
    load_or_create(str(key))
    evaluated: list[int] = []
    real = creds_consumer.flags.evaluate

    def counting(*args: Any, **kw: Any) -> Any:
        evaluated.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(creds_consumer.flags, "evaluate", counting)
    skipping = _ingest(path, tmp_path / "skip", key)
    skipped_runs = len(evaluated)
    evaluated.clear()
    monkeypatch.setattr(creds_consumer.CredentialConsumer, "_inputs", _Forgetful(), raising=False)
    original_init = creds_consumer.CredentialConsumer.__init__

    def forgetful_init(self: Any, *args: Any, **kw: Any) -> None:
        original_init(self, *args, **kw)
        self._inputs = _Forgetful()

    monkeypatch.setattr(creds_consumer.CredentialConsumer, "__init__", forgetful_init)
    every = _ingest(path, tmp_path / "every", key)
    assert every["flags"] and every["alerts"]  # the scenario's attack raises credential risks
    assert skipping == every
    assert skipped_runs < len(evaluated) / 2  # and most evaluations were skipped
