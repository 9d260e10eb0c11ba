"""Every SQL statement written in jobsvc/, found in the source: what a run must have executed.

A statement is a string constant (or f-string) that starts with SELECT, INSERT, UPDATE, DELETE,
WITH or REPLACE. A plain constant is a whole statement as it stands. Of an f-string or a
``str.format`` template only the literal pieces are known: a statement recorded while jobsvc
ran must contain them for the site to count as run.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from tests import pysource

PACKAGE = Path(__file__).resolve().parent.parent / "jobsvc"
_STATEMENT = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE\s+FROM|WITH|REPLACE)\b")
# PostgreSQL's own statements (catalog queries, locks, migrations), never translated
NATIVE = ("storage/postgres.py", "storage/pgsql.py", "storage/pgfunctions.py", "storage/sqllex.py")
_PLACEHOLDER = re.compile(r"\{[a-z_]*\}")
MIN_PIECE = 12  # shorter pieces (", ", " AND ") say nothing about which statement ran


@dataclass(frozen=True)
class Site:
    where: str  # path:line
    pieces: tuple[str, ...]
    whole: str | None  # a plain constant is a whole statement; None for an f-string or a str.format template

    def ran(self, statements: set[str]) -> bool:
        return all(any(piece in sql for sql in statements) for piece in self.pieces)


def _site(node: ast.AST, where: str) -> Site | None:
    whole = None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        parts = [node.value]
        whole = node.value if not _PLACEHOLDER.search(node.value) else None
    elif isinstance(node, ast.JoinedStr):
        parts = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
        if not parts or not _STATEMENT.match(parts[0]) or not isinstance(node.values[0], ast.Constant):
            return None
    else:
        return None
    if not _STATEMENT.match(parts[0]):
        return None
    pieces = [piece for part in parts for piece in _PLACEHOLDER.split(part) if len(piece.strip()) >= MIN_PIECE]
    return Site(where, tuple(pieces), whole)


def sites() -> list[Site]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() in NATIVE:
            continue
        tree = pysource.parse(path)
        inner = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
        for node in ast.walk(tree):
            if id(node) in inner:  # a piece of an f-string, not a statement of its own
                continue
            site = _site(node, f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 0)}")
            if site is not None and (site.whole is not None or site.pieces):
                found.append(site)
    return sorted(set(found), key=lambda site: site.where)
