"""How Falco turns JSON values into the strings its fields compare (reference §6 "str(x)").

A JSON string yields its unescaped text; anything else yields its compact JSON. The apiserver writes
JSON with Go's ``encoding/json``, which escapes ``<``, ``>``, ``&``, U+2028 and U+2029; Falco keeps
those bytes, so ``contains "&"`` does not match an escaped ``&``. Under ``compat: falco`` we reproduce
that escaping; kubetrail's own mode leaves the characters readable.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
               ("\u2029", "\\u2029"))


def go_escape(text: str) -> str:
    for ch, esc in _GO_ESCAPES:
        if ch in text:
            text = text.replace(ch, esc)
    return text


def compact(value: Any, go: bool = False) -> str:
    """Compact JSON text of ``value`` in its original key order."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # ints beyond 64 bits
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return go_escape(text) if go else text


def text_of(value: Any, go: bool = False) -> str:
    """Falco's str(x): strings as they are, bools/null/numbers/containers as compact JSON."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    return compact(value, go)


def indented(value: Any, go: bool = False) -> str:
    """Go ``json.Indent`` with two spaces (``jevt.obj``)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return go_escape(text) if go else text


def pointer(doc: Any, ptr: str) -> tuple[bool, Any]:
    """RFC 6901 lookup (leading ``/`` optional, ``~1`` -> ``/``, ``~0`` -> ``~``); (found, value)."""
    if ptr.startswith("/"):
        ptr = ptr[1:]
    cur = doc
    if ptr == "":
        return True, cur
    for raw in ptr.split("/"):
        seg = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, dict):
            if seg not in cur:
                return False, None
            cur = cur[seg]
        elif isinstance(cur, list):
            if not seg.isdigit() or (len(seg) > 1 and seg[0] == "0") or int(seg) >= len(cur):
                return False, None
            cur = cur[int(seg)]
        else:
            return False, None
    return True, cur
