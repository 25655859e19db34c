"""Read a rules file the way Falco (yaml-cpp) does: every scalar is text, and every value keeps its place.

PyYAML's YAML 1.1 resolver would turn list items such as ``yes``, ``on``, ``1.10`` or ``0755`` into
bools and numbers; Falco never does, so we only *compose* the document (nodes keep their source text
and their ``line:col``) and convert nodes ourselves. The one place a resolved tag matters is the bare
``-`` item Falco skips: a plain empty/``~``/``null`` scalar is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

try:  # libyaml is much faster on the 3000-line upstream files
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
_FALSE = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}


@dataclass(frozen=True, slots=True)
class Pos:
    """1-based position of a node in its file."""

    file: str
    line: int
    col: int
    # For a one-line plain (0) or quoted (1) scalar: where its text starts after ``col``; else -1.
    shift: int = field(default=-1, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def at(self, text: str, offset: int) -> Pos:
        """The position of ``text[offset]`` when ``text`` is this scalar's unchanged one-line value."""
        if self.shift < 0 or "\n" in text:
            return self
        return Pos(self.file, self.line, self.col + self.shift + offset)


Value = str | None | list["Node"] | dict[str, "Node"]


@dataclass(slots=True)
class Node:
    """A YAML value with its position; mappings also remember where each key was written."""

    value: Value
    pos: Pos
    style: str | None = None
    key_pos: dict[str, Pos] = field(default_factory=dict)

    @property
    def is_str(self) -> bool:
        return isinstance(self.value, str)

    @property
    def is_seq(self) -> bool:
        return isinstance(self.value, list)

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)


def parse_bool(text: str) -> bool | None:
    """yaml-cpp's ``convert<bool>``: None when the text is not a boolean."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _convert(node: yaml.Node, file: str) -> Node:
    pos = Pos(file, node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.ScalarNode):
        if not node.style and node.value in _NULLS:  # plain style: None (PyYAML) or '' (libyaml)
            return Node(None, pos)
        one_line = node.start_mark.line == node.end_mark.line
        if one_line and node.style in (None, "", '"', "'"):
            pos = Pos(file, pos.line, pos.col, 1 if node.style else 0)
        return Node(node.value, pos, node.style)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(n, file) for n in node.value], pos)
    out: dict[str, Node] = {}
    key_pos: dict[str, Pos] = {}
    for knode, vnode in node.value:
        key = knode.value if isinstance(knode, yaml.ScalarNode) else str(knode.value)
        out[key] = _convert(vnode, file)
        key_pos[key] = Pos(file, knode.start_mark.line + 1, knode.start_mark.column + 1)
    return Node(out, pos, key_pos=key_pos)


def load_documents(text: str, file: str) -> list[Node | None]:
    """All documents of ``text``; raises ``YamlError`` with a position on a syntax error."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlError(Pos(file, line, col), f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlError(Pos(file, 1, 1), f"invalid YAML: {exc}") from None
    return [None if n is None else _convert(n, file) for n in nodes]


class YamlError(Exception):
    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(f"{pos}: {message}")
        self.pos = pos
        self.message = message
