"""Falco ``%field`` output strings (libsinsp ``eventformatter.cpp``).

``%`` starts a token: an optional decimal width (pads with spaces or truncates), then the longest
field (with ``[arg]``) or transformer expression that parses; everything else is literal text. A
``%`` not followed by a field is a load error (there is no ``%%``). A missing value renders as
``<NA>``, a list field as ``(a,b)``, an empty string as nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubetrail.detect.falco.compiler import CompileError, Compiler, Getter
from kubetrail.detect.falco.context import EventContext, Extracted
from kubetrail.detect.falco.parser import parse_operand

NA = "<NA>"
_WIDTH = re.compile(r"\d+")


def render_value(v: Extracted) -> str:
    if v is None:
        return NA
    if isinstance(v, list):
        return "(" + ",".join(v) + ")"
    return v


@dataclass(frozen=True, slots=True)
class _Token:
    name: str
    get: Getter
    width: int


class Formatter:
    """A compiled output string: ``render(ctx)`` for the text, ``fields(ctx)`` for ``output_fields``."""

    def __init__(self, parts: list[str | _Token]) -> None:
        self.parts = parts
        self.field_names = [p.name for p in parts if isinstance(p, _Token)]

    def render(self, ctx: EventContext) -> str:
        out: list[str] = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            text = render_value(p.get(ctx))
            if p.width:
                text = text[: p.width].ljust(p.width)
            out.append(text)
        return "".join(out)

    def render_with_fields(self, ctx: EventContext) -> tuple[str, dict[str, str | list[str] | None]]:
        """``(render(ctx), fields(ctx))`` reading each field once (what a match needs)."""
        out: list[str] = []
        values: dict[str, str | list[str] | None] = {}
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            v = p.get(ctx)
            values[p.name] = list(v) if isinstance(v, list) else v
            text = render_value(v)
            if p.width:
                text = text[: p.width].ljust(p.width)
            out.append(text)
        return "".join(out), values

    def fields(self, ctx: EventContext) -> dict[str, str | list[str] | None]:
        """Falco's JSON ``output_fields``: null when missing, arrays for list fields."""
        out: dict[str, str | list[str] | None] = {}
        for p in self.parts:
            if isinstance(p, _Token):
                v = p.get(ctx)
                out[p.name] = list(v) if isinstance(v, list) else v  # values are shared per event: copy
        return out


def compile_output(text: str, compiler: Compiler) -> Formatter:
    """Compile ``text``; raises ``CompileError`` (``pos`` = offset) for a bad ``%`` token or field."""
    parts: list[str | _Token] = []
    i = 0
    literal: list[str] = []
    while i < len(text):
        j = text.find("%", i)
        if j < 0:
            literal.append(text[i:])
            break
        literal.append(text[i:j])
        k = j + 1
        width = 0
        m = _WIDTH.match(text, k)
        if m:
            width = int(m.group(0))
            k = m.end()
        parsed = parse_operand(text[k:])
        if parsed is None:
            raise CompileError(f"invalid formatting syntax: '%' at offset {j} is not followed by a field", j)
        operand, length = parsed
        get, _, _ = compiler.operand(operand)
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_Token(text[k : k + length], get, width))
        i = k + length
    if literal and "".join(literal):
        parts.append("".join(literal))
    return Formatter(parts)
