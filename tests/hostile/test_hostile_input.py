"""Hostile input costs one event, never the stream (issue 10, "Done means").

Thousands of generated cases (``hostile_cases.py``) in every delivery format, each next to a good
event: through ``ingest``, the live tailer and the webhook, there is no traceback, every good event
is stored, every hostile one is stored (lossily where the store could not hold a value) or
rejected with its position and a reason, and ``verify --deep`` is green afterwards.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hostile_cases import FILE_FORMATS, Case, cases, good, wrap, yaml_document

from kubetrail.cli import cli
from kubetrail.pipeline import Options, open_pipeline
from kubetrail.sources._tail import Tailer
from kubetrail.sources.audit_file import AuditFileConfig, AuditFileSource
from kubetrail.store import open_store

MARKER = re.compile(rb"(?:case|good)-\d{5}")


def stored_markers(data_dir: str) -> tuple[set[str], dict[str, list[str]]]:
    """Markers found in stored bodies, and the lossy notes of each."""
    found: set[str] = set()
    lossy: dict[str, list[str]] = {}
    with open_store(data_dir, create=False, readonly=True) as store:
        for record in store.records_by_index(0, store.size()):
            for m in set(MARKER.findall(record.body)):
                found.add(m.decode())
                lossy[m.decode()] = record.meta.lossy
    return found, lossy


def rejects(data_dir: str) -> list[dict]:
    path = Path(data_dir) / "rejects.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


class Files:
    """One file per delivery format: case, good, case, good …; where each case starts."""

    def __init__(self, root: Path, all_cases: list[Case]) -> None:
        self.lines: dict[str, tuple[str, int, int]] = {}  # marker -> (file, first line, last line)
        self.goods: list[str] = []
        self.paths: list[str] = []
        by_fmt: dict[str, list[Case]] = {f: [] for f in FILE_FORMATS}
        for c in all_cases:
            by_fmt[c.fmt].append(c)
        for fmt, group in by_fmt.items():
            path = root / f"{fmt}.{'yaml' if fmt == 'yaml' else 'log'}"
            self.paths.append(str(path))
            if fmt == "pretty":
                self._pretty(path, group)
            elif fmt == "yaml":
                self._yaml(path, group)
            else:
                self._lines(path, group, fmt)

    def _good(self) -> dict:
        marker = f"good-{len(self.goods):05d}"
        self.goods.append(marker)
        return good(marker)

    def _lines(self, path: Path, group: list[Case], fmt: str) -> None:
        out = []
        for c in group:
            inner = c.json()
            out.append(inner if fmt == "gke" else wrap(fmt, inner))
            self.lines[c.marker] = (str(path), len(out), len(out))
            out.append(wrap(fmt, orjson.dumps(self._good())) if fmt != "gke" else orjson.dumps(self._good()))
        path.write_bytes(b"\n".join(out) + b"\n")

    def _yaml(self, path: Path, group: list[Case]) -> None:
        text, line = "", 1
        for c in group:
            for doc, marker in ((yaml_document(c), c.marker), (yaml_document_of(self._good()), None)):
                block = "---\n" + doc
                if marker:
                    self.lines[marker] = (str(path), line, line + block.count("\n") - 1)
                text += block
                line += block.count("\n")
        path.write_text(text)

    def _pretty(self, path: Path, group: list[Case]) -> None:
        items = []
        for c in group:
            self.lines[c.marker] = (str(path), -len(items) - 1, 0)  # negative: the item index, see below
            items += [c.event, self._good()]
        path.write_bytes(orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items},
                                      option=orjson.OPT_INDENT_2))

    def rejected(self, marker: str, positions: dict[tuple[str, str], set[str]]) -> bool:
        """Whether a reject names this case's position: its line (or a line of its YAML document),
        or its item of the pretty-printed EventList; ``positions`` from ``index``."""
        path, first, last = self.lines[marker]
        if first < 0:
            return f".items[{-first - 1}]" in positions.get((path, "1"), set())
        return any((path, str(n)) in positions for n in range(first, last + 1))


def index(rejected: list[dict]) -> dict[tuple[str, str], set[str]]:
    """Reject positions ``file:line[rest]`` by (file, line) → {rest}."""
    out: dict[tuple[str, str], set[str]] = {}
    for r in rejected:
        m = re.fullmatch(r"(.*):(\d+)(.*)", r["position"])
        if m:
            out.setdefault((m.group(1), m.group(2)), set()).add(m.group(3))
    return out


def yaml_document_of(event: dict) -> str:
    return yaml_document(Case("", "yaml", "", event))


@pytest.fixture(scope="module")
def all_cases() -> list[Case]:
    return list(cases(copies=1))


def test_the_generator_covers_every_format_with_thousands_of_cases(all_cases: list[Case]) -> None:
    assert len(all_cases) >= 2000
    assert {c.fmt for c in all_cases} == set(FILE_FORMATS)
    assert min(sum(c.fmt == f for c in all_cases) for f in FILE_FORMATS) >= 100
    assert len({c.marker for c in all_cases}) == len(all_cases)


def test_ingest_of_every_format(all_cases: list[Case], tmp_path: Path) -> None:
    files = Files(tmp_path, all_cases)
    data = str(tmp_path / "data")
    r = CliRunner().invoke(cli, ["ingest", *files.paths, "--json", "--data", data])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output and r.exit_code in (0, 1), r.output[-2000:]
    found, lossy = stored_markers(data)
    rejected = rejects(data)
    positions = index(rejected)
    assert all(x["reason"] for x in rejected) and len(positions) > 100
    missing_goods = [g for g in files.goods if g not in found]
    assert not missing_goods, f"{len(missing_goods)} good events lost, e.g. {missing_goods[:5]}"
    lost = [f"{c.fmt} {c.label}" for c in all_cases if c.marker not in found and not files.rejected(c.marker, positions)]
    assert not lost, f"{len(lost)} hostile cases neither stored nor rejected with their position: {lost[:10]}"
    both = [c.label for c in all_cases if c.marker in found and files.rejected(c.marker, positions)]
    assert not both, f"stored and rejected: {both[:10]}"
    # The values the store cannot index are stored, with a note saying what was not indexed.
    for c in all_cases:
        if c.fmt in ("raw", "eventlist", "docker") and c.label in LOSSY_NOT_INDEXED:
            assert c.marker in found and any("not indexed" in n for n in lossy[c.marker]), c.label
        if c.label.endswith("=raw-deep-2000") and c.fmt in ("raw", "cri") and \
                c.label.startswith(("requestObject", "responseObject")):
            assert c.marker in found and any("nested deeper" in n for n in lossy[c.marker]), c.label
    r = CliRunner().invoke(cli, ["verify", "--deep", "--json", "--data", data])
    doc = orjson.loads(r.stdout.strip().splitlines()[-1])
    assert r.exit_code == 0 and doc["ok"] is True, r.output[-2000:]


LOSSY_NOT_INDEXED = {f"{f}={v}" for f in ("stageTimestamp", "requestReceivedTimestamp")
                     for v in ("time-2300", "time-1600", "time-zone-99", "time-zone-big", "time-year0",
                               "time-2300-frac", "time-1600-frac", "time-superscript")} | \
                    {f"responseStatus.code={v}" for v in ("true", "false", "int-2^63", "int-2^64-1", "digits-2^64")}


def _tail_all(source: AuditFileSource, tailer: Tailer, pipe: object) -> Iterator[None]:
    while not source.poll_once(tailer, pipe.commit_decoded):  # type: ignore[attr-defined]
        yield None


def test_the_live_tailer_moves_past_every_poisoned_line(all_cases: list[Case], tmp_path: Path) -> None:
    """Lines appended while the tailer runs: each poisoned line costs itself, the position always
    reaches the end of the file (it never retries one chunk forever)."""
    line_cases = [c for c in all_cases if c.fmt not in ("yaml", "pretty")][::3]
    log = tmp_path / "audit.log"
    log.write_bytes(b"")
    config = AuditFileConfig(path=str(log), max_batch_bytes=64 * 1024)
    source = AuditFileSource(config)
    pipe = open_pipeline(Options(data_dir=str(tmp_path / "data"), detect=False))
    goods: list[str] = []
    try:
        tailer = Tailer(str(log), None, config.max_batch_bytes)
        for start in range(0, len(line_cases), 100):
            with log.open("ab") as fh:
                for c in line_cases[start:start + 100]:
                    goods.append(f"good-{len(goods):05d}")
                    inner = c.json()
                    fh.write((inner if c.fmt == "gke" else wrap(c.fmt, inner)) + b"\n")
                    fh.write(wrap("raw", orjson.dumps(good(goods[-1]))) + b"\n")
            for _ in _tail_all(source, tailer, pipe):
                pass
        tailer.close()
        position = orjson.loads(pipe.store.position(source.position_key) or "{}")
        assert position["offset"] == log.stat().st_size, "the tailer stopped before the end"
        stored = pipe.summary.stored
        rejected = pipe.summary.rejected
    finally:
        pipe.close()
        pipe.store.close()
    found, _ = stored_markers(str(tmp_path / "data"))
    assert not [g for g in goods if g not in found]
    hostile_stored = sum(c.marker in found for c in line_cases)
    assert hostile_stored + rejected >= len(line_cases) and stored == len(goods) + hostile_stored
    r = CliRunner().invoke(cli, ["verify", "--deep", "--json", "--data", str(tmp_path / "data")])
    assert orjson.loads(r.stdout.strip().splitlines()[-1])["ok"] is True, r.output[-2000:]


@pytest.mark.integration
def test_the_webhook_answers_200_or_400_never_503(all_cases: list[Case], tmp_path: Path) -> None:
    """Batches of the apiserver's shape (EventList) with hostile items between good ones: valid JSON
    is a 200 with the good events stored and each hostile one stored or listed as rejected; a body
    that is not JSON at all is a 400 (no apiserver sends one). Never a 503 the apiserver would retry
    forever."""
    from webhook_client import WebhookClient

    events = [c for c in all_cases if c.fmt in ("raw", "eventlist", "array", "cri", "docker")]
    with WebhookClient(tmp_path) as client:
        goods: list[str] = []
        expected_stored: set[str] = set()
        valid = [c for c in events if c.valid_json]
        for start in range(0, len(valid), 40):
            batch = valid[start:start + 40]
            items = []
            for c in batch:
                goods.append(f"good-{len(goods):05d}")
                items += [c.json(), orjson.dumps(good(goods[-1]))]
            body = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[' + b",".join(items) + b"]}"
            status, answer = client.post(body)
            assert status == 200, (status, answer, [c.label for c in batch])
            assert answer["events"] + answer["rejected"] == len(items)
        for c in [c for c in events if not c.valid_json][:20]:
            body = b'{"kind":"EventList","items":[' + c.json() + b"," + orjson.dumps(good("good-99999")) + b"]}"
            status, _ = client.post(body)
            assert status == 400, c.label
        assert client.counts.get("http_503", 0) == 0
        found, _ = stored_markers(client.data_dir)
        assert not [g for g in goods if g not in found]
        assert "good-99999" not in found
        expected_stored = {c.marker for c in valid if c.marker in found}
        assert len(expected_stored) + client.rejected() == len(valid)
    r = CliRunner().invoke(cli, ["verify", "--deep", "--json", "--data", client.data_dir])
    assert orjson.loads(r.stdout.strip().splitlines()[-1])["ok"] is True, r.output[-2000:]


def test_threads_left(all_cases: list[Case]) -> None:
    """No test above leaves a tailer or server thread running."""
    assert not [t for t in threading.enumerate() if t.name == "audit-webhook"]
