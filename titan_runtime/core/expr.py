"""A small, safe expression language for `when:` conditions on parents' results.

Python syntax, parsed with `ast` and walked here: no `eval`, no attribute access beyond dict keys,
no calls but a few pure builtins, no names but the parents' results. Enough for
`measure.load > 0.8`, `results["scan"]["found"] and len(results["scan"]["items"]) < 10`,
`"deep" in planner.mode`.

A condition is user input evaluated inside the master's loop, so every evaluation runs under a
`Budget`: no intermediate value whose printed form exceeds `max_value` characters, no integer wider
than `max_int_bits`, no more than `max_steps` steps (nodes visited, items iterated or measured).
Where a value can grow (`*`, `+`, literals, `str()`), its size is checked *before* it is built, so
`"a" * 10**20` costs a comparison, not the master's memory. What can be decided without the
parents' results (unknown operators, nesting, constant sub-expressions over budget) is refused at
submission by `check`.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_LENGTH = 2000
#: Deeper expressions are refused: evaluation recurses along the tree, never along data.
MAX_DEPTH = 64


class ExpressionError(ValueError):
    """The condition cannot be parsed or evaluated; the message says why."""


@dataclass(frozen=True)
class Budget:
    """What one evaluation may cost. The defaults are far above any sensible condition."""

    max_value: int = 1_000_000  # characters of the printed form of any value it builds
    max_int_bits: int = 1024
    max_steps: int = 100_000


DEFAULT_BUDGET = Budget()

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
_UNARY = (ast.Not, ast.USub, ast.UAdd)
_FUNCTIONS = ("len", "min", "max", "abs", "any", "all", "sum", "str", "int", "float", "bool")
_CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
#: Every node an expression may contain (operators are checked against the tables above).
_ALLOWED = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.BinOp,
    ast.Compare,
    ast.IfExp,
    ast.Subscript,
    ast.Attribute,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Call,
    *_UNARY,
    *_BINARY,
    *_COMPARE,
)


def check(expression: str, max_length: int = MAX_LENGTH, budget: Budget = DEFAULT_BUDGET) -> ast.Expression:
    """Parse and vet an expression (at submission time); raise ExpressionError if it is not allowed."""
    if len(expression) > max_length:
        raise ExpressionError(f"longer than {max_length} characters")
    tree = _parse(expression)
    depth: dict[int, int] = {id(tree): 0}
    order = list(ast.walk(tree))  # breadth first: parents before children
    for node in order:
        level = depth[id(node)]
        if level > MAX_DEPTH:
            raise ExpressionError(f"nested deeper than {MAX_DEPTH} levels")
        for child in ast.iter_child_nodes(node):
            depth[id(child)] = level + 1
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(f"{type(node).__name__} is not allowed in a condition")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"'{node.attr}' is not allowed")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords
        ):
            raise ExpressionError(f"only these functions may be called: {', '.join(sorted(_FUNCTIONS))}")
    _fold_constants(tree, order, budget)
    return tree


@functools.lru_cache(maxsize=4096)
def _parse(expression: str) -> ast.Expression:
    """Parsed once per text: a big DAG repeats the same condition on many jobs."""
    try:
        return ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not a valid expression ({exc.msg})") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError(f"nested deeper than {MAX_DEPTH} levels") from None


def _fold_constants(tree: ast.Expression, order: list[ast.AST], budget: Budget) -> None:
    """Evaluate now each largest sub-expression that reads no name: what fails there fails at
    submission. `order` is the tree breadth first; one pass up marks what reads a name."""
    reads: dict[int, bool] = {}
    for node in reversed(order):  # children before their parents
        reads[id(node)] = isinstance(node, ast.Name) or any(
            reads[id(child)] for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr)
        )
    pending: list[ast.AST] = [tree.body]
    while pending:
        node = pending.pop()
        if reads[id(node)]:
            pending.extend(
                child
                for child in ast.iter_child_nodes(node)
                if isinstance(child, ast.expr) and not (isinstance(node, ast.Call) and child is node.func)
            )
            continue
        try:
            _Evaluator({}, budget).eval(node)
        except ExpressionError as exc:
            raise ExpressionError(f"{ast.unparse(node)[:60]}: {exc}") from None
        except Exception as exc:
            raise ExpressionError(f"{ast.unparse(node)[:60]}: {_describe(exc)}") from None


def evaluate(expression: str, names: Mapping[str, Any], budget: Budget = DEFAULT_BUDGET) -> bool:
    """The truth of `expression` with `names` bound (each parent's result by id, and `results`).

    Raises ExpressionError, and nothing else, whatever the expression or the names hold. It was
    vetted at submission; the evaluator refuses on its own what it does not know, so the
    expression is only parsed here."""
    try:
        return bool(_Evaluator(names, budget).eval(_parse(expression).body))
    except ExpressionError:
        raise
    except (KeyError, IndexError) as exc:
        raise ExpressionError(f"no {exc} in the parents' results") from None
    except Exception as exc:  # TypeError, ZeroDivisionError, OverflowError, RecursionError...
        raise ExpressionError(_describe(exc)) from None


def _describe(exc: Exception) -> str:
    text = str(exc)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def measure(value: Any, limit: int) -> int:
    """About len(str(value)), counted without building it and only up to just past `limit`."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() * 31 // 100 + 2
        elif isinstance(item, float):
            total += 24
        elif isinstance(item, (list, tuple)):
            total += 2 + 2 * len(item)
            if total <= limit:
                stack.extend(item)
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        else:
            total += 64
        if total > limit:
            break
    return total


class _Evaluator:
    def __init__(self, names: Mapping[str, Any], budget: Budget) -> None:
        self.names = names
        self.budget = budget
        self.steps = 0

    # ------------------------------------------------------------------ the budget

    def _spend(self, steps: int) -> None:
        self.steps += steps
        if self.steps > self.budget.max_steps:
            raise ExpressionError(f"takes more than {self.budget.max_steps} steps")

    def _size(self, value: Any) -> int:
        size = measure(value, self.budget.max_value)
        self._spend(size // 64)
        return size

    def _fits(self, size: int) -> None:
        if size > self.budget.max_value:
            raise ExpressionError(
                f"builds a value of more than {self.budget.max_value:,} characters (the condition budget)"
            )

    def _int(self, value: Any) -> Any:
        if isinstance(value, int) and value.bit_length() > self.budget.max_int_bits:
            raise ExpressionError(f"builds an integer wider than {self.budget.max_int_bits} bits")
        return value

    def _binary(self, op: ast.operator, left: Any, right: Any) -> Any:
        if isinstance(op, ast.Mult):
            seq, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                self._fits(self._size(seq) * count if count > 0 else 0)
            elif (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > self.budget.max_int_bits + 1
            ):
                raise ExpressionError(f"builds an integer wider than {self.budget.max_int_bits} bits")
        elif isinstance(op, ast.Add) and isinstance(left, (str, list, tuple)):
            self._fits(self._size(left) + self._size(right))
        elif isinstance(op, ast.Mod) and isinstance(left, str):
            raise ExpressionError("string formatting with % is not allowed in a condition")
        return self._int(_BINARY[type(op)](left, right))

    def _call(self, name: str, args: list[Any]) -> Any:
        if name in ("min", "max", "any", "all", "sum") and len(args) == 1:
            if not isinstance(args[0], (str, list, tuple, dict)):
                raise ExpressionError(f"{name}() needs a list")
            self._spend(len(args[0]))
        if name == "sum":
            if len(args) != 1 or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in args[0]
            ):
                raise ExpressionError("sum() takes one list of numbers")
            return self._int(sum(args[0]))
        if name == "str":
            self._fits(self._size(args[0]) if args else 0)
        return self._int(_BUILTINS[name](*args))

    # ------------------------------------------------------------------ the walk

    def eval(self, node: ast.AST) -> Any:
        self.steps += 1
        if self.steps > self.budget.max_steps:
            raise ExpressionError(f"takes more than {self.budget.max_steps} steps")
        kind = type(node)  # AST classes are exact: `is` is cheaper than isinstance, most common first
        if kind is ast.Name:
            name = node.id  # type: ignore[attr-defined]
            if name in self.names:
                return self.names[name]
            if name in _CONSTANTS:
                return _CONSTANTS[name]
            raise ExpressionError(f"unknown name {name!r}; use a parent's id or results[...]")
        if kind is ast.Constant:
            return node.value  # type: ignore[attr-defined]
        if kind is ast.Compare:
            return self._compare(node)  # type: ignore[arg-type]
        if kind is ast.BoolOp:
            conjunction = type(node.op) is ast.And  # type: ignore[attr-defined]
            value: Any = conjunction
            for item in node.values:  # type: ignore[attr-defined]
                value = self.eval(item)
                if bool(value) != conjunction:
                    return value
            return value
        if kind is ast.Subscript:
            return self.eval(node.value)[self.eval(node.slice)]  # type: ignore[attr-defined]
        if kind is ast.Attribute:  # a.b is a["b"] on results (which are JSON: dicts)
            container = self.eval(node.value)  # type: ignore[attr-defined]
            if isinstance(container, Mapping):
                return container[node.attr]  # type: ignore[attr-defined]
            raise ExpressionError(f"cannot read .{node.attr} of a {type(container).__name__}")  # type: ignore[attr-defined]
        if kind is ast.BinOp and type(node.op) in _BINARY:  # type: ignore[attr-defined]
            return self._binary(node.op, self.eval(node.left), self.eval(node.right))  # type: ignore[attr-defined]
        if kind is ast.Call and type(node.func) is ast.Name and node.func.id in _FUNCTIONS:  # type: ignore[attr-defined]
            return self._call(node.func.id, [self.eval(arg) for arg in node.args])  # type: ignore[attr-defined]
        if kind is ast.UnaryOp:
            operand = self.eval(node.operand)  # type: ignore[attr-defined]
            if type(node.op) is ast.Not:  # type: ignore[attr-defined]
                return not operand
            return self._int(-operand if type(node.op) is ast.USub else +operand)  # type: ignore[attr-defined]
        if kind is ast.IfExp:
            return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)  # type: ignore[attr-defined]
        if kind is ast.List or kind is ast.Tuple:
            items = [self.eval(item) for item in node.elts]  # type: ignore[attr-defined]
            self._fits(self._size(items))
            return items
        if kind is ast.Dict:
            mapping = {
                self.eval(k): self.eval(v)
                for k, v in zip(node.keys, node.values, strict=True)  # type: ignore[attr-defined]
                if k is not None
            }
            self._fits(self._size(mapping))
            return mapping
        raise ExpressionError(f"{kind.__name__} is not allowed in a condition")

    def _compare(self, node: ast.Compare) -> bool:
        left = self.eval(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.eval(comparator)
            if type(op) in (ast.In, ast.NotIn) and isinstance(right, (list, tuple)):
                self._spend(len(right))
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True


_BUILTINS: dict[str, Callable[..., Any]] = {
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "any": any,
    "all": all,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
}
