"""Pod-bound service-account tokens used away from their pod (catalog D71), with the small pod-IP and
node-IP inventory it needs, built from events the trail already has.

**Inventory.** The kubelet reports each pod's addresses in a ``pods/status`` update or patch
(``status.podIP``/``podIPs``, ``status.hostIP``/``hostIPs``) and its node's addresses in
``nodes/status`` (``status.addresses``). Both are read from the request and response objects, so
they need the ``Request`` level for those subresources (many policies keep kubelet status writes at
``Metadata`` or drop them: then the inventory stays empty). A pod's addresses are replaced when it
reports new ones and forgotten at the kubelet's final delete (a user's delete only starts the grace
period, while the pod still runs); a node keeps its newest ``MAX_NODE_IPS``
addresses. A ``hostIP`` a node reports for its pod is also taken as one of that node's addresses.

**Check.** A service-account request whose ``user.extra`` carries
``authentication.kubernetes.io/pod-name`` (a token bound to a pod; the pod's namespace is the
service account's) is compared by its trusted source IP (the last of ``sourceIPs``, the address that
connected to the apiserver) with the pod's addresses and its node's addresses
(``authentication.kubernetes.io/node-name``, else the node that reported the pod). Alerts:

* **public address** (not RFC 1918, loopback, link-local, CGNAT 100.64/10, IPv6 ULA): Critical,
  whether or not the pod's addresses are known;
* **another private address** while the pod's or node's addresses are known: Warning.

The check is quiet when neither the pod's nor the node's addresses are in the trail (the address is
unknown, not wrong), and for loopback sources (a host-network client on a control-plane node).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

import msgspec

from kubetrail.alerts.alert import Alert
from kubetrail.alerts.config import StatefulConfig
from kubetrail.detect.stateful.base import as_dict, done_ok, make_alert, objects, source_ip
from kubetrail.detect.stateful.state import StateStore

POD_NAME = "authentication.kubernetes.io/pod-name"
NODE_NAME = "authentication.kubernetes.io/node-name"
MAX_NODE_IPS = 16
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_ULA = ipaddress.ip_network("fc00::/7")


def norm_ip(text: Any) -> str:
    """The canonical form of an IP address, or '' when it is not one."""
    if isinstance(text, str):
        return _norm_ip(text)  # the same few addresses over and over: parsed once each
    try:
        return ipaddress.ip_address(str(text).strip()).compressed
    except ValueError:
        return ""


@lru_cache(maxsize=16384)
def _norm_ip(text: str) -> str:
    try:
        return ipaddress.ip_address(text.strip()).compressed
    except ValueError:
        return ""


@lru_cache(maxsize=16384)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``ip`` (a ``norm_ip`` result) parsed; cached."""
    return ipaddress.ip_address(ip)


@lru_cache(maxsize=16384)
def _is_loopback(ip: str) -> bool:
    """``_address(ip).is_loopback`` (a property computed on every call), remembered per address."""
    return _address(ip).is_loopback


@lru_cache(maxsize=16384)
def is_public(ip: str) -> bool:
    """Not private (RFC 1918), loopback, link-local, CGNAT, IPv6 ULA or otherwise reserved."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if a.is_private or a.is_loopback or a.is_link_local or a.is_multicast or a.is_unspecified or a.is_reserved:
        return False
    return not (a in _CGNAT if a.version == 4 else a in _ULA)


def _ips(status: dict[str, Any], one: str, many: str) -> list[str]:
    return _ips_of(status.get(one), status.get(many))


def _ips_of(one: Any, many: Any) -> list[str]:
    """The addresses of one field (``podIP``) and a list of ``{"ip": …}`` (``podIPs``), each once."""
    out = [norm_ip(one)] + [norm_ip(as_dict(x).get("ip")) for x in many or []]
    return list(dict.fromkeys(ip for ip in out if ip))


def _extras(event: Any) -> dict[str, Any]:
    """``user.extra`` of a parsed event ({} when it is not there)."""
    return as_dict(as_dict(as_dict(event).get("user")).get("extra"))


def _first(value: Any) -> str:
    """A ``user.extra`` entry's first value, as text ('' when there is none)."""
    return str(value[0]) if isinstance(value, list) and value else ""


