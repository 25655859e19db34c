"""How commands print data: ``-o table|wide|json|yaml`` for listings, ``--json`` for everything else.

The rules, the same for every command (docs/cli.md "Output"):

* ``json`` (``--json`` is the same): one JSON object per line (JSON Lines), so ``| jq`` and
  ``| head`` work on a million rows. Field names are contracts: add fields, never rename one.
* ``yaml``: one YAML document per object, the same fields.
* ``table`` (the default): columns sized to the terminal; long text is cut with "…", ids are
  shown as a 12-character prefix, which every command that takes that id accepts.
* ``wide``: every column and nothing cut (full ids), whatever the terminal width.
* Colour only when standard output is a terminal and ``NO_COLOR`` is unset (rich's own rules).
* Times are RFC 3339 UTC in text and JSON; JSON carries the exact ``<name>_ns`` beside them.

A table is streamed in chunks: the column widths come from the first chunk, so a query of a
million events prints its first screen at once and holds at most one chunk in memory. ``rich``
and ``yaml`` are imported only when a table or YAML is printed (``--json`` stays fast).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import IO, Any

import click
import orjson

from kubetrail.timefmt import format_ns

FORMATS = ("table", "wide", "json", "yaml")
ID_PREFIX = 12
CHUNK_ROWS = 500
_GAP = 2
_MIN_TEXT = 8

F = Callable[..., Any]


def output_option(fn: F) -> F:
    """``-o/--output table|wide|json|yaml`` and ``--json`` (= ``-o json``), passed on as ``output``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, output: str | None, as_json: bool, **kwargs: Any) -> Any:
        if as_json and output not in (None, "json"):
            raise click.UsageError(f"--json and -o {output} disagree; give one of them")
        return fn(*args, output="json" if as_json else (output or "table"), **kwargs)

    params = list(getattr(fn, "__click_params__", []))
    wrapper.__click_params__ = params  # type: ignore[attr-defined]  # click's decorator protocol
    wrapper = click.option("--json", "as_json", is_flag=True, help="Same as -o json.")(wrapper)
    return click.option("-o", "--output", type=click.Choice(FORMATS), default=None,
                        help="table (default; fits the terminal), wide (every column, nothing cut), "
                             "json (one object per line) or yaml.")(wrapper)


def json_line(doc: object) -> str:
    """One JSON object on one line (the ``--json`` format); unknown types print as their ``str``."""
    return orjson.dumps(doc, default=str).decode()


def emit(doc: object, output: str = "json", out: IO[str] | None = None) -> None:
    """Print one object as JSON (one line) or YAML (one document)."""
    stream = out or sys.stdout
    if output == "yaml":
        import yaml

        stream.write(yaml.safe_dump(orjson.loads(json_line(doc)), sort_keys=False, explicit_start=True,
                                    allow_unicode=True))
    else:
        stream.write(json_line(doc) + "\n")


def with_time(doc: dict[str, Any], name: str, ns: int | None) -> dict[str, Any]:
    """Set ``doc[name]`` to RFC 3339 and ``doc[name + "_ns"]`` to the exact nanoseconds."""
    doc[name] = format_ns(ns)
    doc[f"{name}_ns"] = ns
    return doc


@contextmanager
def sinks_off_stdout(machine_output: bool = True) -> Iterator[None]:
    """While a command prints machine output, what alert sinks write to stdout goes to stderr.

    A ``stdout`` sink configured in DATA/detect.yaml writes alerts as they are delivered; inside
    ``ingest --json`` or ``detect -o json`` those lines would corrupt the command's own output.
    """
    if not machine_output:
        yield
        return
    with redirect_stdout(sys.stderr):
        yield


def color_enabled(stream: IO[str] | None = None) -> bool:
    """Colour is for people at a terminal who did not ask for none (https://no-color.org)."""
    s = stream or sys.stdout
    return not os.environ.get("NO_COLOR") and hasattr(s, "isatty") and s.isatty()


@dataclass(frozen=True)
class Column:
    """One column of a listing: ``field`` names the JSON field it shows (or computes the cell)."""

    header: str
    field: str | Callable[[dict[str, Any]], object]
    id: bool = False  # never cut: a prefix in `table`, in full in `wide`
    wide: bool = False  # only in `-o wide`
    right: bool = False  # numbers
    time: bool = False  # an RFC 3339 time: milliseconds in `table`, every digit in `wide`
    whole: bool = False  # a name that is never cut (a credential id that is not a hash)

    def text(self, doc: dict[str, Any], output: str) -> str:
        value = self.field(doc) if callable(self.field) else doc.get(self.field)
        if value is None or value == "" or value == []:
            return "-"
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        text = " ".join(text.split()) if "\n" in text or "\t" in text else text
        if output == "table":
            if self.id and len(text) > ID_PREFIX:
                return text[:ID_PREFIX]
            if self.time:
                return _milliseconds(text)
        return text


