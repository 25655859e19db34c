"""Secrets out of log lines before anything is written (the same rule as ``redact`` for audit events).

A log line is free text, so on top of the event detectors (``redact.redact_text``: JWTs, PEM private
keys, base64 holding either) this stage knows the shapes secrets take in text:

* ``Authorization: Bearer …`` / ``Basic …`` headers (also ``authorization=`` and quoted JSON keys),
* ``password=…``, ``passwd: …``, ``token=…``, ``secret=…``, ``api_key=…``, ``access_key …`` pairs:
  the value is replaced, the key is kept so the line still reads,
* the body lines of a PEM block printed line by line (``cat key.pem`` in a container: one log line per
  line of the file): a line that is nothing but 40-76 base64 characters with both cases, as a PEM
  body line is (hex digests, being one case, are kept);
* whatever the config's ``redact.patterns`` add: each a named regular expression; the whole match
  is replaced, or only group ``secret`` when the pattern has one.

Each removal becomes a ``Redaction`` (``what`` = the detector's name, the value's keyed digest under
the deployment's redaction key, as for audit events) and is counted per detector in ``counts``, which ``stats`` shows as ``redacted_<what>``.
"""

from __future__ import annotations

import re
from collections import Counter

import msgspec

from kubetrail.record import Redaction
from kubetrail.stages.redact import REDACTED, redact_text
from kubetrail.stages.redaction_key import RedactionKey

_AUTH_HEADER = re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?\s*(?:bearer|basic|token|negotiate|digest)?\s*)"
                          r"(?P<secret>[^\s\"',;]{4,})")
_PAIR = re.compile(r"(?i)(\b(?:password|passwd|pwd|pass|token|secret|api[_-]?key|access[_-]?key|"
                   r"secret[_-]?key|client[_-]?secret|private[_-]?key|credentials?)[\"']?\s*[:=]\s*[\"']?)"
                   r"(?P<secret>[^\s\"',;&]{1,})")


_PEM_BODY_LINE = re.compile(r"\s*(?P<secret>[A-Za-z0-9+/]{40,76}={0,2})\s*")


class PatternConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    regex: str


class RedactConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``redact:`` in the config file: extra patterns for log lines (the built-in ones always run)."""

    patterns: list[PatternConfig] = []

    def problems(self) -> list[tuple[str, str]]:
        out = []
        for i, p in enumerate(self.patterns):
            try:
                re.compile(p.regex)
            except re.error as exc:
                out.append((f"patterns[{i}].regex", f"not a valid regular expression: {exc}"))
        return out


class RedactLines:
    """``__call__(text) -> (text, redactions)``; thread-safe enough for counting (a Counter per call)."""

    def __init__(self, config: RedactConfig | None = None, key: RedactionKey | None = None) -> None:
        self.key = key or RedactionKey.ephemeral()
        self.rules: list[tuple[str, re.Pattern[str]]] = [("authorization", _AUTH_HEADER), ("secret-pair", _PAIR)]
        for p in (config or RedactConfig()).patterns:
            self.rules.append((p.name, re.compile(p.regex)))
        self.counts: Counter[str] = Counter()

    def __call__(self, text: str, path: str = "message") -> tuple[str, list[Redaction]]:
        text, found = redact_text(text, path, self.key)
        body = _PEM_BODY_LINE.fullmatch(text) if 40 <= len(text) <= 90 else None
        if body is not None and not body["secret"].islower() and not body["secret"].isupper():
            found.append(Redaction(path, self._digest(body["secret"]), "pem-body-line"))
            text = text.replace(body["secret"], REDACTED)
        for name, rx in self.rules:
            if not rx.search(text):
                continue

            def drop(m: re.Match[str], name: str = name, rx: re.Pattern[str] = rx) -> str:
                if "secret" in rx.groupindex and m.group("secret") is not None:
                    value = m.group("secret")
                    if value == REDACTED:
                        return m.group(0)
                    found.append(Redaction(path, self._digest(value), name))
                    s, e = m.span("secret")
                    return m.group(0)[: s - m.start()] + REDACTED + m.group(0)[e - m.start():]
                found.append(Redaction(path, self._digest(m.group(0)), name))
                return REDACTED

            text = rx.sub(drop, text)
        for r in found:
            self.counts[r.what] += 1
        return text, found

    def _digest(self, value: str) -> str:
        return self.key.digest(value.encode("utf-8", "surrogateescape"))
