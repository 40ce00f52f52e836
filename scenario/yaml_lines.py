"""A YAML loader that keeps line numbers, for error messages a user can follow to the line.

General: it knows nothing of accelbench. `LineLoader` turns the inputs on which PyYAML's SafeLoader raises plain
Python errors (a value that does not fit its tag, an alias inside its own anchor, nesting deep enough to exhaust
the stack) into YAML errors at their line; `LineMap` finds the line of any node by a pydantic-style location.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

Loc = tuple[str | int, ...]
# Every character str.splitlines() breaks a line at, escaped: a name or path quoted from the file into a message
# (a label "a\nb", a key with a U+2028) must not start a line of its own, one that names no file and line.
LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (choose from: {', '.join(sorted(choices))})"


def format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


MAX_DEPTH = 50  # levels of nesting; a scenario needs 5 (backends → entry → options → mapping → value)
# Values a document may hold once its aliases are expanded. Aliases let a 1 KB file stand for 10^9 values (nine
# aliases of nine aliases of ...), which every later pass (validation, a key check) would walk one by one; a
# scenario of 2,000 cases holds a few thousand.
MAX_VALUES = 100_000
YAML_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # what YAML counts as a line break


def line_at(text: str, index: int) -> int:
    """The line (from 1) of ``text[index]``, counted as YAML counts lines in its error marks."""
    return len(YAML_BREAK.findall(text, 0, index)) + 1


def excerpt(text: str) -> str:
    """A value quoted into a message, cut short: a 5000-digit number must not fill the user's terminal."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


class LineLoader(yaml.SafeLoader):
    """SafeLoader that reports, as YAML errors at their line, the inputs that SafeLoader lets escape as tracebacks.

    A hand-edited file reaches corners of PyYAML that raise plain Python errors: scalars that do not fit their
    tag (``!!int abc``, ``!!float ''``, ``!!bool maybe``, a date like 2023-02-30), an alias inside its own anchor
    (``&a [*a]``, a structure that contains itself, on which every later pass recurses until the stack runs out)
    and nesting deep enough to exhaust the stack by itself. Integers are limited to 64 bits: past that no
    setting makes sense, and past 4300 digits Python cannot even print one into a message or a case id.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open: list[str | None] = []  # anchors of the nodes being composed, outermost first
        self._heights: dict[yaml.Node, int] = {}  # levels of nesting at and below a node, through aliases
        self._sizes: dict[yaml.Node, int] = {}  # values at and below a node, aliases expanded
        self._aliased: set[yaml.Node] = set()  # nodes with an alias at or below them
        self._alias_seen: list[bool] = []  # per node being composed: has an alias among its direct children

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        depth = len(self._open)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise ComposerError(None, None, f"the alias *{event.anchor} is inside its own anchor &{event.anchor}",
                                    event.start_mark)
            node = super().compose_node(parent, index)
            if self._alias_seen:
                self._alias_seen[-1] = True
        else:
            if depth >= MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            self._open.append(event.anchor)
            self._alias_seen.append(False)
            try:
                node = super().compose_node(parent, index)
            finally:
                self._open.pop()
                direct_alias = self._alias_seen.pop()
            children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else (
                node.value if isinstance(node, yaml.SequenceNode) else [])
            self._heights[node] = 1 + max((self._heights[child] for child in children), default=0)
            self._sizes[node] = 1 + sum(self._sizes[child] for child in children)
            if direct_alias or any(child in self._aliased for child in children):
                self._aliased.add(node)
        if depth + self._heights[node] > MAX_DEPTH:  # an alias brings its anchor's nesting along
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        if self._sizes[node] > MAX_VALUES:
            # blame the aliases only where they multiplied the values; a long plain list is just too many values
            problem = (f"the aliases here expand to more than {MAX_VALUES:,} values" if node in self._aliased else
                       f"too many values in the file: more than {MAX_VALUES:,} in what starts here (a scenario "
                       "holds a few thousand: split it)")
            raise ComposerError(None, None, problem, event.start_mark)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, KeyError, AttributeError, IndexError):  # what SafeConstructor's scalar parsers raise
            text = excerpt(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
            raise ConstructorError(None, None, f"{text} is not a valid {node.tag.rpartition(':')[2]} (quote it if it "
                                   "is meant as text)", node.start_mark) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            value = super().construct_yaml_int(node)
        except ValueError:  # "!!int abc", or more than 4300 digits: Python refuses to convert those
            value = None
        if value is None or abs(value) >= 2**63:
            raise ConstructorError(None, None, f"{excerpt(node.value)} is not an integer of at most 64 bits",
                                   node.start_mark)
        return value


LineLoader.add_constructor("tag:yaml.org,2002:int", LineLoader.construct_yaml_int)


class LineMap:
    """Line numbers of every node of a YAML document, addressed by pydantic-style locations."""

    def __init__(self, root: yaml.Node) -> None:
        self.root = root

    def line(self, loc: Loc) -> int:
        node, line = self.root, self.root.start_mark.line + 1
        for part in loc:
            child = self._child(node, part)
            if child is None:
                break
            node, line = child
        return line

    @staticmethod
    def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, int] | None:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if key.value == part:
                    # a scalar value sits on its key's line; for a nested block, point at the key too
                    return value, key.start_mark.line + 1
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            return child, child.start_mark.line + 1
        return None


def duplicate_keys(node: yaml.Node, seen_nodes: set[int] | None = None) -> list[tuple[int, str]]:
    """Keys given twice in one mapping, each node looked at once however many aliases point at it."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return []
    seen_nodes.add(id(node))
    problems = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                problems.append((key.start_mark.line + 1, f"duplicate key {key.value!r}"))
            seen.add(key.value)
            problems += duplicate_keys(value, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            problems += duplicate_keys(child, seen_nodes)
    return problems