def _milliseconds(rfc3339: str) -> str:
    """``2026-03-14T10:15:00.539600000Z`` -> ``2026-03-14T10:15:00.539Z`` (still RFC 3339)."""
    head, dot, frac = rfc3339.partition(".")
    if not dot or not frac.endswith("Z"):
        return rfc3339
    return f"{head}.{frac[:3]}Z"


class Listing:
    """Rows in, the chosen format out; use as a context manager (the table flushes on exit)."""

    def __init__(self, output: str, columns: Iterable[Column], out: IO[str] | None = None) -> None:
        if output not in FORMATS:
            raise click.UsageError(f"-o {output!r}: choose one of {', '.join(FORMATS)}")
        self.output = output
        self.columns = [c for c in columns if output == "wide" or not c.wide]
        self.out = out or sys.stdout
        self.count = 0
        self._rows: list[list[str]] = []
        self._widths: list[int] | None = None

    def __enter__(self) -> Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()

    def add(self, doc: dict[str, Any]) -> None:
        self.count += 1
        if self.output == "json":
            self.out.write(json_line(doc) + "\n")
        elif self.output == "yaml":
            emit(doc, "yaml", self.out)
        else:
            self._rows.append([c.text(doc, self.output) for c in self.columns])
            if len(self._rows) >= CHUNK_ROWS:
                self._flush()

    def close(self) -> None:
        if self._rows:
            self._flush()

    def _flush(self) -> None:
        needed = [max([len(c.header), *(len(r[i]) for r in self._rows)]) for i, c in enumerate(self.columns)]
        first = self._widths is None
        if self._widths is None:
            self._widths = self._fit(needed)
        else:  # a later chunk may hold longer values: what must never be cut grows its column
            cut_ok = self._cuttable()
            self._widths = [w if i in cut_ok else max(w, n) for i, (w, n) in enumerate(zip(self._widths, needed,
                                                                                           strict=True))]
        self._render(self._rows, show_header=first)
        self._rows = []

    def _cuttable(self) -> set[int]:
        """Columns a table may cut: text (not ids, numbers or times), and only on a terminal."""
        if self.output == "wide" or not _isatty(self.out):
            return set()
        return {i for i, c in enumerate(self.columns) if not (c.id or c.right or c.time or c.whole)}

    def _fit(self, widths: list[int]) -> list[int]:
        """Shrink the widest text columns until the table fits a terminal; ids and `wide` are never cut."""
        shrinkable = sorted(self._cuttable())
        if not shrinkable:
            return widths
        room = shutil.get_terminal_size().columns - _GAP * (len(widths) - 1)
        while sum(widths) > room and shrinkable:
            i = max(shrinkable, key=lambda j: widths[j])
            floor = max(_MIN_TEXT, len(self.columns[i].header))
            if widths[i] <= floor:
                shrinkable.remove(i)
                continue
            widths[i] -= max(1, min(widths[i] - floor, sum(widths) - room))
        return widths

    def _render(self, rows: list[list[str]], show_header: bool) -> None:
        from rich.console import Console
        from rich.table import Table

        assert self._widths is not None
        color = color_enabled(self.out)
        table = Table(box=None, show_header=show_header, pad_edge=False,
                      padding=(0, _GAP, 0, 0), header_style="bold" if color else "", show_edge=False)
        for col, width in zip(self.columns, self._widths, strict=True):
            table.add_column(col.header.upper(), width=width, no_wrap=not col.id,
                             overflow="fold" if col.id else "ellipsis", justify="right" if col.right else "left")
        for r in rows:
            table.add_row(*r)
        console = Console(file=self.out, width=sum(self._widths) + _GAP * len(self._widths), color_system=(
            "auto" if color else None), highlight=False, soft_wrap=False, emoji=False, markup=False)
        with console.capture() as cap:
            console.print(table)
        self.out.write("".join(line.rstrip() + "\n" for line in cap.get().splitlines()))


def _isatty(stream: IO[str]) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()
