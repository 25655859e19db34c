"""Aggregation (issue 15): one alert per rule, group and event-time window, whatever the arrival order."""

from __future__ import annotations

import itertools
import random

import pytest

from kubetrail.alerts.alert import Alert, Evidence
from kubetrail.alerts.config import parse_settings
from kubetrail.alerts.store import alert_events, get_alert, list_alerts, record_alerts
from kubetrail.errors import ConfigError

S = 10**9
DAY = 86400 * S
T0 = 1_000 * DAY  # a day boundary, so buckets are easy to reason about


def occ(n: int, subject: str = "alice", t: int | None = None, rule: str = "R", stage: str = "ResponseComplete",
        audit: str | None = None, credential: str = "", priority: str = "Warning") -> Alert:
    return Alert(rule=rule, priority=priority, time=T0 + (t if t is not None else n) * S, subject=subject,
                 output=f"{rule} by {subject} #{n}", fields={"n": n},
                 evidence=[Evidence(key=f"k{n}-{stage}", audit_id=audit or f"a{n}", stage=stage, leaf_index=n)],
                 group={"subject": subject, "credential": credential, "source_ip": f"10.0.0.{n % 3}"})


def test_one_alert_per_subject_with_first_last_count_and_all_events(data_dir: str, engine) -> None:
    store = engine.open(data_dir)
    alerts = [occ(n) for n in range(1, 9)] + [occ(3, stage="ResponseStarted"), occ(20, subject="bob")]
    ids = record_alerts(store, alerts)
    assert ids == [1, None, None, None, None, None, None, None, None, 2]
    alice = get_alert(store, 1)
    assert alice is not None
    assert (alice.time, alice.last_seen, alice.count, alice.suppressed) == (T0 + S, T0 + 8 * S, 8, 7)
    # evidence: the first five occurrences (both stages of #3) and the latest
    assert [e.key for e in alice.evidence] == ["k1-ResponseComplete", "k2-ResponseComplete", "k3-ResponseComplete",
                                               "k3-ResponseStarted", "k4-ResponseComplete", "k5-ResponseComplete",
                                               "k8-ResponseComplete"]
    every = alert_events(store, 1)
    assert len(every) == 9 and {e.occurrence for e in every} == {f"a{n}" for n in range(1, 9)}
    j = alice.to_json()
    assert j["count"] == 8 and j["first_seen"] < j["last_seen"]
    assert get_alert(store, 2).count == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_alert_in_any_arrival_order(tmp_path, seed: int, engine) -> None:
    alerts = [occ(n, t=(n * 37) % 50) for n in range(1, 30)] + [occ(5, t=(5 * 37) % 50, stage="ResponseStarted")]
    results = []
    for i, order in enumerate((alerts, list(reversed(alerts)), random.Random(seed).sample(alerts, len(alerts)))):
        store = engine.open(str(tmp_path / f"d{i}"))
        record_alerts(store, [Alert(**{**a.__dict__, "evidence": list(a.evidence)}) for a in order])
        [a] = list_alerts(store)
        results.append((a.time, a.last_seen, a.count, a.output, a.fields, [e.key for e in a.evidence]))
        store.close()
    assert results[0] == results[1] == results[2]
    earliest = min(range(1, 30), key=lambda n: ((n * 37) % 50, f"a{n}"))
    assert results[0][2] == 29 and results[0][3] == f"R by alice #{earliest}"


def test_windows_are_fixed_buckets_of_event_time(data_dir: str, engine) -> None:
    store = engine.open(data_dir)
    settings = parse_settings({"suppress": {"window_secs": 3600}})
    ids = record_alerts(store, [occ(1, t=10), occ(2, t=3599), occ(3, t=3600), occ(4, t=7300)], settings)
    assert ids == [1, None, 2, 3]


