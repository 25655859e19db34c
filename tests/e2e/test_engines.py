"""End to end on both engines: the public corpus ingested into SQLite and into a real PostgreSQL gives
the same trail (root, proofs), the same searches, alerts and credential inventory; verify, detect,
retention and a tamper drill work on PostgreSQL through `--store`."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from kubetrail.cli import cli
from kubetrail.store import QueryFilters, open_store
from kubetrail.store.testing import execute as sql
from kubetrail.testing import fixtures_dir
from kubetrail.trail.merkle import verify_inclusion

CORPUS = fixtures_dir() / "corpus"


def run(*args: str, ok: tuple[int, ...] = (0,)) -> str:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code in ok and "Traceback" not in r.output, r.output
    return r.stdout


def lines(out: str) -> list[dict]:
    return [orjson.loads(x) for x in out.splitlines() if x.startswith("{")]


@pytest.mark.needs_fixtures
@pytest.mark.integration
def test_same_answers_on_sqlite_and_postgres(tmp_path: Path, pg_url: str) -> None:
    sqlite_args = ["--data", str(tmp_path / "s")]
    pg_args = ["--data", str(tmp_path / "p"), "--store", pg_url]
    for args in (sqlite_args, pg_args):
        if args is pg_args:  # one deployment, one redaction key: the same event, the same redacted bytes
            (tmp_path / "p").mkdir()
            shutil.copy(tmp_path / "s" / "redaction.key", tmp_path / "p" / "redaction.key")
        summary = orjson.loads(run("ingest", str(CORPUS), "--json", *args, ok=(0, 1)))
        assert summary["stored"] > 100
    same = ["query", "--json"], ["query", "--count", "--user", "system:admin"], ["creds", "list", "--json"], \
        ["alerts", "--json"], ["query", "--json", "--group", "system:masters"], ["query", "--json", "--user-agent", "KUBECTL"]
    for cmd in same:
        assert run(*cmd, *sqlite_args) == run(*cmd, *pg_args), cmd
    s, p = (orjson.loads(run("verify", "--json", *a)) for a in (sqlite_args, pg_args))
    assert s == p and s["ok"] is True and s["size"] > 100
    proof = orjson.loads(run("proof", "inclusion", "--index", "7", "--json", *pg_args))
    other = orjson.loads(run("proof", "inclusion", "--index", "7", "--json", *sqlite_args))
    assert proof.pop("checkpoint") and other.pop("checkpoint")  # each data dir signs with its own key
    assert proof == other
    leaf = bytes.fromhex(proof["leaf_hash"])
    assert verify_inclusion(7, proof["size"], leaf, [bytes.fromhex(h) for h in proof["hashes"]],
                            bytes.fromhex(proof["root"]))
    cons = orjson.loads(run("proof", "consistency", "--old", "40", "--json", *pg_args))
    assert cons["old"] == 40 and cons["new_root"] == p["root"]
    # detection over the stored events raises nothing twice, on both
    assert run("detect", "--json", "--no-deliver", *pg_args) == run("detect", "--json", "--no-deliver", *sqlite_args)
    shown = lines(run("show", "3", "--json", *pg_args))[0]
    assert shown == lines(run("show", "3", "--json", *sqlite_args))[0] and shown["event"]
    # what other packages added to store/ since: aggregated alerts with their events, the inventory's
    # summary, stats, and the dashboard's reads (web/)
    first = lines(run("alerts", "--json", *pg_args))[0]["id"]
    for cmd in (["alerts", "show", str(first), "--events", "--json"], ["creds", "summary", "--json"]):
        assert run(*cmd, *sqlite_args) == run(*cmd, *pg_args), cmd
    s_stats, p_stats = (orjson.loads(run("stats", "--json", *a)) for a in (sqlite_args, pg_args))
    assert s_stats.pop("db_bytes") > 0 and p_stats.pop("db_bytes") > 0 and s_stats == p_stats
    sqlite_store = open_store(str(tmp_path / "s"), readonly=True)
    pg_store = open_store(pg_url, data_dir=str(tmp_path / "p"), readonly=True)
    try:
        cred = orjson.loads(run("creds", "list", "--json", *pg_args).splitlines()[0])["id"]
        reads = (lambda st: st.sources(), lambda st: st.histogram(0, 3600 * 10**9),
                 lambda st: [(a.rule, a.time, a.count) for a in st.alerts.page(limit=10)],
                 lambda st: st.alerts.count_by_priority(), lambda st: st.credentials.use_histogram(cred, 0, 3600 * 10**9),
                 lambda st: st.trail.latest_signed_ns() is not None,
                 lambda st: st.trail.checkpoint_columns()[-1][1], lambda st: list(st.trail.interior_nodes(2))[:50])
        for read in reads:
            assert read(sqlite_store) == read(pg_store)
    finally:
        sqlite_store.close()
        pg_store.close()


@pytest.mark.integration
def test_postgres_tamper_retention_and_deep(tmp_path: Path, pg_url: str) -> None:
    from kubetrail.testing import make_event

    log = tmp_path / "a.log"
    log.write_bytes(b"".join(orjson.dumps(make_event(f"e-{i}", user=f"u{i % 3}", name=f"o{i}",
                                                      time=f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}Z")) + b"\n"
                             for i in range(150)))
    args = ["--data", str(tmp_path / "d"), "--store", pg_url]
    run("ingest", str(log), "--no-detect", *args)
    pruned = orjson.loads(run("retention", "--max-age", "2024-05-01T10:01:00Z", "--json", *args))
    assert pruned["pruned"] == 60
    assert orjson.loads(run("verify", "--json", "--deep", *args)) == orjson.loads(run("verify", "--json", *args))
    store = open_store(pg_url)
    try:
        sql(store, "UPDATE entries SET username = 'nobody' WHERE leaf_index = 99")
        assert store.count_matching(QueryFilters(user=["nobody"])) == 1
    finally:
        store.close()
    r = CliRunner().invoke(cli, ["verify", "--json", *args])
    assert r.exit_code == 1 and orjson.loads(r.stdout) == {"ok": False, "first_bad_index": 99, "reason": "modified"}
