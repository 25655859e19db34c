"""Lexer and parser: libsinsp's grammar, token rules and error offsets."""

from __future__ import annotations

import pytest

from kubetrail.detect.falco import ast
from kubetrail.detect.falco.lexer import ConditionSyntaxError, unescape
from kubetrail.detect.falco.output import compile_output
from kubetrail.detect.falco.parser import parse_condition, parse_operand


def F(name: str, arg: str | None = None) -> ast.FieldRef:
    return ast.FieldRef(name, arg)


def strip(node: ast.Node) -> object:
    """The tree without positions, for comparisons."""
    if isinstance(node, ast.And | ast.Or):
        return (type(node).__name__, tuple(strip(c) for c in node.children))
    if isinstance(node, ast.Not):
        return ("Not", strip(node.child))
    if isinstance(node, ast.MacroRef):
        return ("Macro", node.name)
    lhs = str(node.lhs)
    return (lhs, node.op, node.modifier, node.rhs)


def test_precedence_not_and_or() -> None:
    tree = strip(parse_condition("a or not b and c"))
    assert tree == ("Or", (("Macro", "a"), ("And", (("Not", ("Macro", "b")), ("Macro", "c")))))


def test_and_or_are_nary_and_parens_group() -> None:
    assert strip(parse_condition("a and b and c")) == ("And", (("Macro", "a"), ("Macro", "b"), ("Macro", "c")))
    assert strip(parse_condition("(a or b) and c")) == ("And", (("Or", (("Macro", "a"), ("Macro", "b"))),
                                                                ("Macro", "c")))


def test_glued_forms() -> None:
    assert strip(parse_condition("not(a)")) == ("Not", ("Macro", "a"))
    assert strip(parse_condition("a and(b)")) == ("And", (("Macro", "a"), ("Macro", "b")))
    assert strip(parse_condition("ka.verb in(create,get)"))[3] == ast.ListVal(("create", "get"))


def test_words_need_a_blank() -> None:
    # "notx", "order", "andy" are macro names, not operators
    assert strip(parse_condition("notx")) == ("Macro", "notx")
    with pytest.raises(ConditionSyntaxError):
        parse_condition("ka.uri containsx")
    with pytest.raises(ConditionSyntaxError, match="expecting 'or', 'and'"):
        parse_condition("a andy")


def test_bare_strings_and_quoted() -> None:
    c = parse_condition("ka.user.name=system:anonymous")
    assert isinstance(c, ast.Check) and c.rhs == ast.Str("system:anonymous")
    c = parse_condition("ka.uri startswith /healthz?")
    assert isinstance(c, ast.Check) and c.rhs == ast.Str("/healthz?")
    c = parse_condition("ka.response.code startswith 2")
    assert isinstance(c, ast.Check) and c.rhs == ast.Str("2")
    c = parse_condition("ka.user.name startswith 'sys tem:'")
    assert isinstance(c, ast.Check) and c.rhs == ast.Str("sys tem:")


def test_field_args() -> None:
    c = parse_condition("jevt.value[/requestObject/spec/volumes] exists")
    assert isinstance(c, ast.Check) and c.lhs == F("jevt.value", "/requestObject/spec/volumes")
    c = parse_condition('ka.uri.param["command"] = sh')
    assert isinstance(c, ast.Check) and c.lhs == F("ka.uri.param", "command")
    with pytest.raises(ConditionSyntaxError):
        parse_condition("jevt.value[/a b] exists")


def test_lists() -> None:
    c = parse_condition('ka.verb in ( create , "a b",\'c\' )')
    assert isinstance(c, ast.Check) and c.rhs == ast.ListVal(("create", "a b", "c"))
    c = parse_condition("ka.verb in ( )")
    assert isinstance(c, ast.Check) and c.rhs == ast.ListVal(())
    with pytest.raises(ConditionSyntaxError, match="parentheses"):
        parse_condition("ka.verb in mylist")


def test_numeric_operators_need_numbers() -> None:
    c = parse_condition("ka.response.code >= 400")
    assert isinstance(c, ast.Check) and c.rhs == ast.Num("400")
    assert isinstance(parse_condition("len(ka.user.groups) > 0x10"), ast.Check)
    with pytest.raises(ConditionSyntaxError, match="number"):
        parse_condition('ka.response.code >= "400"')


def test_operator_order_and_modifiers() -> None:
    for op in ("==", "=", "!=", "contains", "icontains", "startswith", "endswith", "glob", "iglob", "regex",
               "bcontains", "bstartswith"):
        c = parse_condition(f"ka.uri {op} x")
        assert isinstance(c, ast.Check) and c.op == op
    c = parse_condition("ka.uri startswith anyof (/a, /b)")
    assert isinstance(c, ast.Check) and (c.modifier, c.rhs) == ("anyof", ast.ListVal(("/a", "/b")))
    assert parse_condition("ka.user.groups intersects (a)").op == "intersects"  # type: ignore[union-attr]
    assert parse_condition("ka.uri pmatch (/a)").op == "pmatch"  # type: ignore[union-attr]


def test_transformers_and_val() -> None:
    c = parse_condition("tolower(ka.user.name) = alice")
    assert isinstance(c, ast.Check) and isinstance(c.lhs, ast.Transform) and c.lhs.name == "tolower"
    c = parse_condition("ka.user.name = val(ka.impuser.name)")
    assert isinstance(c, ast.Check) and c.rhs == ast.FieldVal(F("ka.impuser.name"))
    with pytest.raises(ConditionSyntaxError, match="not supported"):
        parse_condition("join(ka.user.groups) = a")


def test_errors_carry_offsets() -> None:
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition("ka.verb=create and (ka.uri = x")
    assert info.value.pos == len("ka.verb=create and (ka.uri = x")
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition("ka.verb=create and ka.uri ~ x")
    assert info.value.pos == len("ka.verb=create and ka.uri ")
    with pytest.raises(ConditionSyntaxError, match="empty"):
        parse_condition("   ")


def test_quoted_escapes() -> None:
    assert unescape(r"a\"b", '"') == 'a"b'
    assert unescape(r"a\tb\x41\\", '"') == "a\tbA\\"
    assert unescape(r"a\ b", '"') == "a\\b"
    with pytest.raises(ConditionSyntaxError, match="escape"):
        unescape(r"a\qb", '"')
    with pytest.raises(ConditionSyntaxError, match="escape"):
        unescape(r"a\'b", '"')
    # a string ending in a backslash cannot be closed (Falco quirk)
    with pytest.raises(ConditionSyntaxError, match="unterminated"):
        parse_condition('ka.uri = "abc\\"')


def test_depth_limit() -> None:
    with pytest.raises(ConditionSyntaxError, match="depth"):
        parse_condition("(" * 1100 + "a" + ")" * 1100)


def test_parse_operand_longest_prefix() -> None:
    op, n = parse_operand("ka.target.name/%ka.target.resource") or (None, 0)
    assert op == F("ka.target.name") and n == len("ka.target.name")
    assert parse_operand(" x") is None


def test_output_tokens() -> None:
    from kubetrail.detect.falco.compiler import CompileError, Compiler

    fmt = compile_output("target=%ka.target.name/%ka.target.resource %5ka.verb|", Compiler())
    assert fmt.field_names == ["ka.target.name", "ka.target.resource", "ka.verb"]
    with pytest.raises(CompileError, match="formatting"):
        compile_output("100% sure", Compiler())
    with pytest.raises(CompileError, match="nonexistent"):
        compile_output("%ka.nope", Compiler())
