"""Turning detectors off and giving them exceptions, the same way for every kind of detector.

Falco-language rules have their own ``exceptions:`` inside rules files. ``DATA/detect.yaml`` adds
the same idea for every detector — Falco rules, stateful detectors and credential risks — by its
id (the name ``kubetrail rules list`` shows)::

    disable: ["Credential risk: long-lived", "K8s Identity Used With New User Agent", credentials]
    exceptions:
      - rule: K8s Identity Used From New Source IP      # a detector id; * and ? allowed
        name: office_vpn                                 # what the exception is for (required)
        fields: [subject, source_ip]                     # what is compared
        comps: [=, startswith]                           # per field; default =
        values: [[alice@example.com, "10.8."]]           # one row per excepted combination

An alert (or a credential risk flag) is dropped when every field of one ``values`` row matches.
Fields of alerts: ``subject``, ``credential``, ``source_ip``, ``user_agent``, ``namespace``,
``name``, ``resource``, ``verb`` and ``fields.NAME``; of credential risks: ``subject``,
``credential`` (the credential id, else the inventory id), ``id``, ``kind`` and ``created_by``.
Comparisons: ``=``, ``!=``, ``in`` (the value is a list), ``startswith``, ``endswith``,
``contains``, ``glob``. Names in ``disable`` and ``exceptions[].rule`` that match no detector are
configuration errors (``detect/catalog.py`` checks them against the whole catalog).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

import msgspec

from kubetrail.errors import ConfigError

COMPS = ("=", "!=", "in", "startswith", "endswith", "contains", "glob")


class DetectorException(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rule: str
    name: str
    fields: list[str]
    comps: list[str] = []
    values: list[list[str | list[str]]] = []


def check_exceptions(items: Sequence[DetectorException], origin: str) -> None:
    """Shape checks that need no catalog (comparisons known, rows as long as ``fields``)."""
    for i, ex in enumerate(items):
        where = f"{origin}.exceptions[{i}]" if origin == "detect" else f"{origin}: exceptions[{i}]"
        if not ex.fields:
            raise ConfigError(f"{where}.fields", "name at least one field")
        if ex.comps and len(ex.comps) != len(ex.fields):
            raise ConfigError(f"{where}.comps", f"{len(ex.comps)} comparisons for {len(ex.fields)} fields")
        for j, comp in enumerate(ex.comps):
            if comp not in COMPS:
                raise ConfigError(f"{where}.comps[{j}]", f"unknown comparison {comp!r} (one of {', '.join(COMPS)})")
        for j, row in enumerate(ex.values):
            if len(row) != len(ex.fields):
                raise ConfigError(f"{where}.values[{j}]", f"{len(row)} values for {len(ex.fields)} fields")
            for k, value in enumerate(row):
                comp = ex.comps[k] if ex.comps else "="
                if (comp == "in") != isinstance(value, list):
                    raise ConfigError(f"{where}.values[{j}][{k}]",
                                      "'in' takes a list of values" if comp == "in" else f"'{comp}' takes one value")


def _match(comp: str, have: str, want: str | list[str]) -> bool:
    if comp == "in":
        return have in want
    assert isinstance(want, str)
    return {"=": have == want, "!=": have != want, "startswith": have.startswith(want),
            "endswith": have.endswith(want), "contains": want in have,
            "glob": fnmatch.fnmatchcase(have, want)}[comp]


def excepted(items: Sequence[DetectorException], rule: str, values: Mapping[str, str]) -> str:
    """The name of the exception that covers this occurrence of ``rule``, or ''."""
    for ex in items:
        if not fnmatch.fnmatchcase(rule, ex.rule):
            continue
        comps = ex.comps or ["="] * len(ex.fields)
        for row in ex.values:
            if all(_match(c, values.get(f, ""), v) for f, c, v in zip(ex.fields, comps, row, strict=True)):
                return ex.name
    return ""


def disabled(patterns: Sequence[str], rule: str, tags: Sequence[str] = ()) -> bool:
    """Whether ``disable:`` turns this detector off (by id, with wildcards, or by one of its tags)."""
    return any(fnmatch.fnmatchcase(rule, p) or p in tags for p in patterns)
