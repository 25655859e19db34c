"""The hostile-input generator (issue 10, "Done means"): every delivery format × hostile values in
every field, as cases a test can feed to ``ingest``, the live tailer and the webhook.

A case is one event (or envelope) with one hostile value somewhere. It carries a unique marker in
a field that is not the hostile one, so the test can tell "stored" (some stored body holds the
marker) from "rejected" (the rejects file names the case's position). Good events with markers of
their own are interleaved: every one of them must be stored.

Nothing here is data: the cases are rebuilt from these tables on every run, deterministically.
"""

from __future__ import annotations

import base64
import gzip
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from kubetrail.sources.formats import loads_lossy
from kubetrail.testing import make_event


@dataclass(frozen=True)
class Raw:
    """JSON that no Python value serialises to; substituted into the serialised line."""

    label: str
    json: bytes


def _deep(levels: int) -> Any:
    node: Any = "bottom"
    for i in range(levels):
        node = {"d": node} if i % 2 else [node]
    return node


HOSTILE_VALUES: list[tuple[str, Any]] = [
    ("int-0", 0), ("int-neg", -1), ("int-2^31", 1 << 31), ("int-2^63-1", (1 << 63) - 1), ("int-2^63", 1 << 63),
    ("int-2^64-1", (1 << 64) - 1), ("raw-int-neg-2^63-1", Raw("neg-2^63-1", str(-(1 << 63) - 1).encode())),
    ("raw-int-10^30", Raw("10^30", b"1" + b"0" * 30)),
    ("float-big", 1e308), ("float-neg-zero", -0.0), ("float-half", 0.5), ("float-tiny", 5e-324),
    ("true", True), ("false", False), ("null", None),
    ("empty", ""), ("space", " "), ("nul", "\x00"), ("controls", "\t\n\r\x1b[2J\x7f"), ("rtl", "\u202egnp.exe"),
    ("emoji", "\U0001f600" * 8), ("cjk", "\u76e3\u67fb"), ("backslash", "\\"), ("quote", '"'),
    ("sql", "'; DROP TABLE entries;--"), ("jndi", "${jndi:ldap://x/a}"), ("path", "../../../../etc/passwd"),
    ("percent", "%00%ff%2e%2e"), ("long", "x" * 20_000),
    ("time-2300", "2300-01-01T00:00:00Z"), ("time-1600", "1600-01-01T00:00:00Z"),
    ("time-zone-99", "2024-01-01T00:00:00+99:99"), ("time-zone-big", "2024-01-01T00:00:00+99999999:00"),
    ("time-feb30", "2024-02-30T00:00:00Z"), ("time-leap", "2024-12-31T23:59:60Z"),
    ("time-frac", "2024-01-01T00:00:00.1234567890123Z"), ("time-word", "yesterday"), ("time-year0", "0000-01-01T00:00:00Z"),
    ("time-2300-frac", "2300-01-01T00:00:00.5Z"), ("time-1600-frac", "1600-01-01T00:00:00.5Z"),
    ("time-superscript", "2024-01-01T00:00:00.\u00b2Z"),
    ("digits-2^64", str(1 << 64)), ("digits-huge", "9" * 40),
    ("list-empty", []), ("dict-empty", {}), ("list-mixed", [1, "a", None, {}, [True]]), ("dict-nested", {"a": {"b": [1]}}),
    ("list-wide", list(range(2000))), ("dict-wide", {f"k{i}": i for i in range(1000)}), ("deep-100", _deep(100)),
    ("raw-deep-300", Raw("deep-300", b'{"d":' * 300 + b"1" + b"}" * 300)),
    ("raw-deep-2000", Raw("deep-2000", b"[" * 2000 + b"1" + b"]" * 2000)),
    ("raw-lone-surrogate", Raw("lone-surrogate", b'"\\ud800x"')),
    ("raw-invalid-utf8", Raw("invalid-utf8", b'"\xff\xfe\xfd"')),
    ("raw-infinity", Raw("infinity", b"1" * 400)),
    ("raw-dup-keys", Raw("dup-keys", b'{"a":1,"a":{"b":2}}')),
]

