"""Compile a resolved condition tree into one Python closure ``(EventContext) -> bool``.

Everything that can be decided at load time is: the field's extractor (compat variant included) and
its argument are bound, list values become frozensets, globs and regexes are compiled, and type
errors (unknown field, bad argument, ``bcontains`` on a string, a list field with ``<``) are raised
as ``CompileError``. At run time each ``Check`` is one extractor call and one comparison.

Semantics (libsinsp): a missing value makes every comparison false, ``!=`` included; ``not`` just
negates. List fields: ``in`` = every element in the set, ``intersects`` = some element,
``exists`` = at least one element. Other operators on list fields are a load error in Falco; we
accept them with a warning and test *some element* (old engine-v4 rules use ``contains`` on lists).
``<``/``>`` on string fields compare text (``strcmp``) under ``compat: falco`` — so "99" >= "400" —
and numbers in kubetrail mode.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from typing import Any

from kubetrail.detect.falco import ast
from kubetrail.detect.falco.context import MISSING, EventContext, Extracted, check_index
from kubetrail.detect.falco.fields import FIELDS
from kubetrail.stages.redact import scrub_text

Pred = Callable[[EventContext], bool]
Getter = Callable[[EventContext], Extracted]

_NA_OPS = {"=", "==", "!=", "in", "intersects", "pmatch"}
_PERL_RE = re.compile(r"\\[dDwWsSbB]|\(\?")


class CompileError(Exception):
    def __init__(self, message: str, pos: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def glob_regex(pattern: str, casefold: bool = False) -> re.Pattern[str]:
    """POSIX ``fnmatch(pattern, s, 0)``: ``*`` also matches ``/``; ``\\x`` escapes; ``[!…]`` negates."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append("\\[")
            else:
                body = pattern[i + 1 : j]
                neg = body[:1] in ("!", "^")
                body = body[1:] if neg else body
                body = body.replace("\\", "\\\\").replace("^", "\\^")
                out.append(f"[{'^' if neg else ''}{body}]")
                i = j
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if casefold else 0))


def _pmatch_set(items: tuple[str, ...]) -> Callable[[str], bool]:
    prefixes = [[p for p in item.split("/") if p] for item in items]
    globbed = [[glob_regex(p) if any(ch in p for ch in "*?[") else p for p in comps] for comps in prefixes]

    def match(v: str) -> bool:
        comps = [p for p in v.split("/") if p]
        for pre in globbed:
            if len(pre) <= len(comps) and all(
                    (c == p if isinstance(p, str) else p.fullmatch(c) is not None) for p, c in zip(pre, comps,
                                                                                                   strict=False)):
                return True
        return False

    return match


def _number(text: str) -> float | None:
    try:
        return float(int(text, 16)) if text[:2] in ("0x", "0X") else float(text)
    except ValueError:
        return None


