"""`kubetrail store rekey`: a store written with key v1 keeps its leaves, gains v2 aliases, refuses
re-deliveries of its old events, records the migration in the trail and still verifies."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.stages.identity import event_key, legacy_key
from kubetrail.store import open_store
from kubetrail.store.testing import execute
from kubetrail.testing import make_event

SRC = SourceRef(cluster="c", stream="audit-file:/var/log/audit.log")


def events() -> list[dict]:
    return [make_event(f"old-{i}", user=f"u{i}", time=f"2024-05-01T10:00:{i:02d}.000000Z") for i in range(6)]


def v1_store(data: Path, location: str | None = None) -> list[str]:
    """A store as kubetrail wrote it before key v2: v1 keys, the event of old-2 stored twice (the log
    line and the webhook's EventList item had different bodies, so different v1 keys)."""
    pipe = open_pipeline(Options(data_dir=str(data), store=location, detect=False))  # trail key, checkpoints too
    recs = []
    for i, ev in enumerate(events()):
        recs.append(to_record(Decoded(ev, "event", str(i)), SRC))
    twice = {k: v for k, v in events()[2].items() if k not in ("kind", "apiVersion")}
    recs.append(to_record(Decoded(twice, "eventlist", "w"), SourceRef(cluster="c", stream="audit-webhook:a")))
    for r in recs:
        r.key = legacy_key(r.body)
    pipe.commit(recs)
    pipe.close()
    execute(pipe.store, "DELETE FROM schema_migrations WHERE version = 7")  # as if written before 0007
    execute(pipe.store, "DROP TABLE key_aliases")
    execute(pipe.store, "DROP TABLE key_state")
    pipe.store.close()
    return [r.key for r in recs]


def ingest_again(data: Path, location: str | None = None) -> int:
    pipe = open_pipeline(Options(data_dir=str(data), store=location, detect=False))
    try:
        before = pipe.store.size()
        pipe.commit([to_record(Decoded(e, "event", "again"), SRC) for e in events()])
        return pipe.store.size() - before
    finally:
        pipe.close()
        pipe.store.close()


def test_rekey_aliases_old_entries_and_is_recorded_in_the_trail(tmp_path: Path, store_url: str) -> None:
    data = tmp_path / "d"
    args = ["--data", str(data), "--store", store_url]
    old_keys = v1_store(data, store_url)
    runner = CliRunner()
    assert runner.invoke(cli, ["verify", *args]).exit_code == 0
    r = runner.invoke(cli, ["store", "rekey", "--json", *args])
    assert r.exit_code == 0, r.output
    out = orjson.loads(r.stdout)
    assert out["done"] and out["entries"] == 7 and out["aliases"] == 6 and out["stored_twice"] == 1
    assert out["without_body"] == 0 and out["marker_leaf"] == 7

    store = open_store(store_url, data_dir=str(data))
    try:
        assert [r.key for r in store.records_by_index(0, 7)] == old_keys  # old leaves untouched
        marker = store.get(str(out["marker_leaf"]))
        assert marker is not None and marker.kind == "marker" and marker.source.label() == "kubetrail:store-rekey"
        body = orjson.loads(marker.body)
        rows = execute(store, "SELECT alias, leaf_index FROM key_aliases ORDER BY alias").fetchall()
        assert body["aliases_sha256"] == hashlib.sha256(
            "".join(f"{a} {leaf}\n" for a, leaf in rows).encode()).hexdigest()
        assert body["from"] == "kubetrail-audit-key/v1" and body["to"] == "kubetrail-audit-key/v2"
        found = store.get(event_key(events()[3]))  # an old entry found by its current key
        assert found is not None and found.leaf_index == 3
        assert {leaf for _a, leaf in rows} == {0, 1, 2, 3, 4, 5}  # old-2's alias points to the first copy
    finally:
        store.close()

    assert ingest_again(data, store_url) == 0  # every old event delivered again is a duplicate
    assert runner.invoke(cli, ["verify", *args]).exit_code == 0
    again = runner.invoke(cli, ["store", "rekey", *args])
    assert again.exit_code == 0 and "nothing to re-key" in again.output


def test_without_rekey_old_events_come_back_as_new_records(tmp_path: Path, store_url: str) -> None:
    """What the migration is for: the hazard it removes."""
    data = tmp_path / "d"
    v1_store(data, store_url)
    assert ingest_again(data, store_url) == 6


def test_a_new_store_needs_no_rekey_and_pruned_bodies_are_counted(tmp_path: Path) -> None:
    data = tmp_path / "d"
    store = open_store(str(data))
    store.append([to_record(Decoded(e, "event", "x"), SRC) for e in events()[:2]])
    store.close()
    r = CliRunner().invoke(cli, ["store", "rekey", "--data", str(data)])
    assert r.exit_code == 0 and "nothing to re-key" in r.output

    data2 = tmp_path / "d2"
    v1_store(data2)
    store = open_store(str(data2))
    execute(store, "UPDATE entries SET body = NULL WHERE leaf_index = 4")
    store.close()
    r = CliRunner().invoke(cli, ["store", "rekey", "--data", str(data2)])
    assert r.exit_code == 0 and "5 aliases" in r.output and "1 without a body" in r.output, r.output


def test_the_upgrade_example_in_the_docs_runs(tmp_path: Path) -> None:
    """docs/ingest.md "Upgrading a store": its shell example, as written, on a v1 store."""
    import re
    import shlex
    import subprocess
    import sys

    doc = (Path(__file__).resolve().parents[3] / "docs" / "ingest.md").read_text()
    section = doc.split("## Upgrading a store: re-keying", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    v1_store(tmp_path / "kubetrail-data")
    for line in block.strip().splitlines():
        argv = shlex.split(line)
        assert argv[0] == "kubetrail"
        r = subprocess.run([sys.executable, "-m", "kubetrail", *argv[1:]], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0 and "re-keyed entries 0..6: 6 aliases" in r.stdout, r.stdout + r.stderr
