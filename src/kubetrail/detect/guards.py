"""Rule guards: what an event must carry for a rule to have any chance of matching.

The rule index (``engine.RuleSet``) keys events by verb, resource, subresource and user, which
leaves the rules that constrain none of those (an anonymous caller, an impersonated identity, a
denied write, a listed address, a token annotation) to be evaluated on every event. Their
conditions do name other cheap fields, though, and a condition can only be true if those fields
have certain values, or are there at all. This module reads that off the resolved condition tree:

* ``clauses(tree)`` — a list of clauses, each a set of atoms, such that the condition is true only
  if every clause has a true atom (a necessary condition in conjunctive form);
* an atom is ``(field, arg, kind, values)``: ``in`` (the scalar field's value is one of
  ``values``), ``any`` (the list field has an element in ``values``) or ``present`` (the field is
  not missing).

Why this is sound: in the Falco language every comparison on a missing field is false (``!=``
included; ``compiler.py``), so any check on a field implies the field is present; ``=``/``in`` on a
scalar imply the value is in the set; ``=``/``intersects`` on a list field imply some element is.
``and`` needs every child's clauses, ``or`` one clause per child merged (each child must give one,
else nothing is known), ``not`` gives nothing. The engine evaluates the atoms on the values the
rules' own extractors give (``Guards.profile``), so pruning by them never drops a match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from kubetrail.detect.falco import ast
from kubetrail.detect.falco.context import EventContext
from kubetrail.detect.falco.fields import FIELDS

Atom = tuple[str, str | None, str, frozenset[str]]  # (field, arg, "in" | "any" | "present", values)
Clause = frozenset[Atom]

PRESENT: Any = object()  # a profile value: the field is there, with none of the values the atoms name
# A reader reads one field's profile value straight from the event: None when the field is missing,
# its value (a scalar) or the named elements (a list field: a tuple) when atoms name them, else
# PRESENT. Each reads the raw event the way the field's extractor does (tests/unit/speed/
# test_rule_guards.py compares them with the extractors on every fixture event and odd shapes); where
# an event has a shape the reader does not follow, it answers ADMIT and the rule is not pruned.
# Each reader factory also records what its reader reads (``read.spec``), from which
# ``detect/fastkey.py`` writes all of a ruleset's reads out as one function.
ADMIT: Any = object()
Reader = Callable[[dict[str, Any], bool], Any]
_JSONISH = re.compile(r"-?[0-9].*|true|false|null|[\[{\"].*", re.DOTALL)


def _list_reader(path: tuple[str, str], known: frozenset[str], audit_only: bool, lone_str: bool) -> Reader:
    """A list field of strings at ``path``: missing when not a list or empty (a lone string is a
    one-element list when ``lone_str``); elements are rendered with ``text_of``, so a non-string
    element could equal a named value only if that value looks like JSON — then ADMIT."""
    a, b = path
    names = tuple(sorted(known))
    strict = any(_JSONISH.fullmatch(k) for k in names)

    def read(ev: dict[str, Any], audit: bool) -> Any:
        if audit_only and not audit:
            return None
        v = ev.get(a)
        v = v.get(b) if isinstance(v, dict) else None
        if isinstance(v, str) and lone_str:
            v = [v]
        if not isinstance(v, list) or not v:
            return None
        if strict and not all(isinstance(x, str) for x in v):
            return ADMIT
        return tuple([k for k in names if k in v])

    read.spec = ("list", a, b, names, audit_only, lone_str, strict)  # type: ignore[attr-defined]  # (fastkey)
    return read


def _str_reader(path: tuple[str, ...], known: frozenset[str], audit_only: bool) -> Reader:
    """A string field at ``path`` (two keys at most): missing unless a string is there."""
    a, b = (path + ("",))[:2] if len(path) <= 2 else ("", "")
    two = len(path) == 2

    def read(ev: dict[str, Any], audit: bool) -> Any:
        if audit_only and not audit:
            return None
        v = ev.get(a)
        if two:
            v = v.get(b) if isinstance(v, dict) else None
        if not isinstance(v, str):
            return None
        return v if v in known else PRESENT

    read.spec = ("str", path, known, audit_only)  # type: ignore[attr-defined]
    return read


def _code(known: frozenset[str]) -> Reader:
    def read(ev: dict[str, Any], audit: bool) -> Any:
        if not audit:
            return None
        status = ev.get("responseStatus")
        if not isinstance(status, dict) or "code" not in status:
            return None
        v = status["code"]
        if type(v) is int:
            v = str(v)
        elif not isinstance(v, str):
            return ADMIT  # null, floats, objects: compared by their text forms
        return v if v in known else PRESENT

    read.spec = ("code", known)  # type: ignore[attr-defined]
    return read


def _sourceip(known: frozenset[str]) -> Reader:
    def read(ev: dict[str, Any], audit: bool) -> Any:
        ips = ev.get("sourceIPs")
        if isinstance(ips, list) and ips and isinstance(ips[-1], str):
            return ips[-1] if ips[-1] in known else PRESENT
        return None

    read.spec = ("sourceip", known)  # type: ignore[attr-defined]
    return read


def _pointer(ptr: str, known: frozenset[str]) -> Reader:
    """``jevt.value[/a/b…]`` of object keys: missing unless every key is there (the extractor renders
    what it finds, so it is present then); a segment that could be a list index: ADMIT."""
    body = ptr[1:] if ptr.startswith("/") else ptr
    segs = tuple(raw.replace("~1", "/").replace("~0", "~") for raw in body.split("/")) if body else ()
    if not segs or any(seg.isdigit() for seg in segs):
        return lambda ev, audit: ADMIT

    def read(ev: dict[str, Any], audit: bool) -> Any:
        cur: Any = ev
        for seg in segs:
            if not isinstance(cur, dict) or seg not in cur:
                return None
            cur = cur[seg]
        if not known:
            return PRESENT
        if not isinstance(cur, str):
            return ADMIT
        return cur if cur in known else PRESENT

    read.spec = ("pointer", segs, known)  # type: ignore[attr-defined]
    return read


def reader(name: str, arg: str | None, known: frozenset[str]) -> Reader:
    """The reader of one guard field (``GUARD_FIELDS``) with the values its atoms name."""
    if name == "ka.user.groups":
        return _list_reader(("user", "groups"), known, audit_only=True, lone_str=False)
    if name == "kt.impuser.groups":
        return _list_reader(("impersonatedUser", "groups"), known, audit_only=False, lone_str=True)
    if name == "kt.impuser.name":
        return _str_reader(("impersonatedUser", "username"), known, audit_only=False)
    if name == "ka.auth.decision":
        return _str_reader(("annotations", "authorization.k8s.io/decision"), known, audit_only=True)
    if name == "ka.response.code":
        return _code(known)
    if name == "kt.sourceip":
        return _sourceip(known)
    if name in ("jevt.value", "json.value"):
        return _pointer(arg or "", known)
    raise KeyError(name)


GUARD_FIELDS = frozenset({"ka.user.groups", "kt.impuser.groups", "kt.impuser.name", "ka.auth.decision",
                          "ka.response.code", "kt.sourceip", "jevt.value", "json.value"})


def _atom(chk: ast.Check) -> Atom | None:
    lhs = chk.lhs
    if not isinstance(lhs, ast.FieldRef):
        return None
    spec = FIELDS.get(lhs.name)
    if spec is None:
        return None
    op, rhs = chk.op, chk.rhs
    values: frozenset[str] | None = None
    if op in ("=", "==") and isinstance(rhs, ast.Str) and chk.modifier is None:
        values = frozenset((rhs.value,))
    elif isinstance(rhs, ast.ListVal) and (op == "intersects" or (op == "in" and not spec.is_list)):
        values = frozenset(rhs.items)  # a list field's ``in`` holds for an empty list: presence only
    if values is None:
        return (lhs.name, lhs.arg, "present", frozenset())
    return (lhs.name, lhs.arg, "any" if spec.is_list else "in", values)


def clauses(node: ast.Node, usable: Callable[[Atom], bool] = lambda a: True) -> list[Clause]:
    """A necessary condition of ``node`` in conjunctive form (see the module docstring), made only of
    atoms ``usable`` accepts."""
    if isinstance(node, ast.Check):
        atom = _atom(node)
        return [frozenset((atom,))] if atom is not None and usable(atom) else []
    if isinstance(node, ast.And):
        out: list[Clause] = []
        for child in node.children:
            out.extend(clauses(child, usable))
        return out
    if isinstance(node, ast.Or):
        merged: set[Atom] = set()
        for child in node.children:
            found = clauses(child, usable)
            if not found:
                return []
            merged |= min(found, key=len)  # any one clause of the branch is necessary for the branch
        return [frozenset(merged)]
    return []  # not, or anything unexpected: no constraint


class Guards:
    """The usable clauses of each rule and the per-event profile they are evaluated on.

    ``index_fields`` are the engine's four index fields, read directly; their profile value is the
    field's value when an atom names it, else None (so only their ``in`` atoms are usable). The
    other fields of usable clauses must be in ``GUARD_FIELDS``, read straight from the event by their
    ``READERS`` (a few dict lookups each: cheaper than the rules they save)."""

    def __init__(self, trees: Iterable[ast.Node], index_fields: tuple[str, ...], compat: str,
                 broad: Iterable[bool] | None = None) -> None:
        per_rule: list[list[Clause]] = []
        extra: dict[tuple[str, str | None], None] = {}
        trees = list(trees)
        wide = list(broad) if broad is not None else [True] * len(trees)
        for tree, guarded in zip(trees, wide, strict=True):
            # a rule the index already narrows gets only index clauses: reading a field for every event
            # would cost more than the few events it is a candidate for
            usable = clauses(tree, lambda a, g=guarded: self._usable(a, index_fields, g))
            # a clause containing another one is implied by it: dropping it may save reading a field
            usable = list(dict.fromkeys(c for c in usable if not any(o < c for o in usable)))
            per_rule.append(usable)
            for c in usable:
                for name, arg, _, _ in c:
                    if name not in index_fields:
                        extra[(name, arg)] = None
        self.rules = per_rule
        self.fields = list(extra)
        self.slot = {f: len(index_fields) + i for i, f in enumerate(self.fields)}
        self.index_slot = {f: i for i, f in enumerate(index_fields)}
        known: dict[tuple[str, str | None], set[str]] = {f: set() for f in [*((n, None) for n in index_fields),
                                                                            *self.fields]}
        for usable in per_rule:
            for c in usable:
                for name, arg, _, values in c:
                    known[(name, arg)] |= values
        self.index_known = tuple(frozenset(known[(n, None)]) for n in index_fields)
        # the fields read the same in both compat modes (their differences are in fields not read here)
        self.readers = [reader(name, arg, frozenset(known[(name, arg)])) for name, arg in self.fields]

    @staticmethod
    def _usable(atom: Atom, index_fields: tuple[str, ...], extra: bool = True) -> bool:
        name, arg, kind, _ = atom
        if name in index_fields:
            return arg is None and kind == "in"  # the index keeps a value only when an atom names it
        return extra and name in GUARD_FIELDS

    def profile(self, ctx: EventContext) -> tuple[Any, ...]:
        """The extra fields' profile values (see ``READERS``)."""
        ev, audit = ctx.ev, ctx.audit
        return tuple([read(ev, audit) for read in self.readers])

    def admits(self, i: int, key: tuple[Any, ...]) -> bool:
        """Whether rule ``i``'s clauses all hold for an event with this full key (index values, then
        the profile)."""
        for clause in self.rules[i]:
            for name, arg, kind, values in clause:
                slot = self.index_slot[name] if arg is None and name in self.index_slot else self.slot[(name, arg)]
                v = key[slot]
                if v is ADMIT:
                    break
                if kind == "present":
                    hit = v is not None
                elif kind == "any":
                    hit = isinstance(v, tuple) and not values.isdisjoint(v)
                else:
                    hit = v in values
                if hit:
                    break
            else:
                return False
        return True
