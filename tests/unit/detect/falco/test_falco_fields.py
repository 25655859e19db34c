"""Field extraction: the reference's worked examples, the compat quirks, and kubetrail's kt.* fields."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from kubetrail.detect.falco.compiler import Compiler
from kubetrail.detect.falco.context import EventContext, Extracted
from kubetrail.detect.falco.fields import FIELDS
from kubetrail.detect.falco.parser import parse_operand
from kubetrail.record import AuditMeta, Record, SourceRef
from kubetrail.testing import fixtures_dir

TRACES = fixtures_dir() / "falco" / "trace_files" / "k8s_audit"


def trace(name: str) -> dict[str, Any]:
    path = TRACES / f"{name}.json"
    if not path.is_file():
        pytest.skip("Falco fixtures not available")
    return orjson.loads(Path(path).read_bytes().splitlines()[0])


def x(field: str, ev: dict[str, Any], compat: str = "kubetrail", record: Any = None) -> Extracted:
    parsed = parse_operand(field)
    assert parsed is not None and parsed[1] == len(field), field
    get, _, _ = Compiler(compat).operand(parsed[0])
    return get(EventContext(ev, record))


def test_reference_examples() -> None:
    ev = trace("create_nginx_pod_privileged_2nd_container")
    assert x("ka.req.pod.containers.privileged", ev) == ["false", "true"]
    assert x("ka.req.pod.containers.image", ev) == ["nginx", "mysql:latest"]
    assert x("ka.req.pod.containers.image.repository", ev) == ["nginx", "mysql"]
    assert x("ka.req.pod.containers.image[1]", ev) == ["mysql:latest"]
    assert x("ka.req.pod.containers.image[5]", ev) is None
    assert x("ka.req.container.privileged", ev) == "true"
    assert x("ka.req.pod.initContainers.image", ev) is None
    ev = trace("create_nginx_pod_no_secctx_1st_container_privileged_2nd_container")
    assert x("ka.req.pod.containers.privileged", ev) == ["true"]
    assert x("ka.req.pod.containers.privileged[0]", ev) is None
    ev = trace("create_cluster_role_wildcard_verbs")
    assert x("ka.req.role.rules.verbs", ev) == ["*", "get"]
    assert x("ka.req.role.rules.apiGroups", ev) == [""]
    ev = trace("exec_pod")
    assert x("ka.uri.param[command]", ev) == "bash"
    assert x("jevt.rawtime", ev) == "1540561114902914000"
    assert x("ka.target.subresource", ev) == "exec"
    assert x("kt.exec.command", ev) == "bash"


def test_json_fields() -> None:
    ev = trace("create_nginx_pod_sensitive_mount")
    assert x("jevt.value[/requestObject/spec/volumes]", ev) == '[{"hostPath":{"path":"/etc","type":""},"name":"etc"}]'
    assert x("jevt.value[requestObject/spec/volumes/0/name]", ev) == "etc"
    assert x("jevt.value[/annotations/authorization.k8s.io~1decision]", ev) == "allow"
    assert x("jevt.value[/nope]", ev) is None
    obj = x("jevt.obj", {"a": [1], "b": {}})
    assert obj == '{\n  "a": [\n    1\n  ],\n  "b": {}\n}'
    assert x("json.value[/a/0]", {"a": [True]}) == "true"


def test_go_escaping_only_in_falco_compat() -> None:
    ev = {"auditID": "a", "requestObject": {"data": {"k": "a&b<c>"}}}
    assert x("ka.req.configmap.obj", ev) == '{"k":"a&b<c>"}'
    assert x("ka.req.configmap.obj", ev, "falco") == '{"k":"a\\u0026b\\u003cc\\u003e"}'


def test_compat_quirks() -> None:
    ev = {"auditID": "a", "sourceIPs": ["1.1.1.1", "2.2.2.2"],
          "requestObject": {"spec": {"containers": [{"image": "reg:5000/app:1", "securityContext": {"runAsUser": 7}}],
                                     "ports": [{"port": 80}, {"port": 81}]}}}
    assert x("ka.sourceips", ev) == ["1.1.1.1", "2.2.2.2"]
    assert x("ka.sourceips[1]", ev) == ["2.2.2.2"]
    assert x("ka.sourceips", ev, "falco") is None  # plugins#236
    assert x("ka.req.pod.containers.image.repository", ev) == ["reg:5000/app"]
    assert x("ka.req.pod.containers.image.repository", ev, "falco") == ["reg"]
    assert x("ka.req.pod.containers.eff_run_as_user", ev) == ["7"]
    assert x("ka.req.pod.containers.eff_run_as_user", ev, "falco") == ["0"]
    assert x("ka.req.service.ports", ev) == ['{"port":80}', '{"port":81}']
    assert x("ka.req.service.ports[1]", ev) == ['{"port":81}']
    assert x("ka.req.service.ports[1]", ev, "falco") == ['[{"port":80},{"port":81}]']


def test_pod_fields() -> None:
    ev = {"auditID": "a", "requestObject": {"spec": {
        "securityContext": {"runAsUser": 5, "supplementalGroups": [1, 2]},
        "containers": [{"name": "a", "image": "x@sha256:ab", "command": ["sh", "-c"],
                        "securityContext": {"capabilities": {"add": ["NET_ADMIN", "SYS_ADMIN"]}},
                        "ports": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 8081}]}],
        "initContainers": [{"name": "i", "image": "busybox", "securityContext": {"privileged": True}}],
        "volumes": [{"name": "v", "emptyDir": {}}, {"name": "h", "hostPath": {"path": "/proc"}}]}}}
    assert x("ka.req.pod.containers.command", ev) == ["sh -c"]
    assert x("ka.req.pod.containers.args", ev) is None
    assert x("ka.req.pod.containers.add_capabilities", ev) == ["NET_ADMIN", "SYS_ADMIN"]
    assert x("ka.req.pod.containers.host_port", ev) == ["80", "8081"]
    assert x("ka.req.pod.containers.eff_run_as_user", ev) == ["5"]
    assert x("ka.req.pod.containers.image.repository", ev) == ["x"]
    assert x("ka.req.pod.initContainers.privileged", ev) == ["true"]
    assert x("ka.req.pod.containers.privileged", ev) is None
    assert x("ka.req.pod.volumes.hostpath", ev) == ["/proc"]
    assert x("ka.req.pod.volumes.hostpath[0]", ev) is None
    assert x("ka.req.pod.volumes.volume_type", ev) == ["emptyDir", "hostPath"]
    assert x("ka.req.pod.run_as_user", ev) == "5"
    assert x("ka.req.pod.supplemental_groups", ev) == ["1", "2"]
    assert x("ka.req.volume.hostpath[/pro*]", ev) == "true"
    assert x("ka.req.volume.hostpath[/etc]", ev) == "false"
    assert "ka.req.pod.ephemeralContainers.host_port" not in FIELDS


def test_bindings_and_misc() -> None:
    ev = {"auditID": "a", "objectRef": {"resource": "pods", "name": "cm"}, "responseStatus": {"code": 201},
          "responseObject": {"metadata": {"name": "p1"}},
          "requestObject": {"roleRef": {"name": "admin"}, "subjects": [
              {"kind": "User", "name": "u"}, {"kind": "Group", "name": "g"},
              {"kind": "ServiceAccount", "name": "s", "namespace": "ns"}, {"kind": "ServiceAccount", "name": "t"}]}}
    assert x("ka.req.binding.subjects.user_names", ev) == ["u"]
    assert x("ka.req.binding.subjects.group_names", ev) == ["g"]
    assert x("ka.req.binding.subjects.serviceaccount_names", ev) == ["s", "t"]
    assert x("ka.req.binding.subjects.serviceaccount_ns_names", ev) == ["ns:s"]
    assert x("ka.req.binding.role", ev) == "admin"
    assert x("ka.response.code", ev) == "201"
    assert x("ka.target.pod.name", ev) == "p1"
    assert x("ka.target.pod.name", {**ev, "objectRef": {"resource": "pods", "subresource": "exec"}}) is None
    assert x("ka.req.configmap.name", ev) == "cm"
    assert x("ka.uri.param[a]", {"auditID": "a", "requestURI": "/x?a=1;b=2"}) is None


def _csr_pem() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                                    x509.NameAttribute(NameOID.COMMON_NAME, "mallory")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), critical=False)
           .sign(key, hashes.SHA256()))
    return base64.b64encode(csr.public_bytes(Encoding.PEM)).decode()


def test_kt_fields() -> None:
    ev = {"auditID": "a", "sourceIPs": ["6.6.6.6", "10.0.0.2"], "verb": "create",
          "requestURI": "/api/v1/namespaces/d/pods/p/exec?command=cat&command=/etc/shadow&container=c",
          "user": {"username": "u", "extra": {"authentication.kubernetes.io/credential-id": ["JTI=abc"]}},
          "impersonatedUser": {"username": "admin", "groups": ["system:masters"]},
          "annotations": {"kubetrail.dev/token-claims": orjson.dumps(
              {"sub": "system:serviceaccount:d:s", "kubernetes.io": {"serviceaccount": {"name": "s"}}}).decode()},
          "requestObject": {"kind": "CertificateSigningRequest",
                            "spec": {"request": _csr_pem(), "signerName": "kubernetes.io/kube-apiserver-client"}}}
    assert x("kt.sourceip", ev) == "10.0.0.2"
    assert x("kt.sourceips", ev) == ["6.6.6.6", "10.0.0.2"]
    assert x("kt.credential_id", ev) == "JTI=abc"
    assert x("kt.user.extra[authentication.kubernetes.io/credential-id]", ev) == ["JTI=abc"]
    assert x("kt.impuser.name", ev) == "admin" and x("kt.impuser.groups", ev) == ["system:masters"]
    assert x("kt.exec.command", ev) == "cat /etc/shadow" and x("kt.exec.container", ev) == "c"
    assert x("kt.csr.cn", ev) == "mallory"
    assert x("kt.csr.groups", ev) == ["system:masters"]
    assert x("kt.csr.sans", ev) == ["evil.example"]
    assert x("kt.csr.subject", ev) == "CN=mallory,O=system:masters"
    assert x("kt.csr.signer", ev) == "kubernetes.io/kube-apiserver-client"
    assert x("kt.token.claims[sub]", ev) == "system:serviceaccount:d:s"
    assert x("kt.token.claims[kubernetes.io/serviceaccount/name]", ev) == "s"
    assert x("kt.token.claims[nope]", ev) is None
    assert x("kt.leaf_index", ev) is None and x("kt.cluster", ev) is None
    broken = {**ev, "requestObject": {"spec": {"request": "bm90IGEgY3Ny"}}}
    assert x("kt.csr.cn", broken) is None


def test_record_fields() -> None:
    ev = {"auditID": "a", "verb": "get"}
    rec = Record(kind="audit", key="k1", time=5, source=SourceRef(cluster="prod"), body=orjson.dumps(ev),
                 meta=AuditMeta(), leaf_index=42)
    assert x("kt.leaf_index", ev, record=rec) == "42"
    assert x("kt.cluster", ev, record=rec) == "prod"
    assert x("kt.key", ev, record=rec) == "k1"
    assert x("ka.cluster.name", ev, record=rec) == "prod"
    assert x("ka.cluster.name", ev, "falco", record=rec) is None
    assert x("ka.cluster.name", {**ev, "annotations": {"cluster_name": "gke-1"}}, "falco") == "gke-1"


def test_every_field_has_a_description_and_extracts_safely() -> None:
    weird: list[dict[str, Any]] = [{}, {"auditID": "a"}, {"auditID": "a", "requestObject": "x", "user": 3,
                                                          "objectRef": [], "sourceIPs": "x"},
                                   {"auditID": "a", "requestObject": {"spec": {"containers": [1, None],
                                                                              "volumes": "x"}}}]
    for name, spec in FIELDS.items():
        assert spec.desc, name
        arg = "0" if spec.arg == "index" else "a" if spec.arg in ("key", "optkey") else None
        for ev in weird:
            for ext in (spec.extract, spec.extractor("falco")):
                v = ext(EventContext(ev), arg)
                assert v is None or isinstance(v, str) or (isinstance(v, list) and v), (name, ev, v)


def test_token_claims_after_redaction() -> None:
    from kubetrail.stages.redact import redact_event

    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    token = "eyJhbGciOiJSUzI1NiJ9." + b64({"sub": "system:serviceaccount:d:s", "jti": "j1"}) + ".sig"
    ev = {"auditID": "a", "verb": "create", "objectRef": {"resource": "serviceaccounts", "subresource": "token"},
          "responseObject": {"kind": "TokenRequest", "status": {"token": token}}}
    redact_event(ev)
    assert token not in orjson.dumps(ev).decode()
    assert x("kt.token.claims[jti]", ev) == "j1"
    assert x("kt.token.claims[sub]", ev) == "system:serviceaccount:d:s"
