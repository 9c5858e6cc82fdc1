"""A small, safe expression language for `when:` conditions on parents' results.

Python syntax, parsed with `ast` and walked here: no `eval`, no attribute access beyond dict keys,
no calls but a few pure builtins, no names but the parents' results. Enough for
`measure.load > 0.8`, `results["scan"]["found"] and len(results["scan"]["items"]) < 10`,
`"deep" in planner.mode`.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

MAX_LENGTH = 2000


class ExpressionError(ValueError):
    """The condition cannot be parsed or evaluated; the message says why."""


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "any": any,
    "all": all,
    "sum": sum,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
}
_CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


def check(expression: str) -> ast.Expression:
    """Parse and vet an expression (at submission time); raise ExpressionError if it is not allowed."""
    if len(expression) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not a valid expression ({exc.msg})") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"'{node.attr}' is not allowed")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
        ):
            raise ExpressionError(f"only these functions may be called: {', '.join(sorted(_FUNCTIONS))}")
        if isinstance(node, (ast.Lambda, ast.comprehension, ast.NamedExpr, ast.Starred, ast.Await)):
            raise ExpressionError(f"{type(node).__name__} is not allowed in a condition")
    return tree


def evaluate(expression: str, names: Mapping[str, Any]) -> bool:
    """The truth of `expression` with `names` bound (each parent's result by id, and `results`)."""
    tree = check(expression)
    try:
        return bool(_eval(tree.body, names))
    except ExpressionError:
        raise
    except (KeyError, IndexError) as exc:
        raise ExpressionError(f"no {exc} in the parents' results") from None
    except (TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise ExpressionError(str(exc)) from None


def _eval(node: ast.AST, names: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ExpressionError(f"unknown name {node.id!r}; use a parent's id or results[...]")
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            value: Any = True
            for item in node.values:
                value = _eval(item, names)
                if not value:
                    return value
            return value
        for item in node.values:
            value = _eval(item, names)
            if value:
                return value
        return value
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, names)
        if isinstance(node.op, ast.Not):
            return not operand
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return +operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left, names), _eval(node.right, names))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, names)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, names)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body, names) if _eval(node.test, names) else _eval(node.orelse, names)
    if isinstance(node, ast.Subscript):
        return _eval(node.value, names)[_eval(node.slice, names)]
    if isinstance(node, ast.Attribute):  # a.b is a["b"] on results (which are JSON: dicts)
        container = _eval(node.value, names)
        if isinstance(container, Mapping):
            return container[node.attr]
        raise ExpressionError(f"cannot read .{node.attr} of a {type(container).__name__}")
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(item, names) for item in node.elts]
    if isinstance(node, ast.Dict):
        return {
            _eval(k, names): _eval(v, names)
            for k, v in zip(node.keys, node.values, strict=True)
            if k is not None
        }
    if isinstance(node, ast.Call):
        func = _FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        return func(*(_eval(arg, names) for arg in node.args))
    raise ExpressionError(f"{type(node).__name__} is not allowed in a condition")