FACTS = "_pod_ips"  # the record's facts for this detector (``note``), in its __dict__ beside "_event"
Facts = tuple["tuple[str, str] | None", "list[tuple[list[str], list[str], str]] | None", "list[str] | None"]
NO_FACTS: Facts = (None, None, None)


def event_facts(record: Any) -> Facts:
    """What ``observe`` reads from the parsed event, a pure function of the record: the pod-bound
    token's (pod, node) claims of a service-account request; each (pod IPs, host IPs, spec.nodeName)
    of a pod's create/update/patch that names any (an object naming none changes nothing); a node's
    reported addresses. None where it does not apply.

    When the parsed event is not at hand (a record read back from the store, as the consumers' own
    process with 3+ CPUs reads them; a preparation worker sends the facts it found with the record,
    ``EVENT_FACTS``), the few fields are decoded from the body alone (``_Body``) rather than parsing
    the whole event (a pod's create/update carries the whole pod twice: ~4x the cost); a body whose
    shape that decoding refuses is parsed whole, as before (``_facts_parsed``)."""
    m = record.meta
    pods_wanted = nodes_wanted = False
    if m.resource == "pods" and m.name and done_ok(record):
        pods_wanted = m.verb in ("create", "update", "patch") and m.subresource in ("", "status")
    elif m.resource == "nodes" and m.name and m.verb in ("create", "update", "patch") \
            and m.subresource in ("", "status") and done_ok(record):
        nodes_wanted = True
    token_wanted = m.user.startswith("system:serviceaccount:") and m.user.count(":") == 3
    if not (pods_wanted or nodes_wanted or token_wanted):
        return NO_FACTS  # most records: one shared tuple, nothing more held per record
    if token_wanted and not (pods_wanted or nodes_wanted) and "_event" not in record.__dict__ \
            and b"pod-name" not in record.body:
        return ("", ""), None, None  # orjson's output has no escaped '/': no pod-name claim in the body
    if FAST_FACTS and "_event" not in record.__dict__:
        fast = _facts_decoded(record.body, pods_wanted, nodes_wanted, token_wanted)
        if fast is not None:
            return fast
    return _facts_parsed(record, pods_wanted, nodes_wanted, token_wanted)


def _facts_parsed(record: Any, pods_wanted: bool, nodes_wanted: bool, token_wanted: bool) -> Facts:
    """``event_facts`` from the parsed event (``Record.event``)."""
    pods = nodes = token = None
    if pods_wanted:
        pods = [f for obj in objects(record) for status in (as_dict(obj.get("status")),)
                for f in ((_ips(status, "podIP", "podIPs"), _ips(status, "hostIP", "hostIPs"),
                           str(as_dict(obj.get("spec")).get("nodeName") or "")),) if f != _NOTHING_REPORTED]
    elif nodes_wanted:
        nodes = [norm_ip(as_dict(a).get("address"))
                 for o in objects(record) for a in as_dict(o.get("status")).get("addresses") or []]
    if token_wanted:
        token = _token(record)
    return token, pods, nodes


FAST_FACTS = True  # tests turn it off to compare with the parsed event every time
_NOTHING_REPORTED: tuple[list[str], list[str], str] = ([], [], "")


class _Spec(msgspec.Struct):
    nodeName: Any = None


class _Status(msgspec.Struct):
    podIP: Any = None
    podIPs: Any = None
    hostIP: Any = None
    hostIPs: Any = None
    addresses: Any = None


class _Object(msgspec.Struct):
    spec: _Spec | None = None
    status: _Status | None = None