EVENT_FIELDS: list[tuple[str, ...]] = [
    ("auditID",), ("verb",), ("stage",), ("level",), ("requestURI",), ("userAgent",), ("stageTimestamp",),
    ("requestReceivedTimestamp",), ("user",), ("user", "username"), ("user", "groups"), ("user", "extra"),
    ("user", "uid"), ("impersonatedUser",), ("objectRef",), ("objectRef", "name"), ("objectRef", "namespace"),
    ("objectRef", "resource"), ("objectRef", "subresource"), ("objectRef", "apiGroup"), ("responseStatus",),
    ("responseStatus", "code"), ("responseStatus", "message"), ("sourceIPs",), ("annotations",),
    ("requestObject",), ("responseObject",), ("kind",), ("apiVersion",),
]

GKE_FIELDS: list[tuple[str, ...]] = [
    ("labels",), ("timestamp",), ("receiveTimestamp",), ("insertId",), ("operation",), ("operation", "id"),
    ("resource",), ("resource", "labels"), ("protoPayload", "status"), ("protoPayload", "status", "code"),
    ("protoPayload", "methodName"), ("protoPayload", "resourceName"), ("protoPayload", "serviceName"),
    ("protoPayload", "authenticationInfo"), ("protoPayload", "authenticationInfo", "principalEmail"),
    ("protoPayload", "requestMetadata"), ("protoPayload", "requestMetadata", "callerIp"),
    ("protoPayload", "request"), ("protoPayload", "response"),
]

# Envelope formats of a single event on one line (the GKE LogEntry is its own table above).
LINE_FORMATS = ["raw", "eventlist", "array", "cri", "docker", "eks-message", "eks-subscription", "aks-string",
                "aks-object", "aks-records"]
FILE_FORMATS = [*LINE_FORMATS, "gke", "yaml", "pretty"]


@dataclass
class Case:
    marker: str
    fmt: str
    label: str  # field=value, for failure messages
    event: Any  # the (hostile) event or LogEntry, with Raw placeholders still in it
    raws: dict[str, bytes] = field(default_factory=dict)

    def json(self) -> bytes:
        """The event serialised, Raw values substituted."""
        out = orjson.dumps(self.event)
        for placeholder, raw in self.raws.items():
            out = out.replace(orjson.dumps(placeholder), raw)
        return out

    @property
    def valid_json(self) -> bool:
        """JSON kubetrail reads (nesting past orjson's limit is cut, not refused)."""
        try:
            loads_lossy(self.json())
        except orjson.JSONDecodeError:
            return False
        return True


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        child = obj.get(part)
        if not isinstance(child, dict):
            child = obj[part] = {}
        obj = child
    obj[path[-1]] = value


def _event_case(marker: str, fmt: str, path: tuple[str, ...], label: str, value: Any) -> Case:
    ev = make_event(marker, verb="create", resource="configmaps", name=f"cm-{marker}",
                    requestObject={"kind": "ConfigMap", "metadata": {"name": f"cm-{marker}"}, "data": {"k": "v"}},
                    annotations={"hostile.test/case": marker})
    if path == ("auditID",):
        ev["userAgent"] = f"agent-{marker}"  # the marker must survive the hostile value
    raws: dict[str, bytes] = {}
    if isinstance(value, Raw):
        placeholder = f"@@raw-{marker}@@"
        raws[placeholder] = value.json
        value = placeholder
    _set(ev, path, value)  # shared, never mutated: cases are only serialised
    return Case(marker, fmt, f"{'.'.join(path)}={label}", ev, raws)


def gke_entry(marker: str) -> dict[str, Any]:
    return {"insertId": marker, "timestamp": "2024-05-01T10:00:00.000000Z", "receiveTimestamp": "2024-05-01T10:00:01Z",
            "operation": {"id": marker, "producer": "k8s.io", "first": True, "last": True},
            "labels": {"authorization.k8s.io/decision": "allow"},
            "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "gke-1", "location": "europe-west1"}},
            "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "k8s.io",
                             "methodName": "io.k8s.core.v1.configmaps.create",
                             "resourceName": f"core/v1/namespaces/default/configmaps/cm-{marker}",
                             "authenticationInfo": {"principalEmail": "alice@example.com"},
                             "requestMetadata": {"callerIp": "10.0.0.1",
                                                 "callerSuppliedUserAgent": f"agent-{marker}"},
                             "status": {"code": 0},
                             "request": {"@type": "core.k8s.io/v1.ConfigMap", "kind": "ConfigMap",
                                         "metadata": {"name": f"cm-{marker}"}}}}


