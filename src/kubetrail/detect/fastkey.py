"""The rule index key of an event computed by one generated function (``RuleSet._key``'s fast path).

The key — four index fields (``engine.INDEX_FIELDS``), then the guard profile (``guards.py``) — is
computed for every event before any rule runs, and read field by field (``engine._index_values``,
then one reader closure per guard field, a list, a tuple, a concatenation) it cost more than the
rules it selects (~2.7 µs of ~6 µs per event on the RequestResponse benchmark). Here the same
reads are written out as one function's source, built once per ruleset from the readers'
``spec`` (each reader factory in ``guards.py`` records what it reads), and compiled with
``exec``: the same dict reads and tests in the same order, without the calls. A reader without a
``spec`` (a test's stand-in, say) is called as it is.

The function also leaves the four index fields' values in the event's field cache
(``EventContext.cache``, under the compiler's memo keys): they are exactly what those fields'
extractors give (tests/unit/speed/test_rule_index.py), and most rules read one of them first.
tests/unit/speed/test_fast_key.py compares the generated key and cache with the general path
(``_index_values`` and the readers) on fixture, generated and odd events, for every ruleset shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kubetrail.detect.guards import ADMIT, PRESENT, Reader

KeyFn = Callable[[dict[str, Any], bool, dict[str, Any]], tuple[Any, ...]]


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {"ADMIT": ADMIT, "PRESENT": PRESENT}

    def const(self, value: Any) -> str:
        name = f"C{len(self.consts)}"
        self.consts[name] = value
        return name

    def add(self, indent: int, *lines: str) -> None:
        self.lines.extend("    " * indent + line for line in lines)


def _field(src: _Source, out: str, read: Reader, indent: int) -> None:
    """Source setting ``out`` to what ``read(ev, audit)`` returns (the readers' bodies, inlined)."""
    spec = getattr(read, "spec", None)
    kind = spec[0] if spec else None
    if kind == "list":
        _, a, b, names, audit_only, lone_str, strict = spec
        body = [f"x = ev.get({src.const(a)})", f"x = x.get({src.const(b)}) if isinstance(x, dict) else None"]
        if lone_str:
            body.append("if isinstance(x, str): x = [x]")
        body.append("if not isinstance(x, list) or not x:")
        body.append(f"    {out} = None")
        if strict:
            body.append("elif not all(isinstance(e, str) for e in x):")
            body.append(f"    {out} = ADMIT")
        body.append("else:")
        if len(names) <= 8:  # unrolled: the named elements, in the reader's (sorted) order
            body.append(f"    {out} = ()")
            for c in map(src.const, names):
                body.append(f"    if {c} in x: {out} += ({c},)")
        else:
            body.append(f"    {out} = tuple([k for k in {src.const(names)} if k in x])")
        _guarded(src, out, body, audit_only, indent)
    elif kind == "str":
        _, path, known, audit_only = spec
        a, b = (tuple(path) + ("",))[:2] if len(path) <= 2 else ("", "")
        body = [f"x = ev.get({src.const(a)})"]
        if len(path) == 2:
            body.append(f"x = x.get({src.const(b)}) if isinstance(x, dict) else None")
        body.append(f"{out} = (x if x in {src.const(known)} else PRESENT) if isinstance(x, str) else None")
        _guarded(src, out, body, audit_only, indent)
    elif kind == "code":
        k = src.const(spec[1])
        _guarded(src, out, [
            "x = ev.get('responseStatus')",
            "if not isinstance(x, dict) or 'code' not in x:",
            f"    {out} = None",
            "else:",
            "    x = x['code']",
            "    if type(x) is int:",
            f"        x = str(x); {out} = x if x in {k} else PRESENT",
            "    elif not isinstance(x, str):",
            f"        {out} = ADMIT",
            "    else:",
            f"        {out} = x if x in {k} else PRESENT",
        ], True, indent)
    elif kind == "sourceip":
        k = src.const(spec[1])
        src.add(indent, "x = ev.get('sourceIPs')",
                "if isinstance(x, list) and x and isinstance(x[-1], str):",
                f"    {out} = x[-1] if x[-1] in {k} else PRESENT",
                "else:",
                f"    {out} = None")
    elif kind == "pointer":
        _, segs, known = spec
        src.add(indent, f"{out} = None", "x = ev")
        depth = indent
        for seg in segs:
            c = src.const(seg)
            src.add(depth, f"if isinstance(x, dict) and {c} in x:", f"    x = x[{c}]")
            depth += 1
        if not known:
            src.add(depth, f"{out} = PRESENT")
        else:
            k = src.const(known)
            src.add(depth, f"{out} = (x if x in {k} else PRESENT) if isinstance(x, str) else ADMIT")
    else:
        src.add(indent, f"{out} = {src.const(read)}(ev, audit)")


def _guarded(src: _Source, out: str, body: list[str], audit_only: bool, indent: int) -> None:
    if audit_only:
        src.add(indent, "if not audit:", f"    {out} = None", "else:")
        src.add(indent + 1, *body)
    else:
        src.add(indent, *body)


def build(index_known: Sequence[frozenset[str]], readers: Sequence[Reader], cache_keys: Sequence[str]) -> KeyFn:
    """``key(ev, audit, cache)``: the index values (each kept only when in ``index_known``), then
    each reader's value, as one tuple; the four raw index values are stored in ``cache`` under
    ``cache_keys`` (the index fields' memo keys)."""
    src = _Source()
    k0, k1, k2, k3 = (src.const(frozenset(k)) for k in index_known)
    c0, c1, c2, c3 = (src.const(k) for k in cache_keys)
    src.add(1, "if audit:",
            "    x = ev.get('verb'); i0 = x if isinstance(x, str) else None",
            "    r = ev.get('objectRef')",
            "    if isinstance(r, dict):",
            "        x = r.get('resource'); i1 = x if isinstance(x, str) else None",
            "        x = r.get('subresource'); i2 = x if isinstance(x, str) else None",
            "    else:",
            "        i1 = i2 = None",
            "    x = ev.get('user')",
            "    x = x.get('username') if isinstance(x, dict) else None",
            "    i3 = x if isinstance(x, str) else None",
            "else:",
            "    i0 = i1 = i2 = i3 = None",
            f"cache[{c0}] = i0; cache[{c1}] = i1; cache[{c2}] = i2; cache[{c3}] = i3")
    outs = []
    for n, read in enumerate(readers):
        out = f"v{n}"
        _field(src, out, read, 1)
        outs.append(out)
    fields = "".join(f", {o}" for o in outs)
    src.add(1, f"return (i0 if i0 in {k0} else None, i1 if i1 in {k1} else None, "
               f"i2 if i2 in {k2} else None, i3 if i3 in {k3} else None{fields})")
    text = "def key(ev, audit, cache):\n" + "\n".join(src.lines) + "\n"
    namespace: dict[str, Any] = dict(src.consts)
    exec(compile(text, "<kubetrail.detect.fastkey>", "exec"), namespace)  # noqa: S102 - our own source, from specs
    fn: KeyFn = namespace["key"]
    fn.source = text  # type: ignore[attr-defined]  # for tests and debugging
    return fn
