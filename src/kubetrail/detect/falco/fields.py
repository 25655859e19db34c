"""ONE table of the fields a condition or an output may use: Falco's ``ka.*``, ``jevt.*``/``json.*``,
a few ``evt.*``, and kubetrail's ``kt.*`` (``ktfields``).

Extraction follows the k8saudit plugin v0.18.0 and json plugin v0.7.4 (reference §6). Where the
plugin has a bug, the spec carries two extractors: ``extract`` (kubetrail, fixed) and
``extract_falco`` (bug for bug, chosen by ``compat: falco``):

* ``ka.sourceips`` reads ``requestObject.rules[*].sourceIPs`` in Falco (always missing); kubetrail
  reads ``sourceIPs``.
* ``ka.req.pod.*.eff_run_as_user/group`` read ``runAsUser`` outside ``securityContext`` in Falco
  (so ``"0"`` on real pods); kubetrail reads the security contexts.
* ``ka.req.pod.*.image.repository`` cuts at the first ``:`` in Falco (``registry:5000/app`` ->
  ``registry``); kubetrail strips only the tag and digest.
* ``ka.req.service.ports`` is one element (the whole array) in Falco and ignores its index;
  kubetrail yields one element per port.
* JSON-valued fields use Go's ``<>&`` escaping only under ``compat: falco`` (see ``jsonval``).
* ``ka.cluster.name`` falls back to the record's cluster in kubetrail mode.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubetrail.detect.falco import jsonval
from kubetrail.detect.falco.context import MISSING, EventContext, Extracted, FieldSpec, get
from kubetrail.detect.falco.ktfields import KT_FIELDS
from kubetrail.stages.redact import scrub_text

FIELDS: dict[str, FieldSpec] = {}
_HOSTNAME = socket.gethostname()


def _add(spec: FieldSpec) -> None:
    FIELDS[spec.name] = spec


def _str_at(*path: str) -> Callable[[EventContext, str | None], Extracted]:
    """A ka.* string field at ``path`` (non-strings are missing)."""

    def ext(c: EventContext, _arg: str | None) -> Extracted:
        if not c.audit:
            return None
        v = get(c.ev, *path)
        return v if isinstance(v, str) else None

    return ext


def _text_at(*path: str) -> Callable[[EventContext, str | None], Extracted]:
    """A ka.* field rendered with str(x) (numbers, bools, JSON)."""

    def ext(c: EventContext, _arg: str | None) -> Extracted:
        if not c.audit:
            return None
        v = get(c.ev, *path)
        return None if v is MISSING else jsonval.text_of(v)

    return ext


def _ann(key: str) -> Callable[[EventContext, str | None], Extracted]:
    return _str_at("annotations", key)


for _name, _fn, _desc in (
    ("ka.auditid", _str_at("auditID"), "the audit event id"),
    ("ka.stage", _str_at("stage"), "the audit stage"),
    ("ka.auth.decision", _ann("authorization.k8s.io/decision"), "authorization decision (allow/forbid)"),
    ("ka.auth.reason", _ann("authorization.k8s.io/reason"), "authorization reason"),
    ("ka.auth.openshift.decision", _ann("authentication.openshift.io/decision"), "OpenShift decision"),
    ("ka.auth.openshift.username", _ann("authentication.openshift.io/username"), "OpenShift username"),
    ("ka.validations.admission.policy.failure",
     _ann("validation.policy.admission.k8s.io/validation_failure"), "VAP validation failure"),
    ("ka.security.pod.violations", _ann("pod-security.kubernetes.io/audit-violations"), "PSA violations"),
    ("ka.user.name", _str_at("user", "username"), "the user name"),
    ("ka.impuser.name", _str_at("impersonatedUser", "username"), "the impersonated user name"),
    ("ka.verb", _str_at("verb"), "the action"),
    ("ka.uri", _str_at("requestURI"), "the request URI"),
    ("ka.useragent", _str_at("userAgent"), "the user agent"),
    ("ka.target.name", _str_at("objectRef", "name"), "target object name"),
    ("ka.target.namespace", _str_at("objectRef", "namespace"), "target object namespace"),
    ("ka.target.resource", _str_at("objectRef", "resource"), "target object resource"),
    ("ka.target.subresource", _str_at("objectRef", "subresource"), "target object subresource"),
    ("ka.resp.name", _str_at("responseObject", "metadata", "name"), "response object name"),
    ("ka.response.code", _text_at("responseStatus", "code"), "HTTP response code"),
    ("ka.response.reason", _str_at("responseStatus", "reason"), "response reason"),
    ("ka.req.configmap.name", _str_at("objectRef", "name"), "configmap name (from objectRef)"),
    ("ka.req.binding.role", _str_at("requestObject", "roleRef", "name"), "roleRef name of a binding"),
    ("ka.req.service.type", _str_at("requestObject", "spec", "type"), "service type"),
    ("ka.req.pod.host_ipc", _text_at("requestObject", "spec", "hostIPC"), "spec.hostIPC"),
    ("ka.req.pod.host_network", _text_at("requestObject", "spec", "hostNetwork"), "spec.hostNetwork"),
    ("ka.req.container.host_network", _text_at("requestObject", "spec", "hostNetwork"),
     "deprecated alias of ka.req.pod.host_network"),
    ("ka.req.pod.host_pid", _text_at("requestObject", "spec", "hostPID"), "spec.hostPID"),
    ("ka.req.pod.run_as_user", _text_at("requestObject", "spec", "securityContext", "runAsUser"),
     "pod runAsUser"),
    ("ka.req.pod.run_as_group", _text_at("requestObject", "spec", "securityContext", "runAsGroup"),
     "pod runAsGroup"),
    ("ka.req.pod.fs_group", _text_at("requestObject", "spec", "securityContext", "fsGroup"), "pod fsGroup"),
):
    _add(FieldSpec(_name, _desc, _fn))


def _cluster(c: EventContext, _arg: str | None, falco: bool) -> Extracted:
    if not c.audit:
        return None
    v = get(c.ev, "annotations", "cluster_name")
    if isinstance(v, str):
        return v
    if not falco and c.record is not None and getattr(c.record.source, "cluster", ""):
        return str(c.record.source.cluster)
    return None


_add(FieldSpec("ka.cluster.name", "cluster name (annotations.cluster_name, else the record's cluster)",
               partial(_cluster, falco=False), extract_falco=partial(_cluster, falco=True)))


def _target_pod_name(c: EventContext, _arg: str | None) -> Extracted:
    if not c.audit or get(c.ev, "objectRef", "resource") != "pods" or get(c.ev, "objectRef", "subresource") not in (
            MISSING, "", None):
        return None
    v = get(c.ev, "responseObject", "metadata", "name")
    return v if isinstance(v, str) else None


def _uri_param(c: EventContext, arg: str | None) -> Extracted:
    uri = c.ev.get("requestURI") if c.audit else None
    if not isinstance(uri, str) or arg is None:
        return None
    query = urlsplit(uri).query
    if ";" in query:  # Go's ParseQuery rejects ';' separators
        return None
    vals = parse_qs(query, keep_blank_values=True).get(arg)
    return scrub_text(vals[0]) if vals else None  # decoded: what redaction finds goes again


def _str_list(v: Any) -> list[str] | None:
    if not isinstance(v, list) or not v:
        return None
    return [jsonval.text_of(x) for x in v]


def _groups(c: EventContext, _arg: str | None) -> Extracted:
    return _str_list(get(c.ev, "user", "groups")) if c.audit else None


def _sourceips(c: EventContext, arg: str | None, falco: bool) -> Extracted:
    if not c.audit:
        return None
    if falco:  # upstream reads requestObject.rules[*].sourceIPs (plugins#236)
        rules = get(c.ev, "requestObject", "rules")
        vals = [ip for r in rules if isinstance(r, dict) for ip in (r.get("sourceIPs") or [])] \
            if isinstance(rules, list) else []
    else:
        vals = c.ev.get("sourceIPs") or []
        vals = vals if isinstance(vals, list) else []
    if arg is not None:
        i = int(arg)
        vals = vals[i : i + 1]
    return [jsonval.text_of(v) for v in vals] or None


_add(FieldSpec("ka.target.pod.name", "pod name from the response (pod requests only)", _target_pod_name))
_add(FieldSpec("ka.uri.param", "first value of a query parameter of the request URI", _uri_param, arg="key"))
_add(FieldSpec("ka.user.groups", "the user's groups", _groups, is_list=True))
_add(FieldSpec("ka.sourceips", "source IPs (Falco reads the wrong path; see compat)",
               partial(_sourceips, falco=False), is_list=True, arg="index",
               extract_falco=partial(_sourceips, falco=True)))


# --- request objects: bindings, roles, configmaps, services ---------------------------------------

def _req(c: EventContext, *path: str) -> Any:
    return get(c.ev, "requestObject", *path) if c.audit else MISSING


def _subjects(c: EventContext, arg: str | None, kind: str | None, go: bool) -> Extracted:
    subs = _req(c, "subjects")
    if not isinstance(subs, list):
        return None
    out: list[str] = []
    for s in subs:
        if kind is None:
            out.append(jsonval.text_of(s, go))
        elif isinstance(s, dict) and s.get("kind") == kind:
            if kind == "ServiceAccount" and arg == "ns":
                if isinstance(s.get("namespace"), str) and s["namespace"]:
                    out.append(f"{s['namespace']}:{s.get('name', '')}")
            elif isinstance(s.get("name"), str):
                out.append(s["name"])
    return out or None


def _both(fn: Callable[..., Extracted], **kw: Any) -> dict[str, Any]:
    return {"extract": partial(fn, go=False, **kw), "extract_falco": partial(fn, go=True, **kw)}


_add(FieldSpec("ka.req.binding.subjects", "binding subjects as JSON", is_list=True,
               **_both(lambda c, a, go: _subjects(c, a, None, go))))
for _suffix, _kind in (("user_names", "User"), ("group_names", "Group"),
                       ("serviceaccount_names", "ServiceAccount")):
    _add(FieldSpec(f"ka.req.binding.subjects.{_suffix}", f"names of {_kind} subjects", is_list=True,
                   extract=partial(lambda c, a, k: _subjects(c, None, k, False), k=_kind)))
_add(FieldSpec("ka.req.binding.subjects.serviceaccount_ns_names", "namespace:name of ServiceAccount subjects",
               lambda c, a: _subjects(c, "ns", "ServiceAccount", False), is_list=True))
_add(FieldSpec("ka.req.binding.subject.has_name", "deprecated; always true", lambda c, a: "true" if c.audit else None,
               arg="key", deprecated=True))


def _configmap_obj(c: EventContext, _arg: str | None, go: bool) -> Extracted:
    v = _req(c, "data")
    return None if v is MISSING else jsonval.text_of(v, go)


_add(FieldSpec("ka.req.configmap.obj", "configmap data as JSON", **_both(_configmap_obj)))


def _rules(c: EventContext, arg: str | None, key: str | None, go: bool) -> Extracted:
    rules = _req(c, "rules")
    if not isinstance(rules, list):
        return None
    if key is None:
        return [jsonval.text_of(r, go) for r in rules] or None
    if arg is not None:
        i = int(arg)
        rules = rules[i : i + 1]
    out = [jsonval.text_of(x, go) for r in rules if isinstance(r, dict) and isinstance(r.get(key), list)
           for x in r[key]]
    return out or None


_add(FieldSpec("ka.req.role.rules", "role rules as JSON", is_list=True, **_both(_rules, key=None)))
for _key in ("apiGroups", "nonResourceURLs", "resources", "verbs"):
    _add(FieldSpec(f"ka.req.role.rules.{_key}", f"{_key} of the role rules", is_list=True, arg="index",
                   **_both(_rules, key=_key)))


def _ports(c: EventContext, arg: str | None, falco: bool, go: bool = False) -> Extracted:
    ports = _req(c, "spec", "ports")
    if ports is MISSING:
        return None
    if falco:
        return [jsonval.text_of(ports, True)]
    if not isinstance(ports, list):
        return None
    if arg is not None:
        ports = ports[int(arg) : int(arg) + 1]
    return [jsonval.text_of(p, go) for p in ports] or None


_add(FieldSpec("ka.req.service.ports", "service ports as JSON", partial(_ports, falco=False), is_list=True,
               arg="index", extract_falco=partial(_ports, falco=True)))

from kubetrail.detect.falco import podfields  # noqa: E402  (pod fields register into FIELDS)

podfields.register(_add)


# --- json plugin and generic evt.* ---------------------------------------------------------------

def _jvalue(c: EventContext, arg: str | None, go: bool) -> Extracted:
    found, v = jsonval.pointer(c.ev, arg or "")
    return jsonval.text_of(v, go) if found else None


def _jobj(c: EventContext, _arg: str | None, go: bool) -> Extracted:
    return jsonval.indented(c.ev, go)


def _rawtime(c: EventContext, _arg: str | None) -> Extracted:
    t = c.time_ns
    return None if t is None else str(t)


for _prefix in ("jevt", "json"):
    _add(FieldSpec(f"{_prefix}.value", "value at a JSON pointer", arg="key", **_both(_jvalue)))
    _add(FieldSpec(f"{_prefix}.obj", "the whole event as indented JSON", **_both(_jobj)))
    _add(FieldSpec(f"{_prefix}.rawtime", "event time in ns", _rawtime))


def _evt_time(c: EventContext, _arg: str | None, fmt: str) -> Extracted:
    t = c.time_ns
    if t is None:
        return None
    secs, ns = divmod(t, 1_000_000_000)
    if fmt == "time":
        return time.strftime("%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}"
    if fmt == "iso":
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"
    if fmt == "date":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs)) + f".{ns:09d}"
    return str(t)


_add(FieldSpec("evt.time", "event time HH:MM:SS.ns (UTC)", partial(_evt_time, fmt="time")))
_add(FieldSpec("evt.time.iso8601", "event time in ISO 8601", partial(_evt_time, fmt="iso")))
_add(FieldSpec("evt.datetime", "event date and time", partial(_evt_time, fmt="date")))
_add(FieldSpec("evt.rawtime", "event time in ns", partial(_evt_time, fmt="raw")))
_add(FieldSpec("evt.source", "event source", lambda c, a: "k8s_audit"))
_add(FieldSpec("evt.pluginname", "plugin name", lambda c, a: "k8saudit"))
_add(FieldSpec("evt.hostname", "host name", lambda c, a: _HOSTNAME))

for _spec in KT_FIELDS:
    _add(_spec)
