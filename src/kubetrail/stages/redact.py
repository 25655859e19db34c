"""Remove secrets from an audit event before anything is written anywhere.

Whatever the audit policy logged, these never leave this stage:

* Secret ``data``/``stringData`` values in request and response objects, in lists of Secrets, in
  patches of Secrets, and inside the ``kubectl.kubernetes.io/last-applied-configuration``
  annotation of a Secret (which repeats the data in clear: the values go, the rest of the applied
  object stays; only an annotation that is not JSON is removed whole).
* Bootstrap-token secrets (they are Secrets: same rule), with one exception: in a Secret of type
  ``bootstrap.kubernetes.io/token`` only ``token-secret`` (and any key kubetrail does not know) is
  secret. ``token-id`` is public (it is the user name ``system:bootstrap:<id>``), and ``expiration``,
  ``usage-bootstrap-*``, ``auth-extra-groups`` and ``description`` are what the credential
  inventory needs to say what the token grants and when it dies, so they are kept.
* The issued token in a TokenRequest response (``status.token``) and the token under review in a
  TokenReview (``spec.token``). The JWT's decoded claims (``jti``, ``exp``, ``iat``, ``nbf``, ``sub``,
  ``aud``, ``iss``, ``kubernetes.io``) are kept, because credential tracking needs them and they are
  not a secret: they go to the annotation ``kubetrail.dev/token-claims`` (a JSON string, as all
  audit annotations are strings).
* Whatever ``secret_text.scrub`` finds in any string anywhere else in the event (request URIs,
  ConfigMaps, env vars, annotations, dict keys …), through percent-encoding and base64: JWTs,
  private keys, ``Bearer``/``Basic``/``Authorization`` credentials, ``password=``/``token:``
  pairs (kubeconfigs and properties files in ConfigMaps, command-line flags), well-known token
  formats. Certificates are kept: the credential inventory needs them.
* Structured credentials: the string value of a key that names one (``password``, ``dbPassword``,
  ``api_key``, ``client-secret``, ``token`` …; not a domain-prefixed annotation or label key such
  as ``authentication.k8s.io/legacy-token``, which names an identity), the ``value`` of an env var whose ``name`` does
  (``DB_PASSWORD``), and the argument after a credential flag in a list (``["--token", "…"]``).
  Not inside SealedSecrets (their ``encryptedData`` is ciphertext) and ExternalSecrets and secret
  stores (their specs name references, not values): those specs are evidence and stay whole.
* Whatever shape the Secret arrives in: JSON Patch operations (every ``value``; ``op`` and ``path``
  are kept), a patch body the apiserver logged as text, ``Table`` rows (``kubectl get`` with
  ``includeObject``), lists and metadata-only lists (the last-applied annotation), and, in the deep
  pass, a Secret nested anywhere (an AdmissionReview, a ``List`` in a ``List``, a ``Template``'s
  ``objects``) or as JSON inside a string (a last-applied annotation of a ``List``): JSON in a
  string is parsed and redacted like the event itself, and written back only if something was
  removed, so a Deployment's applied spec (with its ``imagePullSecrets``) is kept as it was.

Two passes keep the common event cheap: ``redact_event(scan_jwts=False)`` handles what the
``objectRef`` and the top-level kinds reveal; ``needs_deep_scan`` looks for the byte patterns any
other secret shape must leave in the serialised event (``secret_text.has_trigger``), and only then
does the caller run the deep pass, which walks every key and value (and scrubs only the strings
that match the same trigger).

Each removal is listed as a ``Redaction`` with its JSON path and a keyed digest of the value
(HMAC-SHA256 under the deployment's redaction key, ``stages/redaction_key.py``), so an analyst can
still see that two events carried the same value, and nobody holding the store can test guesses.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any

import orjson

from kubetrail.record import Redaction
from kubetrail.stages.redaction_key import RedactionKey
from kubetrail.stages.secret_text import (
    B64_MIN,
    JWT_RE,
    REDACTED,
    b64_holds,
    flag_values,
    has_trigger,
    scrub,
    sensitive_name,
    text_has_trigger,
)

CLAIMS_ANNOTATION = "kubetrail.dev/token-claims"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_KEPT_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "kubernetes.io")
BOOTSTRAP_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_PUBLIC_KEYS = frozenset({"token-id", "expiration", "usage-bootstrap-authentication",
                                   "usage-bootstrap-signing", "auth-extra-groups", "description"})
SECRET_KINDS = ("Secret", "SecretList")
# Kinds whose specs hold references and ciphertext, not credentials: key names there are kept.
REFERENCE_KINDS = frozenset({"SealedSecret", "ExternalSecret", "ClusterExternalSecret", "SecretStore",
                             "ClusterSecretStore", "PushSecret"})
_SECRET_KIND_TEXT = re.compile(r'"kind"\s*:\s*"Secret')
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9._/:@-]{1,128}")
_MAX_NESTED_JSON = 4
_MIN_TEXT = 8  # nothing shorter holds a JWT, a key, a pair like "pw=1234" or a Secret's JSON
Where = tuple[Any, ...]  # () for the event, (parent, key) below it


def scrub_text(text: str, pairs: bool = True) -> str:
    """``text`` with every secret the text rules find replaced, and nothing recorded: for output
    rendered from stored values (alert text, a decoded URI parameter), which may have decoded what
    the store kept encoded. ``pairs=False`` for text whose author chose its ``name=`` labels."""
    if not text_has_trigger(text):
        return text
    return scrub(text, lambda _value, _what: REDACTED, pairs=pairs)


def decode_jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, without verifying it (we only describe, never trust, the token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    body = parts[1].rstrip("=")
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    return {k: claims[k] for k in _KEPT_CLAIMS if k in claims}


def _fmt(where: Where, path_key: Any) -> str:
    """A (parent, key) chain as the JSON path a Redaction names (``path_key`` shows a key)."""
    keys: list[Any] = []
    while where:
        where, key = where
        keys.append(key)
    out = ""
    for key in reversed(keys):
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out = f"{out}.{path_key(str(key))}" if out else path_key(str(key))
    return out


class _Redactor:
    def __init__(self, key: RedactionKey) -> None:
        self.key = key
        self.found: list[Redaction] = []
        self.json_depth = 0
        self._keys: dict[str, str] = {}

    def digest(self, value: Any) -> str:
        return self.key.digest(value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass"))

    def path_key(self, key: str) -> str:
        """A dict key as it may appear in a redaction path (which is stored): a key that is, or
        could hide, a credential is shown as its digest."""
        shown = self._keys.get(key)
        if shown is None:
            plain = key == REDACTED or (_SIMPLE_KEY.fullmatch(key) and not JWT_RE.search(key)
                                        and (len(key) < B64_MIN or b64_holds(key) is None))
            shown = self._keys[key] = key if plain else f"[key:{self.digest(key)}]"
        return shown

    def drop(self, path: str | Where, value: Any, what: str) -> str:
        where = path if isinstance(path, str) else _fmt(path, self.path_key)
        self.found.append(Redaction(where, self.digest(value), what))
        return REDACTED

    def secret(self, obj: Any, path: str) -> None:
        """Scrub one Secret object (or a patch of one, or a list or table of them)."""
        if isinstance(obj, list):  # JSON Patch: [{"op": "add", "path": "/data/pw", "value": …}, …]
            for i, op in enumerate(obj):
                if isinstance(op, dict) and "value" in op and op["value"] != REDACTED:
                    op["value"] = self.drop(f"{path}[{i}].value", orjson.dumps(op["value"]), "secret-data")
                elif not isinstance(op, dict):
                    obj[i] = self.drop(f"{path}[{i}]", orjson.dumps(op), "secret-data")
            return
        if not isinstance(obj, dict):
            return
        items = obj.get("items")
        if isinstance(items, list):
            for i, item in enumerate(items):
                self.secret(item, f"{path}.items[{i}]")
        rows = obj.get("rows") if obj.get("kind") == "Table" else None
        if isinstance(rows, list):
            for i, row in enumerate(rows):
                if isinstance(row, dict) and isinstance(row.get("object"), dict):
                    self.secret(row["object"], f"{path}.rows[{i}].object")
        public = BOOTSTRAP_PUBLIC_KEYS if obj.get("type") == BOOTSTRAP_TYPE else frozenset()
        for field in ("data", "stringData"):
            data = obj.get(field)
            if isinstance(data, dict):
                for k, v in data.items():
                    if v != REDACTED and k not in public:
                        data[k] = self.drop(f"{path}.{field}.{self.path_key(str(k))}", v, "secret-data")
            elif isinstance(data, str | list) and data and data != REDACTED:
                obj[field] = self.drop(f"{path}.{field}", data, "secret-data")
        meta = obj.get("metadata")
        ann = meta.get("annotations") if isinstance(meta, dict) else None
        if isinstance(ann, dict) and isinstance(ann.get(LAST_APPLIED), str) and ann[LAST_APPLIED] != REDACTED:
            ann[LAST_APPLIED] = self.applied_secret(ann[LAST_APPLIED], f"{path}.metadata.annotations.{LAST_APPLIED}")

    def applied_secret(self, text: str, path: str) -> str:
        """A Secret's last-applied annotation repeats its data: the values go, the rest stays.
        Text that is not a JSON object cannot be scrubbed value by value and goes whole."""
        try:
            applied = orjson.loads(text)
        except orjson.JSONDecodeError:
            applied = None
        if not isinstance(applied, dict):
            return self.drop(path, text, "secret-last-applied")
        before = len(self.found)
        self.secret(applied, path)
        if len(self.found) == before:
            return text
        return orjson.dumps(applied).decode() + ("\n" if text.endswith("\n") else "")

    def token(self, obj: Any, field_path: tuple[str, ...], path: str, event: dict[str, Any]) -> None:
        cur = obj
        for part in field_path[:-1]:
            cur = cur.get(part) if isinstance(cur, dict) else None
        last = field_path[-1]
        if not isinstance(cur, dict) or not isinstance(cur.get(last), str) or cur[last] == REDACTED:
            return
        token = cur[last]
        claims = decode_jwt_claims(token)
        if claims is not None:
            ann = event.get("annotations")
            if not isinstance(ann, dict):
                ann = event["annotations"] = {}
            ann[CLAIMS_ANNOTATION] = orjson.dumps(claims, option=orjson.OPT_SORT_KEYS).decode()
        cur[last] = self.drop(f"{path}.{'.'.join(field_path)}", token, "token")

    def admission(self, node: dict[str, Any], where: Where) -> None:
        """An AdmissionReview about a Secret: its objects, and the patch a webhook answered with."""
        req = node.get("request")
        res = req.get("resource") if isinstance(req, dict) else None
        if not isinstance(res, dict) or res.get("resource") != "secrets" or res.get("group"):
            return
        path = _fmt(where, self.path_key)
        for field in ("object", "oldObject"):
            self.secret(req.get(field), f"{path}.request.{field}")
        resp = node.get("response")
        if isinstance(resp, dict) and isinstance(resp.get("patch"), str) and resp["patch"] != REDACTED:
            resp["patch"] = self.drop(f"{path}.response.patch", resp["patch"], "secret-data")

    def text(self, s: str, where: Where, key: Any = "") -> str:
        """``s`` with what ``secret_text.scrub`` finds replaced. JSON in a string (an annotation, a
        patch kept as text) is parsed and redacted like the event, so the values go and the rest
        stays; it is written back only when something was removed."""
        if not text_has_trigger(s):
            return s  # nothing the text rules or a JSON Secret could be made of
        if s.lstrip()[:1] in ("{", "[") and self.json_depth < _MAX_NESTED_JSON:
            done = self.json_text(s, where)
            if done is not None:
                return done
            if key == LAST_APPLIED and "Secret" in s:  # not JSON, but could hold one: it cannot be scrubbed
                return self.drop(where, s, "secret-last-applied")
            if _SECRET_KIND_TEXT.search(s):
                return self.drop(where, s, "secret-in-json")
        return scrub(s, lambda value, what: self.drop(where, value, what))

    def json_text(self, s: str, where: Where) -> str | None:
        """``s`` parsed, redacted and serialised again if anything went; None if it is not JSON."""
        try:
            doc = orjson.loads(s)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict | list):
            return None
        before = len(self.found)
        self.json_depth += 1
        try:
            self.walk(doc, where)
        finally:
            self.json_depth -= 1
        if len(self.found) == before:
            return s
        return orjson.dumps(doc).decode() + ("\n" if s.endswith("\n") else "")

    def keys(self, node: dict[Any, Any], where: Where) -> None:
        """Rename keys that are (or hold) a credential; order is kept, clashes get a suffix."""
        new = {}
        for k in node:
            if isinstance(k, str) and len(k) >= _MIN_TEXT:
                nk = self.text(k, (where, REDACTED))
                if nk != k:
                    new[k] = nk
        if not new:
            return
        items = list(node.items())
        node.clear()
        for k, v in items:
            nk = new.get(k, k)
            n = 1
            while nk in node:
                n += 1
                nk = f"{new.get(k, k)}#{n}"
            node[nk] = v

    def fields(self, node: dict[Any, Any], where: Where) -> None:
        """Values whose key names a credential (``password``, ``dbPassword``, ``client-secret``),
        and the ``value`` of an env var whose ``name`` does."""
        for k, v in node.items():
            # Not a domain-prefixed key (an annotation or label such as
            # authentication.k8s.io/legacy-token, which names a service account): metadata, not data.
            if isinstance(v, str) and isinstance(k, str) and "/" not in k and sensitive_name(k) and _credential_value(v):
                node[k] = self.drop((where, k), v, "credential-field")
        name, value = node.get("name"), node.get("value")
        if isinstance(name, str) and isinstance(value, str) and sensitive_name(name) and _credential_value(value):
            node["value"] = self.drop((where, "value"), value, "credential-env")

    def walk(self, node: dict[Any, Any] | list[Any], where: Where, references: bool = False) -> None:
        """The deep pass: every key and value below ``node``, in place. Paths are only spelled out
        for what is removed (``where`` is a chain of (parent, key) pairs). ``references``: inside a
        SealedSecret or ExternalSecret, whose credential-named keys hold ciphertext or names."""
        if isinstance(node, dict):
            kind = node.get("kind")
            if kind in SECRET_KINDS:
                self.secret(node, _fmt(where, self.path_key))
            elif "request" in node:
                self.admission(node, where)
            references = references or (isinstance(kind, str) and kind in REFERENCE_KINDS)
            self.keys(node, where)
            if not references:
                self.fields(node, where)
            pairs: Iterable[tuple[Any, Any]] = node.items()
        else:
            for i in flag_values([v if isinstance(v, str) else "" for v in node]):
                if _credential_value(node[i]):
                    node[i] = self.drop((where, i), node[i], "credential-flag")
            pairs = enumerate(node)
        for k, v in pairs:
            if isinstance(v, str):
                if len(v) >= _MIN_TEXT:
                    node[k] = self.text(v, (where, k), k)
            elif isinstance(v, dict | list):
                self.walk(v, (where, k), references or k == "encryptedData")


def _credential_value(v: Any) -> bool:
    return isinstance(v, str) and v not in ("", REDACTED, "true", "false") and not v.startswith("$")


def _is_secret_request(event: dict[str, Any]) -> bool:
    ref = event.get("objectRef")
    return isinstance(ref, dict) and ref.get("resource") == "secrets" and not ref.get("apiGroup")


def _secret_objects(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    kind = obj.get("kind")
    if kind == "Table":
        rows = obj.get("rows")
        return isinstance(rows, list) and any(isinstance(r, dict) and _secret_objects(r.get("object"))
                                              for r in rows)
    return kind in SECRET_KINDS


def needs_deep_scan(raw: bytes) -> bool:
    """Whether the serialised event needs the deep pass (``redact_event(scan_jwts=True)``): it
    carries something shaped like a secret (``secret_text.has_trigger``) or a Secret's kind."""
    return has_trigger(raw)


