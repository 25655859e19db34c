"""Every delivery format decodes to the same Event; bad input becomes a counted reject."""

from __future__ import annotations

import base64
import gzip
import io

import orjson
import pytest

from kubetrail.record import Decoded, Rejected
from kubetrail.sources.files import read_paths, read_stream
from kubetrail.sources.formats import decode_line

EVENT = {
    "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "a-1",
    "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/default/pods", "verb": "list",
    "user": {"username": "alice", "groups": ["dev"]}, "sourceIPs": ["10.0.0.1"],
    "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
    "responseStatus": {"code": 200}, "requestReceivedTimestamp": "2024-05-01T10:00:00.000001Z",
    "stageTimestamp": "2024-05-01T10:00:00.100000Z",
}
RAW = orjson.dumps(EVENT)


def decode(line: bytes) -> list[Decoded | Rejected]:
    return list(decode_line(line, "t:1"))


def only_event(items: list[Decoded | Rejected]) -> Decoded:
    assert len(items) == 1 and isinstance(items[0], Decoded), items
    return items[0]


def test_raw_event_line() -> None:
    """A plain Event line decodes unchanged."""
    assert only_event(decode(RAW)).event == EVENT


def test_event_without_kind_and_apiversion() -> None:
    """Falco traces omit kind/apiVersion; they are still events."""
    ev = {k: v for k, v in EVENT.items() if k not in ("kind", "apiVersion")}
    assert only_event(decode(orjson.dumps(ev))).event["auditID"] == "a-1"


def test_eventlist_and_array() -> None:
    """Webhook batches: EventList items and bare arrays."""
    lst = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [EVENT, EVENT]}
    assert [d.format for d in decode(orjson.dumps(lst))] == ["eventlist", "eventlist"]
    assert len(decode(orjson.dumps([EVENT, EVENT, EVENT]))) == 3


def test_cri_and_docker_wrapped() -> None:
    """apiserver writing to stdout, wrapped by the container runtime."""
    cri = b"2024-05-01T10:00:00.123456789Z stdout F " + RAW
    assert only_event(decode(cri)).format == "cri"
    docker = orjson.dumps({"log": RAW.decode() + "\n", "stream": "stdout", "time": "2024-05-01T10:00:00Z"})
    assert only_event(decode(docker)).format == "docker"
    partial = b"2024-05-01T10:00:00Z stdout P " + RAW[:20]
    assert isinstance(decode(partial)[0], Rejected)


def test_gke_logentry_is_mapped_and_marked_lossy() -> None:
    """GKE: method name → verb/resource/subresource, rpc code → HTTP, no groups."""
    entry = {
        "insertId": "x", "timestamp": "2024-05-01T10:00:00Z", "operation": {"id": "op-1"},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "k8s.io",
            "methodName": "io.k8s.core.v1.pods.exec.create",
            "resourceName": "core/v1/namespaces/prod/pods/web-1/exec",
            "authenticationInfo": {"principalEmail": "bob@example.com"},
            "requestMetadata": {"callerIp": "1.2.3.4", "callerSuppliedUserAgent": "kubectl"},
            "status": {"code": 7},
        },
        "resource": {"labels": {"cluster_name": "c1"}},
    }
    d = only_event(decode(orjson.dumps(entry)))
    ev = d.event
    assert (ev["verb"], ev["objectRef"]["resource"], ev["objectRef"]["subresource"]) == ("create", "pods", "exec")
    assert ev["objectRef"]["namespace"] == "prod" and ev["objectRef"]["name"] == "web-1"
    assert ev["responseStatus"]["code"] == 403 and ev["auditID"] == "op-1"
    assert "groups" in d.lossy and "stage" in d.lossy


def test_gke_rbac_and_approval_methods() -> None:
    """RBAC and CSR approval method names map to their API groups and subresources."""
    def method(m: str, rn: str) -> dict:
        e = {"protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "methodName": m,
                              "resourceName": rn, "authenticationInfo": {"principalEmail": "u"}},
             "operation": {"id": "1"}, "timestamp": "2024-05-01T10:00:00Z"}
        return only_event(decode(orjson.dumps(e))).event
    ev = method("io.k8s.authorization.rbac.v1.clusterrolebindings.create",
                "rbac.authorization.k8s.io/v1/clusterrolebindings/x")
    assert ev["objectRef"]["apiGroup"] == "rbac.authorization.k8s.io" and ev["objectRef"]["name"] == "x"
    ev = method("io.k8s.certificates.v1.certificatesigningrequests.approval.update",
                "certificates.k8s.io/v1/certificatesigningrequests/csr-1/approval")
    assert ev["objectRef"]["apiGroup"] == "certificates.k8s.io"
    assert (ev["objectRef"]["subresource"], ev["verb"]) == ("approval", "update")


