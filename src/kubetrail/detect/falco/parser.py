"""Parse a Falco condition into an ``ast`` tree, following libsinsp's grammar (``filter/parser.h``).

Precedence is ``not`` > ``and`` > ``or``; ``and``/``or`` are n-ary. A token with a dot in check
position is a field, a bare identifier is a macro reference. String operators take a quoted or
bare string, numeric operators a number, list operators a parenthesised list. Errors carry the
offset into the condition so the loader can point at it.
"""

from __future__ import annotations

from kubetrail.detect.falco import ast
from kubetrail.detect.falco.lexer import BLANKS, ConditionSyntaxError, Scanner

__all__ = ["ConditionSyntaxError", "parse_condition", "parse_operand", "STR_OPS", "LIST_OPS", "NUM_OPS"]

NUM_OPS = ("<=", "<", ">=", ">")
_STR_SYMBOL_OPS = ("==", "=", "!=")
_STR_WORD_OPS = ("bcontains", "bstartswith", "contains", "endswith", "glob", "icontains", "iglob",
                 "startswith", "regex")
STR_OPS = _STR_SYMBOL_OPS + _STR_WORD_OPS
LIST_OPS = ("intersects", "in", "pmatch")
MODIFIERS = ("oneof", "anyof", "allof")
TRANSFORMERS = ("tolower", "toupper", "b64", "basename", "len")
_UNSUPPORTED_TRANSFORMERS = ("join", "concat", "getopt")
MAX_DEPTH = 100  # Falco allows 1000 for rules; Python frames make 100 (libsinsp's default) the safe choice


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = Scanner(text)
        self.depth = 0

    def parse(self) -> ast.Node:
        s = self.s
        s.blanks()
        if s.at_end():
            raise s.error("empty condition")
        node = self.or_expr()
        s.blanks()
        if not s.at_end():
            raise s.error(f"unexpected token after '{s.last}', expecting 'or', 'and'")
        return node

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.s.error(f"exceeded max depth limit of {MAX_DEPTH}")

    def or_expr(self) -> ast.Node:
        self._enter()
        children = [self.and_expr()]
        while True:
            self.s.blanks()
            if not self.s.try_word("or", glue="("):
                break
            children.append(self.and_expr())
        self.depth -= 1
        return children[0] if len(children) == 1 else ast.Or(tuple(children))

    def and_expr(self) -> ast.Node:
        children = [self.not_expr()]
        while True:
            self.s.blanks()
            if not self.s.try_word("and", glue="("):
                break
            children.append(self.not_expr())
        return children[0] if len(children) == 1 else ast.And(tuple(children))

    def not_expr(self) -> ast.Node:
        s = self.s
        s.blanks()
        if s.try_word("not", glue="("):
            self._enter()
            child = self.not_expr()
            self.depth -= 1
            return ast.Not(child)
        return self.check()

    def check(self) -> ast.Node:
        s = self.s
        s.blanks()
        start = s.pos
        if s.try_lit("("):
            node = self.or_expr()
            s.blanks()
            if not s.try_lit(")"):
                raise s.error("missing closing parenthesis ')'")
            return node
        operand = self.try_transformer()
        if operand is None:
            operand = self.try_field()
        if operand is not None:
            return self.condition(operand, start)
        ident = s.try_identifier()
        if ident is not None:
            return ast.MacroRef(ident, start)
        raise s.error("expected a field, a macro name or '('")

    def try_transformer(self) -> ast.Transform | None:
        s = self.s
        start = s.pos
        for name in TRANSFORMERS + ("val",) + _UNSUPPORTED_TRANSFORMERS:
            if s.try_lit(name + "("):
                if name in _UNSUPPORTED_TRANSFORMERS:
                    raise s.error(f"transformer '{name}' is not supported", start)
                args = [self.operand_arg()]
                while True:
                    s.blanks()
                    if s.try_lit(")"):
                        break
                    if not s.try_lit(","):
                        raise s.error(f"expected ',' or ')' in {name}()")
                    args.append(self.operand_arg())
                if len(args) != 1:
                    raise s.error(f"{name}() takes exactly one argument", start)
                return ast.Transform(name, tuple(args), start)
        return None

    def operand_arg(self) -> ast.Operand:
        self.s.blanks()
        op = self.try_transformer() or self.try_field()
        if op is None:
            raise self.s.error("expected a field or a transformer")
        return op

    def try_field(self) -> ast.FieldRef | None:
        s = self.s
        start = s.pos
        name = s.try_field_name()
        if name is None:
            return None
        arg = None
        if s.try_lit("["):
            arg = s.try_quoted()
            if arg is None:
                arg = s.try_arg_bare()
            if arg is None or not s.try_lit("]"):
                raise s.error(f"invalid argument of field '{name}'")
        return ast.FieldRef(name, arg, start)

    def condition(self, lhs: ast.Operand, start: int) -> ast.Check:
        s = self.s
        s.blanks()
        if s.try_lit("exists"):
            return ast.Check(lhs, "exists", None, None, start)
        for op in NUM_OPS:
            if s.try_lit(op):
                s.blanks()
                rhs = self.field_value()
                if rhs is None:
                    num = s.try_number()
                    if num is None:
                        raise s.error(f"expected a number after '{op}'")
                    rhs = ast.Num(num)
                return ast.Check(lhs, op, rhs, None, start)
        for op in STR_OPS:
            if (s.try_lit(op) if op in _STR_SYMBOL_OPS else s.try_word(op)):
                s.blanks()
                for mod in MODIFIERS:
                    if s.try_word(mod, glue="("):
                        s.blanks()
                        return ast.Check(lhs, op, self.list_value(), mod, start)
                return ast.Check(lhs, op, self.str_value(), None, start)
        for op in LIST_OPS:
            if s.try_lit(op):
                s.blanks()
                rhs = self.field_value()
                return ast.Check(lhs, op, rhs if rhs is not None else self.list_value(), None, start)
        raise s.error(f"expected a valid operator after '{s.last}'")

    def field_value(self) -> ast.FieldVal | None:
        t = self.try_transformer()
        return None if t is None else ast.FieldVal(t.args[0] if t.name == "val" else t)

    def str_value(self) -> ast.Str | ast.FieldVal:
        s = self.s
        fv = self.field_value()
        if fv is not None:
            return fv
        q = s.try_quoted()
        if q is not None:
            return ast.Str(q)
        bare = s.try_bare()
        if bare is None:
            raise s.error("expected a string value")
        return ast.Str(bare)

    def list_value(self) -> ast.ListVal:
        s = self.s
        if not s.try_lit("("):
            if s.try_identifier() is not None:
                raise s.error(f"list '{s.last}' must be written in parentheses: ({s.last})")
            raise s.error("expected a list '(...)'")
        items: list[str] = []
        s.blanks()
        if s.try_lit(")"):
            return ast.ListVal(())
        while True:
            s.blanks()
            item = s.try_quoted()
            if item is None:
                item = s.try_bare()
            if item is None:
                raise s.error("expected a list item")
            items.append(item)
            s.blanks()
            if s.try_lit(")"):
                return ast.ListVal(tuple(items))
            if not s.try_lit(","):
                raise s.error("expected ',' or ')' in list")


def parse_condition(text: str) -> ast.Node:
    """Parse ``text``; raises ``ConditionSyntaxError`` with the offset of the problem."""
    return _Parser(text).parse()


def parse_operand(text: str) -> tuple[ast.Operand, int] | None:
    """The longest field or transformer expression at the start of ``text`` (for ``%field`` output)."""
    p = _Parser(text)
    try:
        op = p.try_transformer() or p.try_field()
    except ConditionSyntaxError:
        return None
    return None if op is None else (op, p.s.pos)


def is_blank(ch: str) -> bool:
    return ch in BLANKS