class Compiler:
    """Compiles conditions and operands for one ``compat`` mode; collects warnings."""

    def __init__(self, compat: str = "kubetrail", shared: dict[int, str] | None = None) -> None:
        self.compat = compat
        self.warnings: list[str] = []
        self.shared = shared or {}  # id(macro tree) -> per-event memo key (see loader._Resolver)

    # -- operands ------------------------------------------------------------------------------
    def operand(self, op: ast.Operand) -> tuple[Getter, bool, bool]:
        """(getter, is_list, is_numeric) for a field or transformer."""
        if isinstance(op, ast.FieldRef):
            return self.field(op)
        inner, is_list, _ = self.operand(op.args[0])
        name = op.name
        if name == "val":
            return inner, is_list, False
        if name == "len":
            return (lambda c: (lambda v: None if v is None else str(len(v)))(inner(c))), False, True
        fn: Callable[[str], str | None]
        if name == "tolower":
            fn = str.lower
        elif name == "toupper":
            fn = str.upper
        elif name == "basename":
            fn = lambda s: os.path.basename(s) if "/" in s else s  # noqa: E731
        else:  # b64
            def fn(s: str) -> str | None:
                try:
                    return scrub_text(base64.b64decode(s, validate=True).decode("utf-8", "replace"))
                except ValueError:
                    return None

        def get(c: EventContext) -> Extracted:
            v = inner(c)
            if v is None:
                return None
            if isinstance(v, str):
                return fn(v)
            out = [x for x in map(fn, v) if x is not None]
            return out or None

        return get, is_list, False

    def field(self, ref: ast.FieldRef) -> tuple[Getter, bool, bool]:
        spec = FIELDS.get(ref.name)
        if spec is None:
            raise CompileError(f"filter_check called with nonexistent field {ref.name}", ref.pos)
        arg = ref.arg
        if spec.arg == "none" and arg is not None:
            raise CompileError(f"field '{ref.name}' does not take an argument", ref.pos)
        if spec.arg == "key" and not arg:
            raise CompileError(f"field '{ref.name}' requires an argument", ref.pos)
        if spec.arg == "index" and arg is not None and not check_index(arg):
            raise CompileError(f"field '{ref.name}': index argument must be a number, got '{arg}'", ref.pos)
        ext = spec.extractor(self.compat)
        # Shared per event across every rule and output (``ctx.cache``): many rules read the same few
        # fields (verb, resource, user), so each is extracted once per event, not once per check.
        key = f"\x00{self.compat}\x00{ref.name}\x00{arg}"

        def memo(c: EventContext) -> Extracted:
            cache = c.cache
            v = cache.get(key, MISSING)
            if v is MISSING:
                v = cache[key] = ext(c, arg)
            return v  # type: ignore[no-any-return]

        memo.memo = (key, ext, arg)  # type: ignore[attr-defined]  # lets checks inline the lookup (_test)
        return memo, spec.is_list, False

    # -- conditions ----------------------------------------------------------------------------
    def compile(self, node: ast.Node) -> Pred:
        key = self.shared.get(id(node))
        if key is None:
            return self._compile(node)
        pred = self._compile(node)

        def memo(c: EventContext) -> bool:
            # a macro's result, shared per event by every rule that uses the macro
            cache = c.cache
            v = cache.get(key)
            if v is None:
                v = cache[key] = bool(pred(c))
            return v  # type: ignore[no-any-return]

        return memo

    def _compile(self, node: ast.Node) -> Pred:
        if isinstance(node, ast.And):
            return _all([self.compile(c) for c in node.children])
        if isinstance(node, ast.Or):
            return _any(self._or_children(node.children))
        if isinstance(node, ast.Not):
            inner = self.compile(node.child)
            return lambda c: not inner(c)
        if isinstance(node, ast.MacroRef):
            raise CompileError(f"Undefined macro '{node.name}' used in filter.", node.pos)
        return self.check(node)

    def check(self, chk: ast.Check) -> Pred:
        get, is_list, numeric = self.operand(chk.lhs)
        op, rhs = chk.op, chk.rhs
        name = str(chk.lhs)
        if op == "exists":
            return lambda c: get(c) is not None
        if op in ("bcontains", "bstartswith"):
            raise CompileError(f"'{op}' operator not supported on string field {name}", chk.pos)
        self._na_check(chk, name)
        if isinstance(rhs, ast.FieldVal):
            return self._field_rhs(chk, get, is_list)
        if op in ("in", "intersects") and isinstance(rhs, ast.ListVal):
            items = frozenset(rhs.items)
            if not is_list:
                return _test(get, items.__contains__)
            if op == "in":
                return lambda c: (lambda v: v is not None and all(x in items for x in v))(get(c))
            return lambda c: (lambda v: v is not None and not items.isdisjoint(v))(get(c))
        pred = self._scalar_pred(chk, numeric)
        if is_list:
            self.warnings.append(f"'{op}' operator on list field {name}: Falco rejects it; "
                                 "kubetrail tests whether some element matches")

            def any_elem(c: EventContext) -> bool:
                v = get(c)
                return v is not None and any(pred(x) for x in v)

            return any_elem
        if op in ("=", "==") and isinstance(rhs, ast.Str):
            return _test(get, rhs.value.__eq__)
        return _test(get, pred)

    def _or_children(self, children: tuple[ast.Node, ...]) -> list[Pred]:
        """Compiled children of an ``or``; a run of adjacent string checks on the same scalar field
        (``ua icontains a or ua icontains b or ua startswith c``) becomes one check that reads the
        field once and lower-cases it once. Checks are pure, so the result is the same."""
        out: list[Pred] = []
        run: list[ast.Check] = []

        def flush() -> None:
            if len(run) >= 2:
                out.append(self._merged(run))
            else:
                out.extend(self.compile(c) for c in run)
            run.clear()

        for child in children:
            if _mergeable(child) and id(child) not in self.shared and (
                    not run or run[0].lhs == child.lhs):  # type: ignore[union-attr]
                run.append(child)  # type: ignore[arg-type]
                continue
            flush()
            if _mergeable(child) and id(child) not in self.shared:
                run.append(child)  # type: ignore[arg-type]
            else:
                out.append(self.compile(child))
        flush()
        return out

    def _merged(self, checks: list[ast.Check]) -> Pred:
        for chk in checks:  # same diagnostics as compiling them one by one
            self.check(chk)
        get, _, _ = self.operand(checks[0].lhs)
        by_op: dict[str, list[str]] = {}
        for chk in checks:
            by_op.setdefault(chk.op, []).append(chk.rhs.value)  # type: ignore[union-attr]
        eq = frozenset(by_op.get("=", []) + by_op.get("==", []))
        sub = tuple(by_op.get("contains", ()))
        isub = tuple(x.lower() for x in by_op.get("icontains", ()))
        pre, suf = tuple(by_op.get("startswith", ())), tuple(by_op.get("endswith", ()))

        def test(v: str) -> bool:
            if v in eq or (pre and v.startswith(pre)) or (suf and v.endswith(suf)):
                return True
            if sub and any(x in v for x in sub):
                return True
            if isub:
                low = v.lower()
                return any(x in low for x in isub)
            return False

        return _test(get, _per_value(test) if sub or isub else test)

    def _scalar_pred(self, chk: ast.Check, numeric: bool) -> Callable[[str], bool]:
        op, rhs = chk.op, chk.rhs
        if isinstance(rhs, ast.ListVal):
            if op == "pmatch":
                return _pmatch_set(rhs.items)
            if chk.modifier is None:
                raise CompileError(f"operator '{op}' does not take a list", chk.pos)
            preds = [self._str_pred(op, s, chk.pos, numeric) for s in rhs.items]
            if chk.modifier == "anyof":
                return lambda v: any(p(v) for p in preds)
            if chk.modifier == "allof":
                return lambda v: all(p(v) for p in preds)
            return lambda v: sum(1 for p in preds if p(v)) == 1
        text = rhs.text if isinstance(rhs, ast.Num) else rhs.value  # type: ignore[union-attr]
        return self._str_pred(op, text, chk.pos, numeric)

    def _str_pred(self, op: str, s: str, pos: int, numeric: bool) -> Callable[[str], bool]:
        if op in ("=", "=="):
            return lambda v: v == s
        if op == "!=":
            return lambda v: v != s
        if op == "contains":
            return lambda v: s in v
        if op == "icontains":
            low = s.lower()
            return lambda v: low in v.lower()
        if op == "startswith":
            return lambda v: v.startswith(s)
        if op == "endswith":
            return lambda v: v.endswith(s)
        if op in ("glob", "iglob"):
            rx = glob_regex(s, op == "iglob")
            return _per_value(lambda v: rx.fullmatch(v) is not None)
        if op == "regex":
            if _PERL_RE.search(s):
                raise CompileError(f"invalid regex pattern: {s} (POSIX syntax only)", pos)
            try:
                rx = re.compile(s)
            except re.error as exc:
                raise CompileError(f"invalid regex pattern: {s} ({exc})", pos) from None
            return _per_value(lambda v: rx.fullmatch(v) is not None)
        if op in ("<", "<=", ">", ">="):
            return self._ordering(op, s, numeric)
        if op in ("in", "intersects"):
            return lambda v: v == s
        if op == "pmatch":
            return _pmatch_set((s,))
        raise CompileError(f"unknown operator '{op}'", pos)

    def _ordering(self, op: str, s: str, numeric: bool) -> Callable[[str], bool]:
        cmp: Callable[[Any, Any], bool] = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
                                           ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}[op]
        if self.compat == "falco" and not numeric:
            return lambda v: cmp(v, s)
        num = _number(s)

        def ordered(v: str) -> bool:
            x = _number(v)
            return x is not None and num is not None and cmp(x, num)

        return ordered

    def _field_rhs(self, chk: ast.Check, get: Getter, is_list: bool) -> Pred:
        assert isinstance(chk.rhs, ast.FieldVal)
        get2, is_list2, numeric2 = self.operand(chk.rhs.operand)
        op = chk.op
        if op in ("pmatch", "regex"):
            raise CompileError(f"'{op}' does not accept a field on its right side", chk.pos)
        if op in ("in", "intersects"):
            def member(c: EventContext) -> bool:
                v, w = get(c), get2(c)
                if v is None or w is None:
                    return False
                pool = set(w) if isinstance(w, list) else {w}
                vals = v if isinstance(v, list) else [v]
                return all(x in pool for x in vals) if op == "in" else any(x in pool for x in vals)

            return member
        if is_list or is_list2:
            raise CompileError(f"operator '{op}' cannot compare list fields", chk.pos)

        def compare(c: EventContext) -> bool:
            v, w = get(c), get2(c)
            if v is None or w is None:
                return False
            return self._str_pred(op, w, chk.pos, numeric2)(v)  # type: ignore[arg-type]

        return compare

    def _na_check(self, chk: ast.Check, name: str) -> None:
        rhs = chk.rhs
        values = rhs.items if isinstance(rhs, ast.ListVal) else (rhs.value,) if isinstance(rhs, ast.Str) else ()
        if chk.op in _NA_OPS and "<NA>" in values and name.split(".")[0] in ("ka", "jevt", "json", "kt"):
            self.warnings.append(f"LOAD_UNSAFE_NA_CHECK: {name} {chk.op} <NA> is always false for a missing "
                                 "value; use 'exists'")


