# mypy: disable-error-code="union-attr,arg-type"
# (a token list holds Tok and Group items; each rule checks the kind before it reads the attribute)
"""SQLite's SQL as tokens, nested by parentheses: what jobsvc.storage.pgsql rewrites.

Strings, quoted identifiers and comments are single tokens, so nothing inside them is
mistaken for a parameter or a keyword; ``::`` is an operator, never a ``:name``
parameter. A parenthesized part is a ``Group`` of its own nodes; serializing the tree
gives the text back unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field


class UnsupportedSql(ValueError):
    """A statement (or a part of it) that has no faithful PostgreSQL translation here."""


@dataclass
class Tok:
    kind: str  # ws comment str blob qid num param pgparam word op
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


@dataclass
class Group:
    items: list[Node] = field(default_factory=list)


Node = Tok | Group

_TOKEN = re.compile(
    r"""
  (?P<ws>\s+)
| (?P<comment>--[^\n]*|/\*.*?\*/)
| (?P<blob>[xX]'[0-9a-fA-F]*')
| (?P<str>'(?:[^']|'')*')
| (?P<qid>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
| (?P<num>0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
| (?P<pgparam>\$\d+)
| (?P<param>\?\d*|[:@$][^\W\d]\w*)
| (?P<word>[^\W\d][\w$]*)
| (?P<op>::|\|\||<<|>>|<=|>=|==|!=|<>|->>|->|[-+*/%&|~<>=(),;.])
""",
    re.S | re.X,
)


def tokens(sql: str) -> Iterator[Tok]:
    position = 0
    while position < len(sql):
        match = _TOKEN.match(sql, position)
        if match is None:
            raise UnsupportedSql(f"cannot read the SQL at {sql[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        text = match.group()
        if kind == "qid" and text[0] in "`[":  # SQLite's other identifier quotes: PostgreSQL has only "..."
            inner = text[1:-1].replace("``", "`") if text[0] == "`" else text[1:-1]
            text = '"' + inner.replace('"', '""') + '"'
        yield Tok(kind, text)
        position = match.end()


def parse(sql: str) -> Group:
    """The statement as a tree: a Group for every pair of parentheses."""
    stack = [Group()]
    for tok in tokens(sql):
        if tok.kind == "op" and tok.text == "(":
            group = Group()
            stack[-1].items.append(group)
            stack.append(group)
        elif tok.kind == "op" and tok.text == ")":
            if len(stack) == 1:
                raise UnsupportedSql("unbalanced ')'")
            stack.pop()
        else:
            stack[-1].items.append(tok)
    if len(stack) != 1:
        raise UnsupportedSql("unbalanced '('")
    return stack[0]


def text(nodes: list[Node]) -> str:
    return "".join(f"({text(node.items)})" if isinstance(node, Group) else node.text for node in nodes)


def significant(nodes: list[Node]) -> list[int]:
    """Indexes of the nodes that are neither white space nor comments."""
    return [i for i, node in enumerate(nodes) if not (isinstance(node, Tok) and node.kind in ("ws", "comment"))]


def is_word(node: Node | None, *words: str) -> bool:
    return isinstance(node, Tok) and node.kind == "word" and (not words or node.text.upper() in words)


def is_op(node: Node | None, *ops: str) -> bool:
    return isinstance(node, Tok) and node.kind == "op" and node.text in ops


def first_word(group: Group) -> str:
    """The first keyword of a group: SELECT for a subquery."""
    for index in significant(group.items):
        node = group.items[index]
        return node.text.upper() if is_word(node) else ""
    return ""


def split(nodes: list[Node], separator: str = ",") -> list[list[Node]]:
    """The parts of a list between top-level separators (commas: function arguments, select items)."""
    parts: list[list[Node]] = [[]]
    for node in nodes:
        if is_op(node, separator):
            parts.append([])
        else:
            parts[-1].append(node)
    return parts


def strip(nodes: list[Node]) -> list[Node]:
    keep = significant(nodes)
    return nodes[keep[0] : keep[-1] + 1] if keep else []


def walk(group: Group) -> Iterator[tuple[Group, int, Tok]]:
    """Every token in text order, with the group holding it and its index there."""
    for index, node in enumerate(group.items):
        if isinstance(node, Group):
            yield from walk(node)
        else:
            yield group, index, node
