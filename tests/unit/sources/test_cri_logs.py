"""cri_logs: kubelet layout, CRI/Docker lines, partial joining, rotation with gzip, restarts, deletion."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from kubetrail.demo.node import SimNode
from kubetrail.record import Record
from kubetrail.sources._cri import Joiner, parse_line, parse_pod_path
from kubetrail.sources.cri_logs import CriLogsConfig, CriLogsSource

UID = "0b4d6a3e-1111-4d7c-9a4b-000000000001"


class MemoryStore:
    """Records by key (duplicates refused, as the store does) and positions, one commit at a time."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.positions: dict[str, str] = {}
        self.duplicates = 0

    def commit(self, records: list[Record], positions: dict[str, str]) -> None:
        for r in records:
            if r.key in self.records:
                self.duplicates += 1
            else:
                self.records[r.key] = r
        self.positions.update(positions)

    def texts(self) -> list[str]:
        return [r.body.decode() for r in sorted(self.records.values(), key=lambda r: r.time)]


def poll(source: CriLogsSource, store: MemoryStore, rounds: int = 3, close: bool = True) -> None:
    """Run the source's loop body a few times, synchronously (then drop it, as a crash would)."""
    for _ in range(rounds):
        for path, pod in source.discover():
            if path not in source.files:
                source._add(path, pod, store.positions.get, from_end=False)
        for w in list(source.files.values()):
            source._poll_file(w, store.commit)
    if close:
        source.close()


def test_path_says_namespace_pod_uid_container_restart(tmp_path: Path) -> None:
    """The kubelet path alone names the pod; a /var/log/containers symlink resolves to it."""
    p = tmp_path / "pods" / f"shop_web-1_{UID}" / "web" / "3.log"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"")
    pod = parse_pod_path(str(p))
    assert pod is not None and (pod.namespace, pod.pod, pod.pod_uid, pod.container, pod.restart) == \
        ("shop", "web-1", UID, "web", 3)
    link = tmp_path / f"web-1_shop_web-{'a' * 64}.log"
    link.symlink_to(p)
    via = parse_pod_path(str(link))
    assert via is not None and via.pod_uid == UID and via.container_id == "a" * 64


def test_partial_lines_join_per_stream_and_are_cut_at_the_cap() -> None:
    """P parts join until F per stream (interleaved stdout/stderr); past max_line_bytes the text is cut with a marker."""
    j = Joiner(max_line_bytes=10)
    assert j.feed(parse_line(b"2024-05-01T10:00:00.1Z stdout P hel"), 0) is None
    assert j.feed(parse_line(b"2024-05-01T10:00:00.2Z stderr P err"), 40) is None
    assert j.pending_start() == 0
    out = j.feed(parse_line(b"2024-05-01T10:00:00.3Z stdout F lo"), 80)
    assert out is not None and out.text == b"hello" and out.offset == 0 and out.stream == "stdout"
    assert j.pending_start() == 40
    out = j.feed(parse_line(b"2024-05-01T10:00:00.4Z stderr F or and much more text"), 120)
    assert out is not None and out.truncated and out.text.startswith(b"error and ") and b"bytes dropped" in out.text
    assert j.pending_start() is None


def test_docker_json_file_partials_join() -> None:
    """Docker json-file: a log without a trailing newline is a partial part."""
    j = Joiner(1000)
    a = parse_line(json.dumps({"log": "hello ", "stream": "stdout", "time": "2024-05-01T10:00:00.5Z"}).encode())
    b = parse_line(json.dumps({"log": "world\n", "stream": "stdout", "time": "2024-05-01T10:00:00.6Z"}).encode())
    assert a.partial and not b.partial
    assert j.feed(a, 0) is None
    out = j.feed(b, 70)
    assert out is not None and out.text == b"hello world" and out.time_ns == 1714557600_500_000_000


def _source(root: Path, **kw: object) -> CriLogsSource:
    return CriLogsSource(CriLogsConfig(root=str(root), node="node-a", **kw))  # type: ignore[arg-type]


def test_rotation_gzip_restart_and_crash_resume_store_every_line_once(tmp_path: Path) -> None:
    """Rename+gzip rotation, a restart (1.log) and two new sources on saved positions: each line once."""
    node = SimNode(str(tmp_path), partial_bytes=20, max_files=10)
    node.start_pod("shop", "web-1", UID, ["web"])
    store = MemoryStore()
    for i in range(5):
        node.write(UID, "web", f"line {i} " + "x" * (i * 15))
    poll(_source(tmp_path), store)
    for i in range(5, 10):
        node.write(UID, "web", f"line {i}")
        node.rotate(UID, "web")
    # a fresh source (a restart) with the saved positions: the generation it was reading is gzipped now
    poll(_source(tmp_path), store)
    node.restart(UID, "web")
    node.write(UID, "web", "after restart", stream="stderr")
    poll(_source(tmp_path), store)
    want = [t for (_, _, _, t) in node.written]
    assert sorted(store.texts()) == sorted(want)
    assert len(store.records) == len(want)
    assert any(n.endswith(".gz") for n in os.listdir(os.path.dirname(node.pods[UID]["web"].path)))