contains_jwt = needs_deep_scan  # the name callers used before the deep pass covered more than JWTs


_EPHEMERAL: list[RedactionKey] = []


def process_key() -> RedactionKey:
    """The key of callers that pass none (tests, tools that write nothing): random per process,
    so its digests match nothing outside it. Everything that writes passes the store's key."""
    if not _EPHEMERAL:
        _EPHEMERAL.append(RedactionKey.ephemeral())
    return _EPHEMERAL[0]


def redact_event(event: dict[str, Any], scan_jwts: bool = True, key: RedactionKey | None = None) -> list[Redaction]:
    """Scrub ``event`` in place. ``scan_jwts=False`` skips the deep pass over every key and value,
    for callers that check the serialised event with ``needs_deep_scan`` first (the hot path).
    ``key`` keys the digests of what was removed (``redaction_key.py``)."""
    if not scan_jwts and event.get("requestObject") is None and event.get("responseObject") is None:
        # The shallow pass acts on those two objects only (a Secret, a token in a TokenRequest's or
        # TokenReview's object): without them (Metadata level, most traffic) there is nothing to do.
        return []
    r: _Redactor | None = None  # built when something is to be removed (most events: never)
    ref = event.get("objectRef") if isinstance(event.get("objectRef"), dict) else {}
    resource = ref.get("resource")
    secretish = _is_secret_request(event)
    for field in ("requestObject", "responseObject"):
        obj = event.get(field)
        if obj is None:
            continue
        if secretish and isinstance(obj, str | int | float | bool) and obj != REDACTED:
            r = r or _Redactor(key or process_key())
            event[field] = r.drop(field, obj, "secret-data")  # a patch logged as raw text
        elif secretish or _secret_objects(obj):
            r = r or _Redactor(key or process_key())
            r.secret(obj, field)
        elif isinstance(obj, dict) and isinstance(obj.get("items"), list):
            for i, item in enumerate(obj["items"]):
                if _secret_objects(item):
                    r = r or _Redactor(key or process_key())
                    r.secret(item, f"{field}.items[{i}]")
    if resource == "serviceaccounts" and ref.get("subresource") == "token":
        r = r or _Redactor(key or process_key())
        r.token(event.get("responseObject"), ("status", "token"), "responseObject", event)
    if resource == "tokenreviews":
        r = r or _Redactor(key or process_key())
        for field in ("requestObject", "responseObject"):
            r.token(event.get(field), ("spec", "token"), field, event)
    if scan_jwts:
        # Every value, the token-claims annotation included: an incoming one is just another string,
        # and a claim (``sub``, say) can itself hold a JWT.
        r = r or _Redactor(key or process_key())
        r.walk(event, ())
    return r.found if r is not None else []


def redact_text(text: str, path: str = "message", key: RedactionKey | None = None) -> tuple[str, list[Redaction]]:
    """``text`` (a log line, say) with JWTs, private keys and base64 holding either replaced, the
    same detectors as the deep pass over an event; each removal is listed under ``path``, with its
    digest under ``key`` (an ephemeral key when none is given)."""
    r = _Redactor(key or RedactionKey.ephemeral())
    out = r.text(text, ((), path)) if len(text) >= _MIN_TEXT else text
    return out, r.found