class _User(msgspec.Struct):
    extra: Any = None


class _Body(msgspec.Struct):
    """The only fields of an event ``event_facts`` reads. A field of another shape than the parsed event's
    ``as_dict`` would make of it (an object that is a list, say) fails the decoding: parsed whole."""

    user: _User | None = None
    requestObject: _Object | None = None
    responseObject: _Object | None = None


class _Claims(msgspec.Struct):
    """``_Body`` for a request that is neither a pod's nor a node's: its objects are not read."""

    user: _User | None = None


_body_decoder = msgspec.json.Decoder(_Body)
_claims_decoder = msgspec.json.Decoder(_Claims)


def _facts_decoded(body: bytes, pods_wanted: bool, nodes_wanted: bool, token_wanted: bool) -> Facts | None:
    """``_facts_parsed`` from the few fields it reads, decoded from the body; None when the body must be
    parsed whole: a shape the decoding refuses, or a value whose text msgspec and orjson could give
    differently (an integer beyond 64 bits is a float to orjson; only strings are taken as they are)."""
    objs: list[_Object] = []
    ev: _Body | _Claims
    try:
        if pods_wanted or nodes_wanted:
            ev = whole = _body_decoder.decode(body)
            objs = [o for o in (whole.requestObject, whole.responseObject) if o is not None]
        else:
            ev = _claims_decoder.decode(body)
    except msgspec.MsgspecError:
        return None
    pods = nodes = token = None
    if pods_wanted:
        pods = []
        for o in objs:
            node = o.spec.nodeName if o.spec is not None else None
            if node is not None and not isinstance(node, str):
                return None
            st = o.status
            f = (_ips_of(st.podIP, st.podIPs), _ips_of(st.hostIP, st.hostIPs), node or "") if st is not None \
                else ([], [], node or "")
            if f != _NOTHING_REPORTED:
                pods.append(f)
    elif nodes_wanted:
        nodes = [norm_ip(as_dict(a).get("address")) for o in objs if o.status is not None
                 for a in o.status.addresses or []]
    if token_wanted:  # (a token-only record without "pod-name" in its body never gets here: ``event_facts``)
        extra = as_dict(ev.user.extra) if ev.user is not None else {}
        claims = extra.get(POD_NAME), extra.get(NODE_NAME)
        for v in claims:
            if isinstance(v, list) and v and not isinstance(v[0], str):
                return None
        token = (_first(claims[0]), _first(claims[1]))
    return token, pods, nodes


def _token(record: Any) -> tuple[str, str]:
    """The (pod-name, node-name) claims of a service-account token (user.extra), '' when absent. The
    stored body is orjson's output (no escaped '/'), so a token without the pod-name claim is known
    from the bytes when the parsed event is not at hand; when it is, three dict reads are cheaper."""
    cached = record.__dict__.get("_event")
    if cached is None and b"pod-name" not in record.body:
        return "", ""
    extra = _extras(cached if cached is not None else record.event())
    return _first(extra.get(POD_NAME)), _first(extra.get(NODE_NAME))