_MERGE_OPS = frozenset({"=", "==", "contains", "icontains", "startswith", "endswith"})


def _mergeable(node: ast.Node) -> bool:
    if not (isinstance(node, ast.Check) and node.op in _MERGE_OPS and isinstance(node.rhs, ast.Str)
            and node.modifier is None and isinstance(node.lhs, ast.FieldRef)):
        return False
    spec = FIELDS.get(node.lhs.name)
    return spec is not None and not spec.is_list and (spec.arg == "none" or node.lhs.arg is not None)


PER_VALUE_LIMIT = 1024  # remembered answers per test (then forgotten at once): ~200 KB at most each
PER_VALUE_MAX_LEN = 160  # longer values are tested every time (a URI, a command line: rarely repeated)


def _per_value(test: Callable[[str], bool]) -> Callable[[str], bool]:
    """``test`` remembering its answer per value: a regex, glob or many-substring test is a pure
    function of one string, and the fields it reads (user agents, source IPs, names) repeat across
    events, so most calls become one dict lookup. Answers are the same; memory is bounded."""
    memo: dict[str, bool] = {}

    def remembered(v: str) -> bool:
        hit = memo.get(v)
        if hit is None:
            hit = test(v)
            if len(v) <= PER_VALUE_MAX_LEN:
                if len(memo) >= PER_VALUE_LIMIT:
                    memo.clear()
                memo[v] = hit
        return hit

    return remembered


