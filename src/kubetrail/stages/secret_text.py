"""What in a string is a secret: the text rules of redaction, through every encoding they come in.

``scrub(text, drop)`` replaces, inside any string, each of:

* a JWT (header with whitespace, ``=``-padded parts) and a PEM/PGP private key block;
* a credential after an HTTP auth scheme, ``Bearer …``/``Basic …`` (``Authorization`` headers in
  annotations, ``curl -H`` in exec arguments);
* the value of a ``name=value`` / ``name: value`` / ``"name": "value"`` pair whose name ends in a
  credential word (``password``, ``passwd``, ``pwd``, ``secret``, ``token``, ``api_key``,
  ``access_key``, ``private_key``, ``client_secret``, ``credentials``, ``auth``): command-line flags,
  query parameters, kubeconfig and properties files in ConfigMaps, JSON in strings;
* well-known token formats (GitHub, GitLab, Slack, AWS access key ids, Google API keys, Stripe);
* base64 that decodes to any of these (two levels deep: a kubeconfig in ``binaryData``);
* percent-encoding of any of these: a ``requestURI``'s exec ``command=`` arguments and query
  parameters are decoded (up to three times: ``%2525``), scrubbed, and encoded again, so the
  stored URI still reads ``command=curl -H "Authorization: Bearer [redacted]"`` once decoded.

``drop(value, what)`` records the removal and returns the marker. ``has_trigger`` looks for what
any of these shapes must leave in the serialised event; the deep pass runs only when it is found,
which keeps the common event cheap (see ``redact.needs_deep_scan``). Certificates are not secrets and stay.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from urllib.parse import quote, unquote_plus

from ahocorasick_rs import BytesAhoCorasick, Implementation

REDACTED = "[redacted]"
Drop = Callable[[str, str], str]

# A JWT part is base64url of a JSON object: '{' then '"' or whitespace, i.e. "ey" + [A-DI-L] or
# "ew" + [k-r0-3] (tab, newline, carriage return). Parts may carry '=' padding.
_JWT_HEAD = r"e(?:y[A-DI-L]|w[k-r0-3])"
JWT_RE = re.compile(rf"{_JWT_HEAD}[A-Za-z0-9_-]{{2,}}={{0,2}}\.{_JWT_HEAD}[A-Za-z0-9_-]{{2,}}={{0,2}}\."
                    r"[A-Za-z0-9_-]*={0,2}")
PEM_KEY_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----.*?"
                        r"(?:-----END \1PRIVATE KEY\2-----|\Z)", re.S)
# Runs of base64 (standard or url alphabet), lines of a wrapped block joined.
B64_RUN_RE = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{16,}+={0,2}(?:\r?\n[A-Za-z0-9+/_-]{4,}+={0,2})*+")
B64_MIN = 20  # base64 of "password=12345" is 20 characters

# The words that make a name a credential's name (at its end: db_password, dbPassword, X-Api-Key).
WORDS = (r"passwor[dt]|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key"
         r"|private[_-]?key|client[_-]?secret|credentials?|auth")
# Every pattern below is matched against ``lower(text)`` (ASCII lower case, same length), never
# with re.IGNORECASE: Python's re cannot skip ahead on a case-insensitive alternation and was ten
# times slower. Spans found in the lowered text are cut from the original.
CRED_WORD = re.compile(WORDS)
SENSITIVE_NAME = re.compile(rf"(?:{WORDS})$")  # a dict key, env var or flag that names a credential
CRED_FLAG = re.compile(rf"--?[a-z0-9_.-]*(?:{WORDS})")  # --token, --db-password (the next arg is its value)
# A credential word ending a name (the name's start does not matter: db_password, X-Api-Key), its
# closing quote, '=' or ':' followed by space or a quote, then a double-quoted (also escaped: JSON
# in a string), single-quoted or bare value. Anchored on the word: a leading [\w.-]*? prefix
# would be retried at every position of every string.
PAIR_RE = re.compile(
    rf"""(?:{WORDS})
    (?P<sep>\\?["']?[ \t]*(?:=|:(?=[ \t"'\\]))[ \t]*)
    (?:\\"(?P<edq>[^"\\]*)\\"|"(?P<dq>[^"\\]*(?:\\.[^"\\]*)*)"|'(?P<sq>[^'\r\n]*)'|(?P<bare>[^\s"'\\&;,{{}}\[\]]+))""",
    re.X)
