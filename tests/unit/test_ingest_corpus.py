"""Every public corpus file ingests with the expected stored and rejected counts."""

from __future__ import annotations

import pytest

from kubetrail.pipeline import Options, open_pipeline
from kubetrail.record import SourceRef
from kubetrail.sources.files import read_paths
from kubetrail.testing import fixtures_dir

pytestmark = pytest.mark.needs_fixtures
CORPUS = fixtures_dir() / "corpus"

# file (relative to the corpus) -> (stored, rejected). Reasons for the rejects:
#   azure…kube.log: properties.log is '{"kind":"Event"}' (no auditID/verb)
#   fal_01_003.json: {"kind": 0}
#   panther rule-tests.jsonl: test-case wrappers, not delivered events
#   elastic test-audit.log: line 3 repeats line 2 byte for byte -> stored once (a duplicate)
EXPECTED = {
    "audit2rbac/demo.log": (37, 0),
    "elastic-integrations/azure__platformlogs__test-platformlogs-kube.log": (0, 1),
    "elastic-integrations/gcp__audit__test-audit.log__k8s-only.jsonl": (6, 0),
    "elastic-integrations/gcp__audit__test-k8s-nonmatching-resourcename.log": (1, 0),
    "elastic-integrations/kubernetes__audit_logs__test-audit.log": (4, 0),
    "elastic-integrations/kubernetes__audit_logs__test-kube-audit.log": (1, 0),
    "falco-trace-files/create_configmap_sensitive_values.json": (6, 0),
    "falco-trace-files/fal_01_003.json": (0, 1),
    "khi-gke-audit/gke-cloud-logging-k8s-audit.jsonl": (3, 0),
    "khi-gke-audit/oss-raw-audit-event.jsonl": (1, 0),
    "panther-analysis-tests/rule-tests.jsonl": (0, 287),
    "splunk-security-content/kubernetes_audit_example_log.jsonl": (1, 0),
}


def corpus_files() -> list[str]:
    files = []
    for p in sorted(CORPUS.rglob("*")):
        rel = p.relative_to(CORPUS).as_posix()
        if p.is_file() and p.suffix in (".json", ".jsonl", ".log") and "original" not in rel:
            files.append(rel)
    return files


def test_khi_yaml_originals_decode_like_their_json_copies(tmp_path) -> None:
    """`gcloud logging read` YAML: each original holds one LogEntry (or one raw Event)."""
    originals = sorted((CORPUS / "khi-gke-audit" / "original").glob("*.yaml"))
    assert len(originals) == 4
    pipe = open_pipeline(Options(data_dir=str(tmp_path), detect=False))
    try:
        s = pipe.ingest_items(read_paths([str(p) for p in originals]), SourceRef(stream="khi"))
    finally:
        pipe.close()
        pipe.store.close()
    assert (s.stored, s.rejected) == (4, 0)


@pytest.mark.parametrize("name", sorted(p.name for p in (fixtures_dir() / "falco" / "trace_files" / "k8s_audit").glob("*")))
def test_falco_trace_files(name: str, tmp_path) -> None:
    """The Falco fixture copy of the trace files ingests like the corpus copy."""
    pipe = open_pipeline(Options(data_dir=str(tmp_path), detect=False))
    try:
        s = pipe.ingest_items(read_paths([str(fixtures_dir() / "falco" / "trace_files" / "k8s_audit" / name)]),
                              SourceRef(stream=name))
    finally:
        pipe.close()
        pipe.store.close()
    assert (s.stored, s.rejected) == expected(f"falco-trace-files/{name}")


def expected(rel: str) -> tuple[int, int]:
    if rel in EXPECTED:
        return EXPECTED[rel]
    assert rel.startswith("falco-trace-files/"), f"no expectation written for {rel}"
    return (1, 0)


@pytest.mark.parametrize("rel", corpus_files())
def test_corpus_file_counts(rel: str, tmp_path) -> None:
    """Stored and rejected counts per file, each into a fresh store."""
    pipe = open_pipeline(Options(data_dir=str(tmp_path), detect=False))
    try:
        s = pipe.ingest_items(read_paths([str(CORPUS / rel)]), SourceRef(stream=rel))
    finally:
        pipe.close()
        pipe.store.close()
    assert (s.stored, s.rejected) == expected(rel)


def test_whole_corpus_twice_stores_nothing_new(tmp_path) -> None:
    """Idempotent ingest: the second pass is all duplicates."""
    files = [str(CORPUS / f) for f in corpus_files()]
    total = sum(expected(f)[0] for f in corpus_files())
    for attempt in range(2):
        pipe = open_pipeline(Options(data_dir=str(tmp_path), detect=False))
        s = pipe.ingest_items(read_paths(files), SourceRef(stream="corpus"))
        size = pipe.store.size()
        pipe.close()
        pipe.store.close()
        assert size == total
        assert s.stored == (total if attempt == 0 else 0)
