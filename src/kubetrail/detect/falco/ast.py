"""Frozen node types of a Falco condition (libsinsp ``filter/parser.h``).

A condition is a tree of ``And``/``Or``/``Not`` over ``Check`` leaves and ``MacroRef`` identifiers.
Macro references are replaced by the macro's tree before compilation (``loader.resolve_macros``);
the compiler never sees a ``MacroRef``. Nodes are immutable, so a macro's tree is shared, not copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FieldRef:
    """``name`` or ``name[arg]``, e.g. ``jevt.value[/stage]``; ``pos`` is the offset in the condition."""

    name: str
    arg: str | None = None
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return self.name if self.arg is None else f"{self.name}[{self.arg}]"


@dataclass(frozen=True, slots=True)
class Transform:
    """A field transformer such as ``tolower(ka.user.name)``; ``val(f)`` is ``Transform("val", ...)``."""

    name: str
    args: tuple[Operand, ...]
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{self.name}({', '.join(str(a) for a in self.args)})"


Operand = FieldRef | Transform


@dataclass(frozen=True, slots=True)
class Str:
    value: str


@dataclass(frozen=True, slots=True)
class Num:
    text: str


@dataclass(frozen=True, slots=True)
class ListVal:
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FieldVal:
    """A right-hand side that is another field (``val(f)``) or a transformer of fields."""

    operand: Operand


Value = Str | Num | ListVal | FieldVal


@dataclass(frozen=True, slots=True)
class Check:
    """``lhs op [modifier] rhs``; ``rhs`` is None for ``exists``."""

    lhs: Operand
    op: str
    rhs: Value | None = None
    modifier: str | None = None
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class MacroRef:
    name: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


Node = And | Or | Not | Check | MacroRef


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    yield node
    if isinstance(node, And | Or):
        for child in node.children:
            yield from walk(child)
    elif isinstance(node, Not):
        yield from walk(node.child)


def operand_fields(op: Operand) -> Iterator[FieldRef]:
    """The fields an operand reads (a transformer may read several)."""
    if isinstance(op, FieldRef):
        yield op
    else:
        for arg in op.args:
            yield from operand_fields(arg)
