"""The inventory in event-time order: records within the allowed lateness give the in-order answer;
a record later than that is stored, counted in the inventory and in the `late` counters, and
`creds rebuild` gives the exact answer afterwards."""

from __future__ import annotations

from pathlib import Path

from cred_helpers import token_request, use

from kubetrail.credentials.consumer import rebuild
from kubetrail.credentials.report import list_credentials, show
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import Decoded, SourceRef
from kubetrail.stages.extract import to_record
from kubetrail.store import Store, open_store

SA = "system:serviceaccount:ci:deployer"
SRC = SourceRef(cluster="t", stream="audit-webhook:a")


def feed(data: Path, batches: list[list[dict]]) -> None:
    data.mkdir(parents=True, exist_ok=True)
    (data / "detect.yaml").write_text("allowed_lateness_secs: 60\n")
    pipe = open_pipeline(Options(data_dir=str(data)))
    try:
        for n, batch in enumerate(batches):
            pipe.commit([to_record(Decoded(e, "eventlist", f"b{n}"), SRC) for e in batch])
    finally:
        pipe.close()
        pipe.store.close()


def inventory(store: Store) -> dict[str, tuple]:
    return {e["id"]: (e["status"], e["created_by"], e["uses"], e["first_used"], tuple(f["flag"] for f in e["flags"]))
            for e in list_credentials(store, now_ns=0)}


def filler(start: float, n: int = 12) -> list[dict]:
    """Other traffic that moves event time on (no credential id: links to nothing)."""
    return [use("bob", start + i * 60) for i in range(n)]


def test_creation_and_uses_in_any_order_within_the_lateness(tmp_path: Path) -> None:
    created = token_request("ci", "deployer", user="alice", at=100, jti="j1")
    uses = [use(SA, 110 + i, "JTI=j1") for i in range(5)]
    feed(tmp_path / "in-order", [[created], uses, filler(200)])
    feed(tmp_path / "uses-first", [uses[3:], uses[:3], [created], filler(200)])  # the TokenRequest 20 s late
    with open_store(str(tmp_path / "in-order")) as a, open_store(str(tmp_path / "uses-first")) as b:
        assert inventory(a) == inventory(b)
        assert inventory(a)["jti/j1"][:3] == ("created", "alice", 5)
        assert "unaccounted" not in inventory(b)["jti/j1"][4]  # never taken for a token nobody issued
        assert not b.counters().get("late_credentials")


def test_a_record_beyond_the_lateness_is_stored_counted_and_rebuild_is_exact(tmp_path: Path) -> None:
    created = token_request("ci", "deployer", user="alice", at=100, jti="j1")
    uses = [use(SA, 110 + i, "JTI=j1") for i in range(5)]
    feed(tmp_path / "in-order", [[created], uses, filler(200)])
    # the uses and ten minutes of other traffic first; the TokenRequest 900 s later than the newest event
    data = tmp_path / "late"
    feed(data, [uses, filler(200), [created]])
    with open_store(str(data)) as store:
        assert store.size() == 1 + 5 + 12  # stored like any other record
        assert store.counters().get("late_credentials") == 1 and store.counters().get("late") == 1
        late = inventory(store)["jti/j1"]
        assert late[:3] == ("created", "alice", 5)  # the late creation still adopted the token's earlier uses
        assert "unaccounted" in late[4]  # decided before the creation arrived: bounded, and visible
        with open_store(str(tmp_path / "in-order")) as ref:
            expected = inventory(ref)
        rebuild(store)
        assert inventory(store) == expected  # replayed in event-time order: the exact answer
        assert show(store, "jti/j1", now_ns=0)["uses"] == 5