def _test(get: Getter, test: Callable[[Any], bool]) -> Pred:
    """``get(c) is not None and test(value)``, with a plain field's per-event memo lookup inlined
    (one call fewer per check; checks are most of the evaluation time)."""
    memo = getattr(get, "memo", None)
    if memo is None:
        def generic(c: EventContext) -> bool:
            v = get(c)
            return v is not None and test(v)

        return generic
    key, ext, arg = memo

    def inline(c: EventContext) -> bool:
        cache = c.cache
        v = cache.get(key, MISSING)
        if v is MISSING:
            v = cache[key] = ext(c, arg)
        return v is not None and test(v)

    return inline


def _all(preds: list[Pred]) -> Pred:
    """Children tested left to right, stopping at the first false one."""
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return lambda c: a(c) and b(c)
    ps = tuple(preds)

    def all_(c: EventContext) -> bool:
        for p in ps:  # noqa: SIM110 - a plain loop, no generator frame per call
            if not p(c):
                return False
        return True

    return all_


def _any(preds: list[Pred]) -> Pred:
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return lambda c: a(c) or b(c)
    ps = tuple(preds)

    def any_(c: EventContext) -> bool:
        for p in ps:  # noqa: SIM110 - a plain loop, no generator frame per call
            if p(c):
                return True
        return False

    return any_


def value_sets(node: ast.Node, field: str) -> frozenset[str] | None:
    """The values ``field`` must have for ``node`` to be true, or None when unconstrained.

    Used to index rules by verb/resource: ``ka.verb=create`` -> {create}; ``and`` intersects the
    constraints of its children, ``or`` unites them (only if every branch is constrained); ``not``
    and anything else constrain nothing.
    """
    if isinstance(node, ast.Check):
        if not (isinstance(node.lhs, ast.FieldRef) and node.lhs.name == field and node.lhs.arg is None):
            return None
        if node.op in ("=", "==") and isinstance(node.rhs, ast.Str):
            return frozenset((node.rhs.value,))
        if node.op in ("in", "intersects") and isinstance(node.rhs, ast.ListVal):
            return frozenset(node.rhs.items)
        return None
    if isinstance(node, ast.And):
        out: frozenset[str] | None = None
        for child in node.children:
            s = value_sets(child, field)
            if s is not None:
                out = s if out is None else out & s
        return out
    if isinstance(node, ast.Or):
        acc: frozenset[str] = frozenset()
        for child in node.children:
            s = value_sets(child, field)
            if s is None:
                return None
            acc |= s
        return acc
    return None
