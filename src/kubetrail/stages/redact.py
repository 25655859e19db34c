"""Remove secrets from an audit event before anything is written anywhere.

Whatever the audit policy logged, these never leave this stage:

* Secret ``data``/``stringData`` values in request and response objects, in lists of Secrets, in
  patches of Secrets, and in the ``kubectl.kubernetes.io/last-applied-configuration`` annotation
  of a Secret (which repeats the data in clear).
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
* Any JWT-shaped string and any PEM (or PGP) private key block anywhere else in the event (request
  URIs, ConfigMaps, env vars, dict keys …): JWTs whose header has whitespace (``eyA…``, ``ewo…``)
  or ``=`` padding, and base64 that decodes to a JWT or a private key (kubeconfig
  ``client-key-data``, ``ZXlK…``). Certificates are kept: the credential inventory needs them.
* Whatever shape the Secret arrives in: JSON Patch operations (every ``value``; ``op`` and ``path``
  are kept), a patch body the apiserver logged as text, ``Table`` rows (``kubectl get`` with
  ``includeObject``), lists and metadata-only lists (the last-applied annotation), and, in the deep
  pass, a Secret nested anywhere (an AdmissionReview, a ``List`` in a ``List``, a ``Template``'s
  ``objects``) or as JSON inside a string (a last-applied annotation of a ``List``).

Two passes keep the common event cheap: ``redact_event(scan_jwts=False)`` handles what the
``objectRef`` and the top-level kinds reveal; ``needs_deep_scan`` looks for the byte patterns any
other secret shape must leave in the serialised event, and only then does the caller run the deep
pass, which walks every key and value.

Each removal is listed as a ``Redaction`` with its JSON path and a 12-hex-digit SHA-256 prefix, so
an analyst can still see that two events carried the same value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

import orjson

from kubetrail.record import Redaction

REDACTED = "[redacted]"
CLAIMS_ANNOTATION = "kubetrail.dev/token-claims"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_KEPT_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "kubernetes.io")
BOOTSTRAP_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_PUBLIC_KEYS = frozenset({"token-id", "expiration", "usage-bootstrap-authentication",
                                   "usage-bootstrap-signing", "auth-extra-groups", "description"})
SECRET_KINDS = ("Secret", "SecretList")
# A JWT part is base64url of a JSON object: '{' then '"' or whitespace, i.e. "ey" + [A-DI-L] or
# "ew" + [k-r0-3] (tab, newline, carriage return). Parts may carry '=' padding.
_JWT_HEAD = r"e(?:y[A-DI-L]|w[k-r0-3])"
JWT_RE = re.compile(rf"{_JWT_HEAD}[A-Za-z0-9_-]{{2,}}={{0,2}}\.{_JWT_HEAD}[A-Za-z0-9_-]{{2,}}={{0,2}}\."
                    r"[A-Za-z0-9_-]*={0,2}")
PEM_KEY_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----.*?"
                        r"(?:-----END \1PRIVATE KEY\2-----|\Z)", re.S)
# Runs of base64 (standard or url alphabet), lines of a wrapped block joined.
_B64_RUN_RE = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}(?:\r?\n[A-Za-z0-9+/_-]{4,}={0,2})*")
_B64_MIN = 32
_SECRET_KIND_TEXT = re.compile(r'"kind"\s*:\s*"Secret')
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9._/:@-]{1,128}")
# What any secret shape the cheap pass cannot see leaves in the serialised event: the '.ey'/'.ew'
# before a JWT payload, a private key's armour, base64 of '-----' (any alignment holds "LS0t"),
# base64 of that (a kubeconfig file in binaryData: "TFMw", "UzB0", "MHRM" by alignment), base64
# of a JWT at each of the three alignments ("ZX…", "…V5…"/"…V3…", "…leU…"/"…ld2…"/"…ldz…"), a
# Secret's kind (also inside an escaped JSON string) and \u escapes that could spell one.
_DEEP_SCAN_RE = re.compile(rb"\.e[wy]|PRIVATE KEY|LS0t|Secret|\\\\u|ZX|V[35]|leU|ld[2z]|TFMw|UzB0|MHRM")
_MAX_NESTED_JSON = 4
_MIN_TEXT = 12  # nothing shorter can hold a JWT, a key, base64 of either or a Secret's JSON
Where = tuple[Any, ...]  # () for the event, (parent, key) below it


def _digest(value: Any) -> str:
    raw = value if isinstance(value, bytes) else str(value).encode()
    return hashlib.sha256(raw).hexdigest()[:12]


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


def _b64_variants(run: str) -> Iterator[bytes]:
    """The bytes ``run`` decodes to, read from each of its first four characters (a run can start
    with characters that belong to something else, such as a URL path)."""
    text = run.replace("\r", "").replace("\n", "").rstrip("=").replace("-", "+").replace("_", "/")
    for offset in range(4):
        part = text[offset:]
        part = part[: len(part) - len(part) % 4] if len(part) % 4 == 1 else part
        if len(part) < 16:
            return
        try:
            yield binascii.a2b_base64(part + "=" * (-len(part) % 4))
        except binascii.Error:
            continue


def _b64_holds(run: str, depth: int = 0) -> str | None:
    """"jwt" or "private-key" when base64 ``run`` decodes to one (looked for two levels deep)."""
    if run.islower():  # hex digests, UUIDs, names: base64 of a key or a JWT has capitals
        return None
    for raw in _b64_variants(run):
        text = raw.decode("latin-1")
        if "PRIVATE KEY" in text and PEM_KEY_RE.search(text):
            return "private-key"
        if JWT_RE.search(text):
            return "jwt"
        if depth < 1:
            for m in _B64_RUN_RE.finditer(text):
                if len(m.group(0)) >= _B64_MIN and (what := _b64_holds(m.group(0), depth + 1)):
                    return what
    return None


def _json_has_secret(text: str, depth: int = 0) -> bool:
    """Whether ``text`` is JSON holding a Secret anywhere (also in JSON strings inside it)."""
    try:
        root = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _SECRET_KIND_TEXT.search(text) is not None
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("kind") in SECRET_KINDS:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif (isinstance(node, str) and depth < _MAX_NESTED_JSON and node.lstrip()[:1] in ("{", "[")
              and ("Secret" in node or "\\u" in node) and _json_has_secret(node, depth + 1)):
            return True
    return False


@lru_cache(maxsize=4096)
def _path_key(key: str) -> str:
    """A dict key as it may appear in a redaction path (which is stored): a key that is, or could
    hide, a credential is shown as its hash."""
    if key == REDACTED or (_SIMPLE_KEY.fullmatch(key) and not JWT_RE.search(key)
                           and (len(key) < _B64_MIN or _b64_holds(key) is None)):
        return key
    return f"[key:{_digest(key)}]"


def _fmt(where: Where) -> str:
    """A (parent, key) chain as the JSON path a Redaction names."""
    keys: list[Any] = []
    while where:
        where, key = where
        keys.append(key)
    out = ""
    for key in reversed(keys):
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out = f"{out}.{_path_key(str(key))}" if out else _path_key(str(key))
    return out


class _Redactor:
    def __init__(self) -> None:
        self.found: list[Redaction] = []

    def drop(self, path: str | Where, value: Any, what: str) -> str:
        self.found.append(Redaction(path if isinstance(path, str) else _fmt(path), _digest(value), what))
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
                        data[k] = self.drop(f"{path}.{field}.{_path_key(str(k))}", v, "secret-data")
            elif isinstance(data, str | list) and data and data != REDACTED:
                obj[field] = self.drop(f"{path}.{field}", data, "secret-data")
        meta = obj.get("metadata")
        ann = meta.get("annotations") if isinstance(meta, dict) else None
        if isinstance(ann, dict) and isinstance(ann.get(LAST_APPLIED), str) and ann[LAST_APPLIED] != REDACTED:
            ann[LAST_APPLIED] = self.drop(f"{path}.metadata.annotations.{LAST_APPLIED}", ann[LAST_APPLIED],
                                          "secret-last-applied")

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
        path = _fmt(where)
        for field in ("object", "oldObject"):
            self.secret(req.get(field), f"{path}.request.{field}")
        resp = node.get("response")
        if isinstance(resp, dict) and isinstance(resp.get("patch"), str) and resp["patch"] != REDACTED:
            resp["patch"] = self.drop(f"{path}.response.patch", resp["patch"], "secret-data")

    def text(self, s: str, where: Where, key: Any = "") -> str:
        """``s`` with JWTs, private keys and base64 holding either replaced; a JSON string holding a
        Secret (a last-applied annotation of a List, say) is dropped whole."""
        if ".e" in s:
            s = JWT_RE.sub(lambda m: self.drop(where, m.group(0), "jwt"), s)
        if "PRIVATE KEY" in s:
            s = PEM_KEY_RE.sub(lambda m: self.drop(where, m.group(0), "private-key"), s)
        if len(s) >= _B64_MIN:
            s = _B64_RUN_RE.sub(lambda m: self._b64(m.group(0), where), s)
        if ("Secret" in s or "\\u" in s) and s.lstrip()[:1] in ("{", "[") and _json_has_secret(s):
            return self.drop(where, s, "secret-last-applied" if key == LAST_APPLIED else "secret-in-json")
        if key == LAST_APPLIED and "Secret" in s and s != REDACTED:  # not JSON, but could be one
            return self.drop(where, s, "secret-last-applied")
        return s

    def _b64(self, run: str, where: Where) -> str:
        what = _b64_holds(run) if len(run) >= _B64_MIN else None
        return self.drop(where, run, f"base64-{what}") if what else run

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

    def walk(self, node: dict[Any, Any] | list[Any], where: Where) -> None:
        """The deep pass: every key and value below ``node``, in place. Paths are only spelled out
        for what is removed (``where`` is a chain of (parent, key) pairs)."""
        if isinstance(node, dict):
            if node.get("kind") in SECRET_KINDS:
                self.secret(node, _fmt(where))
            elif "request" in node:
                self.admission(node, where)
            self.keys(node, where)
            pairs: Iterable[tuple[Any, Any]] = node.items()
        else:
            pairs = enumerate(node)
        for k, v in pairs:
            if isinstance(v, str):
                if len(v) >= _MIN_TEXT:
                    node[k] = self.text(v, (where, k), k)
            elif isinstance(v, dict | list):
                self.walk(v, (where, k))


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
    carries something shaped like a JWT, a private key, base64 of either, or a Secret's kind."""
    return _DEEP_SCAN_RE.search(raw) is not None