def test_group_by_credential_and_per_rule_settings(data_dir: str, engine) -> None:
    store = engine.open(data_dir)
    legacy = "Legacy Service Account Token Used"
    settings = parse_settings({"suppress": {"rules": {"Exec": {"window_secs": 0}, "R": {"by": ["source_ip"]}}}})
    ids = record_alerts(store, [
        occ(1, rule=legacy, credential="legacy:sa-a"), occ(2, rule=legacy, subject="bob", credential="legacy:sa-a"),
        occ(3, rule=legacy, credential="legacy:sa-b"),
        occ(4, rule="Exec"), occ(5, rule="Exec"),  # no aggregation: one alert per request
        occ(6), occ(9), occ(7),  # by source IP: 10.0.0.0 (6, 9) and 10.0.0.1 (7)
    ], settings)
    assert ids == [1, None, 2, 3, 4, 5, None, 6]


def test_a_more_severe_occurrence_is_its_own_alert(data_dir: str, engine) -> None:
    store = engine.open(data_dir)
    assert record_alerts(store, [occ(1), occ(2, priority="Critical"), occ(3)]) == [1, 2, None]


def test_stateful_and_credential_alerts_keep_their_dedup_unless_configured(data_dir: str, engine) -> None:
    store = engine.open(data_dir)
    a, b = occ(1, rule="S"), occ(2, rule="S")
    a.origin = b.origin = "stateful"
    assert record_alerts(store, [a, b]) == [1, 2]
    c, d = occ(3, rule="S"), occ(4, rule="S")
    c.origin = d.origin = "stateful"
    assert record_alerts(store, [c, d], parse_settings({"suppress": {"rules": {"S": {}}}})) == [3, None]


@pytest.mark.parametrize("bad, where", [
    ({"suppress": {"by": ["subjekt"]}}, "suppress.by[0]"),
    ({"suppress": {"rules": {"R": {"by": ["subject", "ip"]}}}}, "suppress.rules.R.by[1]"),
    ({"suppress": {"window_secs": -1}}, "suppress.window_secs"),
    ({"suppress": {"window": 60}}, "suppress.window"),
])
def test_bad_suppress_settings_name_the_key(bad: dict, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(bad)
    assert str(info.value).startswith(f"detect.yaml: {where}: ")


def test_permutations_of_a_small_set(tmp_path, engine) -> None:
    """Every order of four occurrences (two stages of one request among them) gives one answer."""
    base = [occ(1, t=5), occ(2, t=3), occ(3, t=3), occ(2, t=3, stage="ResponseStarted")]
    seen = set()
    for i, order in enumerate(itertools.permutations(base)):
        store = engine.open(str(tmp_path / f"p{i}"))
        record_alerts(store, [Alert(**{**a.__dict__, "evidence": list(a.evidence)}) for a in order])
        [a] = list_alerts(store)
        seen.add((a.time, a.last_seen, a.count, a.output, tuple(e.key for e in a.evidence)))
        store.close()
    assert len(seen) == 1
    assert seen.pop()[:4] == (T0 + 3 * S, T0 + 5 * S, 3, "R by alice #2")


def test_alerts_show_events_lists_every_occurrence(data_dir: str, engine) -> None:
    import orjson
    from click.testing import CliRunner

    from kubetrail.cli import cli

    store = engine.open(data_dir)
    record_alerts(store, [occ(n) for n in range(1, 12)])
    store.close()
    out = CliRunner().invoke(cli, ["alerts", "show", "1", "--events", "--json", *engine.args(data_dir)])
    assert out.exit_code == 0, out.output
    doc = orjson.loads(out.stdout)
    assert doc["count"] == 11 and len(doc["evidence"]) == 6  # the first five and the latest
    assert [e["occurrence"] for e in doc["events"]] == [f"a{n}" for n in range(1, 12)]
    text = CliRunner().invoke(cli, ["alerts", "show", "1", *engine.args(data_dir)]).output
    assert "11 occurrences" in text and "--events" in text