class PodTokenElsewhere:
    name = "pod_ips"
    rule = "K8s Pod-Bound Token Used Outside Its Pod"
    rules = ((rule, "Critical"),)

    def __init__(self, state: StateStore, config: StatefulConfig) -> None:
        self.state = state
        self.trusted = [ipaddress.ip_network(c, strict=False) for c in config.trusted_cidrs]
        self._in_trusted: dict[str, bool] = {}  # per address (a cluster has few): the networks are fixed

    def _trusted(self, ip: str) -> bool:
        hit = self._in_trusted.get(ip)
        if hit is None:
            hit = any(_address(ip) in n for n in self.trusted)
            if len(self._in_trusted) >= 16384:
                self._in_trusted.clear()
            self._in_trusted[ip] = hit
        return hit

    def note(self, record: Any) -> None:
        """At arrival, while the parsed event is at hand (the rules just read it): what ``observe``
        needs from it, kept on the record, so that a held record whose parsed event the reorder
        buffer dropped is not parsed again when released (``DetectConsumer._rules`` calls this).
        Facts a preparation worker found already (``EVENT_FACTS``, ``kubetrail.workers``) are kept:
        the writer has no parsed event and would parse the body again for them."""
        d = record.__dict__
        if FACTS not in d:
            d[FACTS] = event_facts(record)

    def observe(self, record: Any) -> list[Alert]:
        facts = record.__dict__.get(FACTS)
        if facts is None:  # not noted at arrival (read back from the store, or a direct call)
            facts = event_facts(record)
        m = record.meta
        if facts is NO_FACTS and m.resource != "pods":
            return []  # most records: neither a token, nor a pod's or node's addresses, nor a pod's final delete
        token, pods, nodes = facts
        if m.resource == "pods" and m.name and done_ok(record):
            if m.verb == "delete" and not m.subresource and m.user.startswith("system:node:"):
                # the kubelet's final delete: the containers are gone (a user's delete only starts the
                # grace period, during which the pod still runs and uses its token)
                self.state.put(self.name, f"pod\x1f{m.namespace}/{m.name}", None)
            elif pods is not None:
                self._pod_status(record, pods)
        elif nodes is not None:
            self._node_status(m.name, nodes)
        if token is not None:
            return self._check(record, token)
        return []

    def _pod_status(self, record: Any, pods: list[tuple[list[str], list[str], str]]) -> None:
        m = record.meta
        for pod_ips, host_ips, node in pods:
            if not node and m.user.startswith("system:node:"):
                node = m.user.removeprefix("system:node:")
            if pod_ips:
                self.state.put(self.name, f"pod\x1f{m.namespace}/{m.name}", {"ips": pod_ips, "node": node})
            if host_ips and node:
                self._node_status(node, host_ips)

    def _node_status(self, node: str, ips: list[str]) -> None:
        ips = [ip for ip in ips if ip]
        if not ips:
            return
        known: list[str] = list(self.state.get(self.name, f"node\x1f{node}", []))
        merged = [ip for ip in known if ip not in ips] + ips
        if merged != known:
            self.state.put(self.name, f"node\x1f{node}", merged[-MAX_NODE_IPS:])

    def _check(self, record: Any, token: tuple[str, str]) -> list[Alert]:
        pod, bound_node = token
        ip = norm_ip(source_ip(record))
        if not pod or not ip or _is_loopback(ip):
            return []
        ns = record.meta.user.split(":")[2]
        entry = self.state.get(self.name, f"pod\x1f{ns}/{pod}", {})
        node = bound_node or entry.get("node", "")
        pod_ips = entry.get("ips", [])
        node_ips = self.state.get(self.name, f"node\x1f{node}", []) if node else []
        if ip in pod_ips or ip in node_ips or self._trusted(ip):
            return []
        public = is_public(ip)
        if not public and not (pod_ips or node_ips):
            return []  # the pod's and node's addresses are not in the trail: unknown, not wrong
        m = record.meta
        known = ", ".join(pod_ips + node_ips) or "unknown"
        where = "a public address" if public else "an address that is not its pod's or node's"
        return [make_alert(self.rule, "Critical" if public else "Warning", record, m.user,
                           f"token of {m.user} bound to pod {ns}/{pod} (node {node or 'unknown'}) used from {where} "
                           f"{ip} (pod/node addresses: {known}) verb={m.verb} resource={m.resource} "
                           f"ua={m.user_agent}", ["k8s", "T1528", "T1550.001"], dedup=f"{ns}/{pod}:{ip}",
                           fields={"pod": f"{ns}/{pod}", "node": node, "source_ip": ip, "public": public,
                                   "pod_ips": pod_ips, "node_ips": node_ips,
                                   "credential_id": m.credential_id or None})]
