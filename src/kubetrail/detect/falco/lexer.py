"""The lexical level of Falco conditions: a cursor over the text with libsinsp's token rules.

Falco's parser is scannerless: whether ``a.b`` is a field or a bare string depends on where it
stands, so the parser asks the scanner for the token it expects next rather than consuming a fixed
token stream. Rules kept here (libs ``filter/parser.cpp``): blanks are space, tab, backspace, CR
and LF; word operators need a following blank; a quoted string ends at the first delimiter not
preceded by a backslash; only the escapes listed in ``_ESCAPES`` (plus ``\\xHH``) are valid.
"""

from __future__ import annotations

import re

BLANKS = " \t\b\r\n"
_RE_FIELD = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*(?:\.[a-zA-Z]+[a-zA-Z0-9_]*)+")
_RE_IDENT = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_RE_BARE = re.compile(r"[^ \b\t\n\r(),=\"']+")
_RE_ARG_BARE = re.compile(r"[^ \b\t\n\r\[\]\"']+")
_RE_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[+\-]?[0-9]+\.?[0-9]*(?:[eE][+\-][0-9]+)?")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "\\": "\\", "/": "/", " ": "\\"}


class ConditionSyntaxError(Exception):
    """A parse error at ``pos`` (0-based offset into the condition text)."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


class Scanner:
    """A cursor over a condition; each ``try_*`` method consumes its token only when it matches."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.last = ""

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def blanks(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in BLANKS:
            pos += 1
        self.pos = pos

    def error(self, message: str, pos: int | None = None) -> ConditionSyntaxError:
        return ConditionSyntaxError(message, self.pos if pos is None else pos)

    def try_lit(self, lit: str) -> bool:
        if self.text.startswith(lit, self.pos):
            self.pos += len(lit)
            self.last = lit
            return True
        return False

    def try_word(self, word: str, *, glue: str = "") -> bool:
        """``word`` followed by a blank, one of ``glue``, or (for glue '$') the end of the text."""
        if not self.text.startswith(word, self.pos):
            return False
        nxt = self.text[self.pos + len(word) : self.pos + len(word) + 1]
        if (nxt and nxt in BLANKS) or (nxt and nxt in glue) or (not nxt and "$" in glue):
            self.pos += len(word)
            self.last = word
            return True
        return False

    def _try_re(self, regex: re.Pattern[str]) -> str | None:
        m = regex.match(self.text, self.pos)
        if m is None or not m.group(0):
            return None
        self.pos = m.end()
        self.last = m.group(0)
        return m.group(0)

    def try_field_name(self) -> str | None:
        return self._try_re(_RE_FIELD)

    def try_identifier(self) -> str | None:
        return self._try_re(_RE_IDENT)

    def try_number(self) -> str | None:
        return self._try_re(_RE_NUMBER)

    def try_bare(self) -> str | None:
        return self._try_re(_RE_BARE)

    def try_arg_bare(self) -> str | None:
        return self._try_re(_RE_ARG_BARE)

    def try_quoted(self) -> str | None:
        """A ``"…"`` or ``'…'`` string, unescaped; raises on an unterminated string or a bad escape."""
        if self.at_end() or self.text[self.pos] not in "\"'":
            return None
        quote = self.text[self.pos]
        start = self.pos
        i = start + 1
        text = self.text
        while True:
            j = text.find(quote, i)
            if j < 0:
                raise self.error("unterminated quoted string", start)
            if text[j - 1] != "\\":
                break
            i = j + 1
        raw = text[start + 1 : j]
        self.pos = j + 1
        self.last = text[start : j + 1]
        return unescape(raw, quote, start + 1)


def unescape(raw: str, quote: str, offset: int = 0) -> str:
    """Falco's escape rules for quoted strings (``\\"`` only inside ``"…"``, ``\\'`` inside ``'…'``)."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = raw[i + 1 : i + 2]
        if nxt == quote:
            out.append(quote)
            i += 2
        elif nxt in _ESCAPES and nxt:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", raw[i + 2 : i + 4]):
            out.append(chr(int(raw[i + 2 : i + 4], 16)))
            i += 4
        else:
            raise ConditionSyntaxError(f"invalid escape sequence '\\{nxt}' in quoted string", offset + i)
    return "".join(out)
