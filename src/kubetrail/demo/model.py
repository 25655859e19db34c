"""The building blocks of the demo log: who sends a request, and the audit Events it produces.

An ``AuditLog`` turns one API request into the Events a kube-apiserver would write for it under the
demo cluster's audit policy (``policy.POLICY_YAML``): ``RequestReceived`` is omitted by the policy,
ordinary requests give one ``ResponseComplete``, long-running ones (watch, exec, attach, log,
port-forward, proxy) give ``ResponseStarted`` and later ``ResponseComplete``, and a request that
fails authentication gives only ``ResponseStarted`` with an empty ``user``. The level chosen by the
policy decides whether ``requestObject``/``responseObject`` are kept.

Everything random comes from one seeded ``random.Random``, and times are offsets in seconds from
``T0``, so the same seed writes the same bytes (running the demo twice stores nothing new).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kubetrail.demo.policy import level_for

T0 = datetime(2026, 3, 14, 9, 0, 0, tzinfo=UTC)
DURATION_SECS = 2 * 3600.0
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
LONG_RUNNING_SUBRESOURCES = frozenset({"exec", "attach", "log", "portforward", "proxy"})


def stamp(t: float) -> str:
    """Seconds after ``T0`` as an apiserver MicroTime (``2026-03-14T09:00:00.123456Z``)."""
    return (T0 + timedelta(microseconds=round(t * 1_000_000))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339(t: float) -> str:
    """Seconds after ``T0`` as an object timestamp (whole seconds, as in metadata)."""
    return (T0 + timedelta(seconds=int(t))).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Identity:
    """An authenticated client: the ``user`` block plus where it connects from and its user agent."""

    username: str
    groups: list[str]
    ip: str
    ua: str
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)
    reason: str = ""  # authorization.k8s.io/reason for allowed requests

    def user(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username}
        if self.uid:
            out["uid"] = self.uid
        out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out

    def at(self, ip: str | None = None, ua: str | None = None) -> Identity:
        """The same credential used from another address or tool."""
        return replace(self, ip=ip or self.ip, ua=ua or self.ua)

    def with_credential(self, credential_id: str) -> Identity:
        extra = dict(self.extra)
        extra[CREDENTIAL_ID] = [credential_id]
        return replace(self, extra=extra)

    @property
    def credential_id(self) -> str:
        return (self.extra.get(CREDENTIAL_ID) or [""])[0]


def ref(resource: str, namespace: str = "", name: str = "", *, group: str = "", version: str = "v1",
        sub: str = "", uid: str = "", rv: str = "") -> dict[str, Any]:
    """An ``objectRef`` with the apiserver's field order, empty fields left out."""
    out: dict[str, Any] = {"resource": resource}
    for key, value in (("namespace", namespace), ("name", name), ("uid", uid), ("apiGroup", group),
                       ("apiVersion", version), ("resourceVersion", rv), ("subresource", sub)):
        if value:
            out[key] = value
    return out


def uri_for(objref: dict[str, Any], query: str = "") -> str:
    """The request path a client uses for ``objref`` (plus ``?query``)."""
    group = objref.get("apiGroup", "")
    parts = [f"/apis/{group}/{objref['apiVersion']}" if group else f"/api/{objref['apiVersion']}"]
    if objref.get("namespace"):
        parts.append(f"namespaces/{objref['namespace']}")
    parts.append(objref["resource"])
    if objref.get("name"):
        parts.append(objref["name"])
    if objref.get("subresource"):
        parts.append(objref["subresource"])
    path = "/".join(parts)
    return f"{path}?{query}" if query else path


_REASONS = {
    200: "", 201: "", 101: "",
    401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "AlreadyExists", 422: "Invalid",
}


class AuditLog:
    """Collects Events; each ``request`` call is one API request (one auditID)."""

    def __init__(self, rng: random.Random, end: float = DURATION_SECS) -> None:
        self.rng = rng
        self.end = end
        self.events: list[dict[str, Any]] = []
        self._rv = 4_180_000

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def rv(self) -> str:
        """The next resourceVersion, as etcd would hand them out."""
        self._rv += self.rng.randint(1, 40)
        return str(self._rv)

    def request(self, t: float, who: Identity, verb: str, objref: dict[str, Any] | None = None, *,
                uri: str = "", query: str = "", code: int = 200, req: Any = None, resp: Any = None,
                annotations: dict[str, str] | None = None, latency: float | None = None,
                duration: float | None = None, message: str = "") -> str:
        """Emit the Events of one request at time ``t``; returns its auditID.

        ``duration`` (seconds) makes the request long-running: ``ResponseStarted`` after the
        latency, ``ResponseComplete`` when the stream ends (left out when that is after the log's end,
        as for a watch still open when the log was copied).
        """
        uri = uri or uri_for(objref or {}, query)
        level = level_for(verb, objref, uri)
        if level == "None":
            return ""
        audit_id = self.uuid()
        latency = latency if latency is not None else self.rng.uniform(0.0008, 0.025)
        event: dict[str, Any] = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level, "auditID": audit_id,
            "stage": "ResponseComplete", "requestURI": uri, "verb": verb, "user": who.user(),
            "sourceIPs": [who.ip], "userAgent": who.ua,
        }
        if objref is not None:
            event["objectRef"] = dict(objref)
        event["responseStatus"] = status(code, message)
        if level in ("Request", "RequestResponse") and req is not None and objref is not None:
            event["requestObject"] = req
        if level == "RequestResponse" and resp is not None and objref is not None and code < 300:
            event["responseObject"] = resp
        event["requestReceivedTimestamp"] = stamp(t)
        event["stageTimestamp"] = stamp(t + latency)
        ann = {"authorization.k8s.io/decision": "forbid" if code == 403 else "allow",
               "authorization.k8s.io/reason": "" if code == 403 else who.reason}
        ann.update(annotations or {})
        event["annotations"] = ann
        long_running = verb == "watch" or (objref or {}).get("subresource") in LONG_RUNNING_SUBRESOURCES
        if long_running or duration is not None:
            started = dict(event, stage="ResponseStarted")
            started.pop("responseObject", None)
            self.events.append(started)
            finish = t + latency + (duration if duration is not None else self.rng.uniform(300, 560))
            if finish <= self.end:
                self.events.append(dict(event, stageTimestamp=stamp(finish)))
        else:
            self.events.append(event)
        return audit_id

    def unauthenticated(self, t: float, ip: str, ua: str, verb: str, uri: str,
                        objref: dict[str, Any] | None = None) -> str:
        """A request whose credentials were rejected: 401, ``ResponseStarted`` only, no user."""
        audit_id = self.uuid()
        event: dict[str, Any] = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level_for(verb, objref, uri),
            "auditID": audit_id, "stage": "ResponseStarted", "requestURI": uri, "verb": verb, "user": {},
            "sourceIPs": [ip], "userAgent": ua,
        }
        if objref is not None:
            event["objectRef"] = dict(objref)
        event["responseStatus"] = status(401, "Unauthorized")
        event["requestReceivedTimestamp"] = stamp(t)
        event["stageTimestamp"] = stamp(t + self.rng.uniform(0.0002, 0.002))
        self.events.append(event)
        return audit_id


def status(code: int, message: str = "") -> dict[str, Any]:
    """``responseStatus``: just the code on success, a ``Status`` for errors."""
    if code < 400:
        return {"metadata": {}, "code": code}
    out: dict[str, Any] = {"metadata": {}, "status": "Failure", "message": message or _REASONS.get(code, ""),
                           "reason": _REASONS.get(code, "")}
    out["code"] = code
    return out