contains_jwt = needs_deep_scan  # the name callers used before the deep pass covered more than JWTs


def redact_event(event: dict[str, Any], scan_jwts: bool = True) -> list[Redaction]:
    """Scrub ``event`` in place. ``scan_jwts=False`` skips the deep pass over every key and value,
    for callers that check the serialised event with ``needs_deep_scan`` first (the hot path)."""
    r = _Redactor()
    ref = event.get("objectRef") if isinstance(event.get("objectRef"), dict) else {}
    resource = ref.get("resource")
    secretish = _is_secret_request(event)
    for field in ("requestObject", "responseObject"):
        obj = event.get(field)
        if obj is None:
            continue
        if secretish and isinstance(obj, str | int | float | bool) and obj != REDACTED:
            event[field] = r.drop(field, obj, "secret-data")  # a patch logged as raw text
        elif secretish or _secret_objects(obj):
            r.secret(obj, field)
        elif isinstance(obj, dict) and isinstance(obj.get("items"), list):
            for i, item in enumerate(obj["items"]):
                if _secret_objects(item):
                    r.secret(item, f"{field}.items[{i}]")
    if resource == "serviceaccounts" and ref.get("subresource") == "token":
        r.token(event.get("responseObject"), ("status", "token"), "responseObject", event)
    if resource == "tokenreviews":
        for field in ("requestObject", "responseObject"):
            r.token(event.get(field), ("spec", "token"), field, event)
    if scan_jwts:
        # Every value, the token-claims annotation included: an incoming one is just another string,
        # and a claim (``sub``, say) can itself hold a JWT.
        r.walk(event, ())
    return r.found