_NOT_VALUES = frozenset({"true", "false", "null", "none", "yes", "no", "", REDACTED})
AUTH_RE = re.compile(r"""(?<![a-z0-9])(?:(?:bearer|basic)(?:[ \t]+|\+|%20)
                          |authorization\\?["']?[ \t]*[:=][ \t]*\\?["']?(?:[a-z]+[ \t]+)?)
                          (?P<cred>[a-z0-9._~+/=-]{8,})""", re.X)
KNOWN_TOKEN_RE = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{22,}|glpat-[\w-]{20,}"
                            r"|xox[abprs]-[\w-]{10,}|AKIA[0-9A-Z]{16}|AIza[\w-]{35}|sk_live_\w{20,})")
_PCT_RE = re.compile(r"%[0-9A-Fa-f]{2}")
_SEGMENT_RE = re.compile(r"[^&?#;\s]+")


def _b64_fragments(words: tuple[bytes, ...]) -> str:
    """The base64 characters fully determined by each word, at each of the three alignments."""
    out = set()
    for word in words:
        for shift in range(3):
            enc = base64.b64encode(b"\0" * shift + word).decode()
            out.add(enc[(shift * 8 + 5) // 6:((shift + len(word)) * 8) // 6])
    return "|".join(sorted(out))


_B64_WORDS = (b"password", b"passwd", b"PASSWORD", b"token", b"TOKEN", b"secret", b"SECRET", b"Bearer",
              b"bearer", b"api_key", b"apikey", b"api-key")

# The trigger: what any shape above leaves in the serialised event (or in one string). Matched
# with Aho-Corasick (one pass in Rust for all literals; Python's re tries an alternation of this
# many branches at every position, which cost ~200 µs per event). Case-sensitive literals: a JWT
# payload's '.ey'/'.ew', key armour (also '+'/'%20'-encoded), base64 of '-----' at any alignment
# ("LS0t") and of that ("TFMw", "UzB0", "MHRM"), base64 of a JWT ("ZX", "V3"/"V5", "leU"/"ld2"/
# "ldz"), a Secret's kind, a \u escape, known token prefixes, base64 of the credential words.
_RAW_LITERALS = [b".ey", b".ew", b"PRIVATE KEY", b"PRIVATE+KEY", b"PRIVATE%20KEY", b"PRIVATE%2520KEY", b"LS0t",
                 b"TFMw", b"UzB0", b"MHRM", b"ZX", b"V3", b"V5", b"leU", b"ld2", b"ldz", b"Secret", b"\\u",
                 b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_", b"glpat-", b"xoxa-", b"xoxb-", b"xoxp-",
                 b"xoxr-", b"xoxs-", b"AKIA", b"AIza", b"sk_live_",
                 *(f.encode() for f in _b64_fragments(_B64_WORDS).split("|"))]
# Lower-cased: a credential word ending a name, then a separator ('"' is checked further: see
# _value_follows), or an auth scheme and its blank.
_TRIGGER_WORDS = (b"password", b"passwd", b"passwort", b"passphrase", b"pwd", b"secret", b"token", b"apikey",
                  b"api_key", b"api-key", b"accesskey", b"access_key", b"access-key", b"privatekey", b"private_key",
                  b"private-key", b"credential", b"credentials", b"auth", b"authorization")
_SEPARATORS = (b"=", b":", b" =", b" :", b"%3d", b"%3a", b"%253d", b"%253a", b"&", b"'", b'"', b'\\"')
_LOWER_LITERALS = [w + sep for w in _TRIGGER_WORDS for sep in _SEPARATORS] + [
    b"bearer ", b"bearer+", b"bearer%20", b"basic ", b"basic+", b"basic%20"]
_QUOTED = frozenset(i for i, lit in enumerate(_LOWER_LITERALS) if lit.endswith(b'"'))
# One pass over the lower-cased data finds both kinds: a case-sensitive literal is searched lower-cased
# and then compared with the data at the same place (bytes.lower keeps positions), so the answer is
# that of one case-sensitive pass over the data and one over its lower-cased copy — in half the time
# (a 2.9 KB event: ~7 µs instead of ~15; the DFA is the fastest of the library's automata here).
_N_LOWER = len(_LOWER_LITERALS)
_TRIGGER_AC = BytesAhoCorasick(_LOWER_LITERALS + [lit.lower() for lit in _RAW_LITERALS],
                               implementation=Implementation.DFA)
_NOT_A_VALUE = (b"{", b"[", b"true", b"false", b"null", b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9")


def _value_follows(low: bytes, end: int) -> bool:
    """After ``name"``: a JSON key with a text value (``"password":"x"``), or a string followed by
    another (``"--token","x"``, ``"DB_PASSWORD","value":…``). Not ``"token":{…}`` or ``:true``."""
    rest = low[end:end + 160].lstrip(b' \t\\"')
    if rest.startswith(b","):  # the next item: an env var's "value" key, or a list element (a flag's value)
        nxt = rest[1:].lstrip(b' \t\\')
        if not nxt.startswith(b'"'):
            return False
        name, quote_, after = nxt[1:].partition(b'"')
        return bool(quote_) and (name.rstrip(b"\\") == b"value" or not after.lstrip(b' \t\\"').startswith(b":"))
    if not rest.startswith(b":"):
        return False
    return not rest[1:].lstrip(b' \t\\"').startswith(_NOT_A_VALUE)


def has_trigger(data: bytes) -> bool:
    """Whether ``data`` (a serialised event, or one string's UTF-8) may hold anything ``scrub`` or
    the deep pass removes. False means there is nothing to look for."""
    low = data.lower()
    for i, start, end in _TRIGGER_AC.find_matches_as_indexes(low, overlapping=True):
        if i >= _N_LOWER:  # a case-sensitive literal: there in the data itself?
            if data[start:end] == _RAW_LITERALS[i - _N_LOWER]:
                return True
        elif i not in _QUOTED or _value_follows(low, end):
            return True
    return False


def text_has_trigger(s: str) -> bool:
    """``has_trigger`` for one string; short strings (names, keys, enum values) repeat across
    events and are answered from a cache."""
    return _short_has_trigger(s) if len(s) <= 64 else has_trigger(s.encode("utf-8", "surrogatepass"))


@lru_cache(maxsize=16384)
def _short_has_trigger(s: str) -> bool:
    return has_trigger(s.encode("utf-8", "surrogatepass"))


@lru_cache(maxsize=4096)
def sensitive_name(name: str) -> bool:
    """Whether a dict key, env var or flag name ends in a credential word (``dbPassword``)."""
    return SENSITIVE_NAME.search(lower(name)) is not None


def _credential_like(text: str) -> bool:
    """A credential, not an English word: a digit or symbol, or mixed case that is not Title case."""
    if any(c.isdigit() or c in "+/=._~-" for c in text):
        return True
    return text[1:] != text[1:].lower() and text != text.upper()


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lower(s: str) -> str:
    """``s`` in lower case with every character where it was (``str.lower`` can grow some)."""
    low = s.lower()
    return low if len(low) == len(s) else s.translate(_ASCII_LOWER)


Span = tuple[int, int, str]


def _replace(s: str, regex: re.Pattern[str], pick: Callable[[re.Match[str], str], Span | None]) -> str:
    """``s`` with the spans ``pick`` returns for each match of ``regex`` in ``lower(s)`` replaced."""
    out: list[str] = []
    last = 0
    for m in regex.finditer(lower(s)):
        span = pick(m, s)
        if span is not None and span[0] >= last:
            out += [s[last:span[0]], span[2]]
            last = span[1]
    if not out:
        return s
    out.append(s[last:])
    return "".join(out)


def scrub(s: str, drop: Drop, depth: int = 0, pairs: bool = True) -> str:
    """``s`` with every secret the text rules find replaced by ``drop(value, what)``. Without
    ``pairs`` the ``name=value`` rule is left out: for text whose author chose the names (an alert
    output's ``secret=%ka.target.name`` names a Secret, it does not hold one)."""
    if ".e" in s:
        s = JWT_RE.sub(lambda m: drop(m.group(0), "jwt"), s)
    if "PRIVATE KEY" in s:
        s = PEM_KEY_RE.sub(lambda m: drop(m.group(0), "private-key"), s)
    low = lower(s)
    if "bearer" in low or "basic" in low or "authorization" in low:
        s = _replace(s, AUTH_RE, lambda m, orig: _auth(m, orig, drop))
        low = lower(s)
    if pairs and ("=" in s or ":" in s) and CRED_WORD.search(low) is not None:
        s = _replace(s, PAIR_RE, lambda m, orig: _pair(m, orig, drop))
    if pairs and "command=" in s and "-" in s:
        s = _exec_flags(s, drop)
    if "_" in s or "-" in s or "AIza" in s or "AKIA" in s:
        s = KNOWN_TOKEN_RE.sub(lambda m: drop(m.group(0), "token"), s)
    if len(s) >= B64_MIN:
        s = B64_RUN_RE.sub(lambda m: _b64(m.group(0), drop, depth), s)
    if "%" in s and depth < 3 and _PCT_RE.search(s):
        s = _SEGMENT_RE.sub(lambda m: _percent(m.group(0), drop, depth, pairs), s)
    return s


def _auth(m: re.Match[str], s: str, drop: Drop) -> Span | None:
    start, end = m.span("cred")
    cred = s[start:end]
    if not _credential_like(cred) or cred.startswith("[redacted"):
        return None
    return start, end, drop(cred, "auth-credential")


def _pair(m: re.Match[str], s: str, drop: Drop) -> Span | None:
    group = next(g for g in ("edq", "dq", "sq", "bare") if m.group(g) is not None)
    start, end = m.span(group)
    value = s[start:end]
    if value.lower() in _NOT_VALUES or value.startswith(("$", "[redacted")):
        return None
    return start, end, drop(value, "credential-pair")


def _b64(run: str, drop: Drop, depth: int) -> str:
    what = b64_holds(run) if len(run) >= B64_MIN else None
    return drop(run, f"base64-{what}") if what else run


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


def b64_holds(run: str, depth: int = 0) -> str | None:
    """What base64 ``run`` decodes to when that is a secret ("jwt", "private-key", "credential"),
    looked for two levels deep; None otherwise."""
    if run.islower() or run.isdigit():  # hex digests, UUIDs, names: base64 of a secret has capitals
        return None
    for raw in _b64_variants(run):
        text = raw.decode("latin-1")
        if "PRIVATE KEY" in text and PEM_KEY_RE.search(text):
            return "private-key"
        if JWT_RE.search(text):
            return "jwt"
        low = lower(text)
        if (("=" in text or ":" in text) and CRED_WORD.search(low) and _holds_pair(text)) \
                or (("bearer" in low or "basic" in low) and any(_credential_like(text[m.start("cred"):m.end("cred")])
                                                                for m in AUTH_RE.finditer(low))) \
                or KNOWN_TOKEN_RE.search(text):
            return "credential"
        if depth < 1:
            for m in B64_RUN_RE.finditer(text):
                if len(m.group(0)) >= B64_MIN and (what := b64_holds(m.group(0), depth + 1)):
                    return what
    return None


def _holds_pair(text: str) -> bool:
    low = lower(text)
    return any(_pair(m, text, lambda _v, _w: REDACTED) is not None for m in PAIR_RE.finditer(low))


def flag_values(args: list[str]) -> list[int]:
    """Indexes of the arguments that are the value of a credential flag before them
    (``["mysql", "--password", "hunter2"]`` → ``[2]``); ``--password=…`` is a pair (``scrub``)."""
    return [i + 1 for i, a in enumerate(args[:-1])
            if a[:1] == "-" and CRED_FLAG.fullmatch(lower(a)) and not args[i + 1].startswith("-")]


def _exec_flags(uri: str, drop: Drop) -> str:
    """An exec or attach URI's ``command=`` arguments, each a query parameter of its own: the one
    after a credential flag (``command=--token&command=abc``) is its value."""
    head, sep, query = uri.partition("?")
    if not sep:
        return uri
    params = query.split("&")
    args = [(i, unquote_plus(p[8:])) for i, p in enumerate(params) if p.startswith("command=")]
    values = [a for _, a in args]
    for j in flag_values(values):
        i, value = args[j]
        if value != REDACTED:
            params[i] = "command=" + quote(drop(value, "credential-flag"), safe="")
    return head + sep + "&".join(params)


def _percent(segment: str, drop: Drop, depth: int, pairs: bool) -> str:
    """One ``&``-separated segment of a URI or argument list, seen through percent-encoding."""
    if "%" not in segment and "+" not in segment:
        return segment
    key, eq, value = segment.partition("=")
    if not eq:
        key, value = "", segment
    decoded = value
    for _ in range(3):  # %2525 is a doubly encoded '%'
        once = unquote_plus(decoded, errors="surrogateescape")
        if once == decoded:
            break
        decoded = once
    if decoded == value:
        return segment
    clean = scrub(decoded, drop, depth + 1, pairs)
    if clean == decoded:
        return segment
    encoded = quote(clean, safe="", errors="surrogateescape")
    return f"{key}={encoded}" if eq else encoded
