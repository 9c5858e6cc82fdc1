"""YAML with a budget: a few hundred bytes must not become gigabytes ("billion laughs").

An anchor (`&a`) names a value and every alias (`*a`) repeats it; nested, ten aliases of ten
aliases of ... turn a 456-byte file into 10^9 strings once Python objects are built or printed.
So, before constructing anything, we compose the node graph (where an alias is the very node its
anchor names, shared) and add up the size the document stands for: scalar characters plus a small
cost per node, each shared node counted every time it is referenced. Sizes are remembered per
node, so the count is linear in the distinct nodes however large the total; the walk keeps its own
stack, since recursion must never be driven by user data; an alias inside its own anchor (infinite)
is refused.

Used by pipelines (client/pipeline.py) and cluster files (clusterconfig.py).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

#: What a document may expand to, in bytes of scalar text (plus NODE_COST per node).
MAX_EXPANDED_BYTES = 10 * 1024 * 1024
#: Each node (scalar, list or mapping) counts as this many bytes: an object costs memory even if empty.
NODE_COST = 16

_ANCHOR = re.compile(r"&([^\s,\[\]{}]+)")


class YamlBudgetError(ValueError):
    """The document is refused before it is built; `line` (1-based) is where to look."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def load(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader, limit: int = MAX_EXPANDED_BYTES) -> Any:
    """`yaml.load(text, Loader=loader)`, refusing a document that would expand beyond `limit`.

    Raises yaml.YAMLError for YAML that does not parse, YamlBudgetError for one over budget (or
    nested deeper than the parser can follow)."""
    instance = loader(text)
    try:
        try:
            node = instance.get_single_node()
        except RecursionError:
            raise YamlBudgetError(1, "is nested too deeply to read; flatten its lists and mappings") from None
        if node is None:
            return None
        check_expansion(node, text, limit)
        try:
            return instance.construct_document(node)
        except RecursionError:
            raise YamlBudgetError(1, "is nested too deeply to read; flatten its lists and mappings") from None
    finally:
        instance.dispose()


def check_expansion(root: yaml.Node, text: str = "", limit: int = MAX_EXPANDED_BYTES) -> int:
    """The size `root` expands to; YamlBudgetError when it is over `limit` or refers to itself.

    `text`, the document's source, lets the error name the anchor at fault."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()  # the nodes whose children are being counted: the current path
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, counted = stack.pop()
        key = id(node)
        if counted:
            total = NODE_COST + sum(sizes[id(child)] for child in _children(node))
            if isinstance(node, yaml.ScalarNode):
                total += len(node.value)
            visiting.discard(key)
            sizes[key] = total
            if total > limit:
                raise _over_budget(node, sizes, text, limit)
            continue
        if key in sizes:
            continue
        if key in visiting:
            raise YamlBudgetError(
                node.start_mark.line + 1,
                f"{_anchor_name(node, text)} is used inside itself (a recursive alias), which would "
                "expand for ever; give the inner value in full instead of the alias",
            )
        visiting.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _over_budget(node: yaml.Node, sizes: dict[int, int], text: str, limit: int) -> YamlBudgetError:
    """The error for the first node found over the budget, naming the repeated value inside it
    that weighs the most (that is the alias to remove)."""
    children = _children(node)
    counts: dict[int, int] = {}
    for child in children:
        counts[id(child)] = counts.get(id(child), 0) + 1
    repeated = [c for c in children if counts[id(c)] > 1] or children
    heaviest = max(repeated, key=lambda c: sizes[id(c)] * counts[id(c)], default=node)
    detail = ""
    if heaviest is not node:
        used = counts[id(heaviest)]
        detail = (
            f": this value repeats {_anchor_name(heaviest, text)} ({_megabytes(sizes[id(heaviest)])} "
            f"expanded) {used} time{'s' if used != 1 else ''}"
        )
    return YamlBudgetError(
        node.start_mark.line + 1,
        f"expands to more than {_megabytes(limit)} through aliases (&anchor/*alias){detail}; "
        "write the values out or use fewer aliases",
    )


def _anchor_name(node: yaml.Node, text: str) -> str:
    found = _ANCHOR.match(text, node.start_mark.index) if text else None
    return f"&{found.group(1)}" if found else f"the value at line {node.start_mark.line + 1}"


def _megabytes(size: int) -> str:
    mb = size / (1024 * 1024)
    return f"{mb:.0f} MB" if mb >= 10 or mb == int(mb) else f"{mb:.1f} MB"