def test_pruned_generation_reads_every_gzip_left(tmp_path: Path) -> None:
    """When the kubelet already deleted the generation we were in, what it kept is still read."""
    node = SimNode(str(tmp_path), max_files=3)
    node.start_pod("shop", "web-1", UID, ["web"])
    store = MemoryStore()
    node.write(UID, "web", "seen")
    poll(_source(tmp_path), store)
    for i in range(5):
        node.write(UID, "web", f"line {i}")
        node.rotate(UID, "web")
    poll(_source(tmp_path), store)
    assert store.texts() == ["seen", "line 3", "line 4"]  # 0-2 were pruned by the kubelet


def test_checkpoint_never_splits_a_partial_line(tmp_path: Path) -> None:
    """A crash between a P part and its F part re-reads the whole line on restart."""
    node = SimNode(str(tmp_path))
    node.start_pod("shop", "web-1", UID, ["web"])
    c = node.pods[UID]["web"]
    with open(c.path, "ab") as fh:
        fh.write(b"2024-05-01T10:00:00.000000001Z stdout F first\n2024-05-01T10:00:00.000000002Z stdout P hello \n")
    store = MemoryStore()
    poll(_source(tmp_path), store)
    assert store.texts() == ["first"]
    with open(c.path, "ab") as fh:
        fh.write(b"2024-05-01T10:00:00.000000003Z stdout F world\n")
    poll(_source(tmp_path), store)  # a new source: what the first one held in memory is gone
    assert store.texts() == ["first", "hello world"]
    assert store.duplicates == 0


def test_deleted_pod_is_drained_and_released(tmp_path: Path) -> None:
    """Lines written just before the pod's directory is removed are still read through the open handle."""
    node = SimNode(str(tmp_path))
    node.start_pod("shop", "web-1", UID, ["web"])
    node.write(UID, "web", "one")
    src = _source(tmp_path)
    store = MemoryStore()
    poll(src, store, rounds=1, close=False)
    node.write(UID, "web", "two")
    node.delete_pod(UID)
    poll(src, store, rounds=2)
    assert store.texts() == ["one", "two"]
    assert src.files == {}


def test_new_pod_found_within_a_second(tmp_path: Path) -> None:
    """The live loop picks up a pod created after it started in well under a second."""
    store = MemoryStore()
    src = _source(tmp_path, poll_ms=250)
    stop = threading.Event()
    t = threading.Thread(target=src.run, args=(store.commit, store.positions.get, stop))
    t.start()
    try:
        time.sleep(0.3)
        node = SimNode(str(tmp_path))
        node.start_pod("shop", "web-2", UID, ["web"])
        node.write(UID, "web", "born")
        began = time.monotonic()
        while not store.records and time.monotonic() - began < 5:
            time.sleep(0.01)
        assert store.texts() == ["born"]
        assert time.monotonic() - began < 1.0
    finally:
        stop.set()
        t.join(5)
    r = next(iter(store.records.values()))
    assert (r.kind, r.log().namespace, r.log().pod, r.log().pod_uid, r.log().container, r.log().node) == \
        ("container", "shop", "web-2", UID, "web", "node-a")


def test_secrets_in_lines_are_redacted_before_the_record_exists(tmp_path: Path) -> None:
    """A password= pair and a bearer token never reach the record body."""
    node = SimNode(str(tmp_path))
    node.start_pod("shop", "web-1", UID, ["web"])
    node.write(UID, "web", "connect password=hunter2 Authorization: Bearer abc.def.ghi-long-token")
    store = MemoryStore()
    poll(_source(tmp_path), store)
    (r,) = store.records.values()
    assert b"hunter2" not in r.body and b"abc.def" not in r.body
    assert len(r.redactions) == 2 and all(len(x.hmac) == 16 for x in r.redactions)  # keyed digests
    assert os.path.exists(node.pods[UID]["web"].path)


def test_crash_inside_a_later_gzip_still_reads_the_plain_rotation(tmp_path: Path) -> None:
    """A position saved in a .gz read whole (compressed after the newest plain rotation was last
    written) must not make a restart skip that plain rotation."""
    node = SimNode(str(tmp_path), max_files=20)
    node.start_pod("shop", "web-1", UID, ["web"])
    store = MemoryStore()
    node.write(UID, "web", "g0")
    poll(_source(tmp_path), store)
    for i in range(1, 4):
        node.write(UID, "web", f"g{i}")
        node.rotate(UID, "web")  # g0-g1, g2 end up gzipped, g3 is the plain rotation
    node.write(UID, "web", "live")
    src = _source(tmp_path)
    for path, pod in src.discover():
        src._add(path, pod, store.positions.get, from_end=False)
    (w,) = src.files.values()
    assert w.catch_up is not None
    chunks = list(w.catch_up)  # crash after committing only what the .gz files held
    for lines, pos in chunks:
        store.commit(src._records(w, lines, pos), {src.position_key(w.pod): pos.dumps()})
    src.close()
    assert "g3" not in store.texts()
    poll(_source(tmp_path), store)
    assert sorted(store.texts()) == ["g0", "g1", "g2", "g3", "live"]


def test_history_gzipped_before_the_first_read_is_read(tmp_path: Path) -> None:
    """A file first seen after the kubelet gzipped its older rotations: those are read too, oldest first."""
    node = SimNode(str(tmp_path), max_files=20)
    node.start_pod("shop", "web-1", UID, ["web"])
    for i in range(3):
        node.write(UID, "web", f"g{i}")
        node.rotate(UID, "web")
    node.write(UID, "web", "live")
    store = MemoryStore()
    poll(_source(tmp_path), store)
    assert store.texts() == ["g0", "g1", "g2", "live"]
    assert store.duplicates == 0