def _gke_case(marker: str, path: tuple[str, ...], label: str, value: Any) -> Case:
    entry = gke_entry(marker)
    raws: dict[str, bytes] = {}
    if isinstance(value, Raw):
        placeholder = f"@@raw-{marker}@@"
        raws[placeholder] = value.json
        value = placeholder
    _set(entry, path, value)
    return Case(marker, "gke", f"{'.'.join(path)}={label}", entry, raws)


def cases(copies: int = 2) -> Iterator[Case]:
    """Every (field, value) pair of the event tables in ``copies`` formats (rotating, so each
    format gets every kind of field and value), every GKE pair once, and the YAML and
    pretty-printed formats for the values YAML and a document can carry."""
    n = itertools.count()
    pairs = [(p, label, v) for p in EVENT_FIELDS for label, v in HOSTILE_VALUES]
    rotation = itertools.cycle(LINE_FORMATS)
    for path, label, value in pairs:
        for _ in range(copies):
            yield _event_case(f"case-{next(n):05d}", next(rotation), path, label, value)
    for path in GKE_FIELDS:
        for label, value in HOSTILE_VALUES:
            yield _gke_case(f"case-{next(n):05d}", path, label, value)
    for path in EVENT_FIELDS[::4]:
        for label, value in HOSTILE_VALUES:
            if isinstance(value, Raw) or label in ("long", "list-wide", "dict-wide", "deep-100", "nul", "controls"):
                continue  # YAML cannot carry raw JSON; the big ones are covered by the other formats
            yield _event_case(f"case-{next(n):05d}", "yaml", path, label, value)
    for path in EVENT_FIELDS[1::3]:
        for label, value in HOSTILE_VALUES:
            if not isinstance(value, Raw):
                yield _event_case(f"case-{next(n):05d}", "pretty", path, label, value)


def good(marker: str) -> dict[str, Any]:
    return make_event(marker, verb="get", resource="pods", name=f"p-{marker}", annotations={"hostile.test/good": marker})


def wrap(fmt: str, inner: bytes) -> bytes:
    """One line of ``fmt`` carrying the serialised event ``inner``."""
    if fmt == "raw":
        return inner
    if fmt == "eventlist":
        return b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[' + inner + b"]}"
    if fmt == "array":
        return b"[" + inner + b"]"
    if fmt == "cri":
        return b"2024-05-01T10:00:00.000000000Z stdout F " + inner
    text = inner.decode("utf-8", "surrogateescape")
    if fmt == "docker":
        if _utf8(inner):
            return orjson.dumps({"log": text + "\n", "stream": "stdout", "time": "2024-05-01T10:00:00Z"})
        return b'{"log":"' + _escape(inner) + b'\\n","stream":"stdout","time":"2024-05-01T10:00:00Z"}'
    if fmt == "eks-message":
        return b'{"id":"1","timestamp":1714557600000,"message":"' + _escape(inner) + b'"}'
    if fmt == "eks-subscription":
        doc = b'{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/c/cluster","logStream":"kube-apiserver-audit-1",' \
              b'"logEvents":[{"id":"1","timestamp":1714557600000,"message":"' + _escape(inner) + b'"}]}'
        return base64.b64encode(gzip.compress(doc))
    if fmt == "aks-string":
        return b'{"category":"kube-audit","properties":{"log":"' + _escape(inner) + b'"}}'
    if fmt == "aks-object":
        return b'{"category":"kube-audit","properties":{"log":' + inner + b"}}"
    if fmt == "aks-records":
        return b'{"records":[{"category":"kube-audit","properties":{"log":' + inner + b"}}]}"
    raise ValueError(fmt)


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _escape(raw: bytes) -> bytes:
    """``raw`` as the inside of a JSON string (what a log shipper does with a line), byte for byte:
    invalid UTF-8 stays invalid, so the envelope is as broken as the line it carries."""
    return raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")


def yaml_document(case: Case) -> str:
    return yaml.dump(case.event, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False,
                     allow_unicode=True, width=1 << 20)
