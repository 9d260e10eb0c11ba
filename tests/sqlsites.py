"""Every SQL statement written in jobsvc/, found in the source: what a run must have executed.

A statement is a string constant (or f-string) that starts with SELECT, INSERT, UPDATE, DELETE,
WITH or REPLACE. Its literal pieces (between f-string holes and ``{placeholders}`` of
``str.format``) are what a recorded statement must contain for the site to count as run.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jobsvc"
_STATEMENT = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|REPLACE)\b")
_PLACEHOLDER = re.compile(r"\{[a-z_]*\}")
MIN_PIECE = 12  # shorter pieces (", ", " AND ") say nothing about which statement ran


@dataclass(frozen=True)
class Site:
    where: str  # path:line
    pieces: tuple[str, ...]

    def ran(self, statements: set[str]) -> bool:
        return all(any(piece in sql for sql in statements) for piece in self.pieces)


def _pieces(node: ast.AST) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        parts = [node.value]
    elif isinstance(node, ast.JoinedStr):
        parts = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
        if not parts or not _STATEMENT.match(parts[0]) or not isinstance(node.values[0], ast.Constant):
            return None
    else:
        return None
    if not _STATEMENT.match(parts[0]):
        return None
    return [piece for part in parts for piece in _PLACEHOLDER.split(part) if len(piece.strip()) >= MIN_PIECE]


def sites() -> list[Site]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            pieces = _pieces(node)
            if pieces:
                found.append(Site(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", tuple(pieces)))
    return found