def _cwl(events: list[bytes], kind: str = "DATA_MESSAGE") -> bytes:
    doc = {"messageType": kind, "owner": "1", "logGroup": "/aws/eks/c/cluster", "logStream": "kube-apiserver-audit-1",
           "logEvents": [{"id": str(i), "timestamp": 1, "message": e.decode()} for i, e in enumerate(events)]}
    return base64.b64encode(gzip.compress(orjson.dumps(doc)))


def test_eks_subscription_envelope_and_control_message() -> None:
    """gzip+base64 CloudWatch subscription records; CONTROL_MESSAGE is skipped, not rejected."""
    assert [d.format for d in decode(_cwl([RAW, RAW]))] == ["eks", "eks"]
    assert decode(_cwl([], "CONTROL_MESSAGE")) == []
    plain = orjson.dumps({"id": "1", "timestamp": 1, "message": RAW.decode()})
    assert only_event(decode(plain)).format == "eks"


def test_aks_string_object_and_records_batch() -> None:
    """AKS properties.log as a JSON string, as an object, and in a records batch."""
    rec_s = {"category": "kube-audit", "properties": {"log": RAW.decode(), "pod": "p"}}
    rec_o = {"category": "kube-audit", "properties": {"log": EVENT, "pod": "p"}}
    assert only_event(decode(orjson.dumps(rec_s))).format == "aks"
    assert only_event(decode(orjson.dumps(rec_o))).format == "aks"
    assert len(decode(orjson.dumps({"records": [rec_s, rec_o]}))) == 2


@pytest.mark.parametrize("line,reason", [
    (RAW[:-10], "invalid JSON"),
    (b'{"kind": 0}', "kind is a value of type int"),
    (orjson.dumps({**EVENT, "user": "alice"}), "user has type str"),
    (orjson.dumps({**EVENT, "sourceIPs": "1.2.3.4"}), "sourceIPs has type str"),
    (orjson.dumps({**EVENT, "responseStatus": {"code": "abc"}}), "responseStatus.code"),
    (orjson.dumps(RAW.decode()), "double-encoded"),
    (b"[1, 2]", "not a JSON object"),
    (b"hello world", "not JSON"),
    (orjson.dumps({"kind": "Event"}), "missing auditID"),
    (orjson.dumps({**EVENT, "apiVersion": "v1"}), "apiVersion"),
])
def test_malformed_input_is_rejected_with_a_reason(line: bytes, reason: str) -> None:
    """Truncation, type confusion and double encoding are rejects with a reason, never a crash."""
    items = decode(line)
    assert items and all(isinstance(i, Rejected) for i in items)
    assert reason in items[0].reason


def test_string_code_that_is_a_number_is_accepted() -> None:
    """Some pipelines stringify the status code; a numeric string is repaired."""
    d = only_event(decode(orjson.dumps({**EVENT, "responseStatus": {"code": "403"}})))
    assert d.event["responseStatus"]["code"] == 403


def test_pretty_printed_document_and_bad_line_in_the_middle() -> None:
    """A multi-line JSON document is read whole; a bad line does not stop the file."""
    pretty = orjson.dumps({"kind": "EventList", "items": [EVENT]}, option=orjson.OPT_INDENT_2)
    assert [type(i) for i in read_stream(io.BytesIO(pretty), "p")] == [Decoded]
    mixed = RAW + b"\n{broken\n" + RAW + b"\n"
    kinds = [type(i).__name__ for i in read_stream(io.BytesIO(mixed), "m")]
    assert kinds == ["Decoded", "Rejected", "Decoded"]


def test_gzip_file_and_directory(tmp_path) -> None:
    """.gz files are decompressed; directories are walked, skipping docs."""
    (tmp_path / "a.log.gz").write_bytes(gzip.compress(RAW + b"\n" + RAW + b"\n"))
    (tmp_path / "README.md").write_text("not events")
    items = list(read_paths([str(tmp_path)]))
    assert len(items) == 2 and all(isinstance(i, Decoded) for i in items)
