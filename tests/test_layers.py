"""The layers show in the folders, and imports only go down: http -> services -> storage -> domain.

Every import in every module is read (module level and inside functions), so a late import
cannot get around the rule.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests import pysource

PACKAGE = Path(__file__).resolve().parent.parent / "jobsvc"

# what each part of the package may import from jobsvc itself
ALLOWED = {
    "domain": {"jobsvc", "jobsvc.domain"},
    "storage": {"jobsvc", "jobsvc.domain", "jobsvc.storage"},
    "services": {"jobsvc", "jobsvc.domain", "jobsvc.storage", "jobsvc.services"},
    "http": {"jobsvc", "jobsvc.domain", "jobsvc.storage", "jobsvc.services", "jobsvc.http", "jobsvc.settings"},
    "settings": {"jobsvc", "jobsvc.domain"},
    "cli": {
        "jobsvc",
        "jobsvc.domain",
        "jobsvc.storage",
        "jobsvc.services",
        "jobsvc.http",
        "jobsvc.settings",
        "jobsvc.progress",
    },
    "progress": {"jobsvc"},
    # the pytest plugin and its servers sit on top, beside cli (which they start as a process, never import)
    "testing": {"jobsvc", "jobsvc.domain", "jobsvc.storage", "jobsvc.http", "jobsvc.settings", "jobsvc.testing"},
    "__main__": {"jobsvc.cli"},
    "__init__": set(),
}
# third-party packages a layer must not reach for
FORBIDDEN = {
    "domain": {"aiohttp", "aiosqlite", "aiofiles", "asyncpg", "aiobotocore", "sqlite3"},
    "services": {"aiohttp"},
    "storage": {"aiohttp"},
}


def _part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(pysource.parse(path)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module == "jobsvc":  # from jobsvc import http: the name is a module
                found += [
                    (node.lineno, f"jobsvc.{alias.name}")
                    for alias in node.names
                    if alias.name.islower() and not alias.name.startswith("_")
                ]
    return found


def _owner(module: str) -> str:
    """The part of jobsvc an import names: jobsvc.storage.db -> jobsvc.storage."""
    parts = module.split(".")
    return ".".join(parts[:2])


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_is_in_a_layer():
    assert {_part(p) for p in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_only_go_down(path: Path):
    part = _part(path)
    wrong = []
    for line, module in _imports(path):
        top = module.split(".")[0]
        if top == "jobsvc":
            owner = _owner(module)
            if module != "jobsvc" and owner not in ALLOWED[part] and module not in ALLOWED[part]:
                wrong.append(f"line {line}: {module}")
        elif top in FORBIDDEN.get(part, ()):
            wrong.append(f"line {line}: {module} (not in {part})")
    assert wrong == []


def test_the_rule_catches_an_upward_import(tmp_path):
    """The checker itself: a storage module importing http is caught, a domain one importing aiohttp too."""
    module = tmp_path / "bad.py"
    module.write_text("from jobsvc.http import keys\nimport aiohttp\nfrom jobsvc import http\n", encoding="utf-8")
    names = [name for _, name in _imports(module)]
    assert names == ["jobsvc.http", "aiohttp", "jobsvc", "jobsvc.http"]
    assert _SQL.match("SELECT id FROM jobs") and _SQL.match("  UPDATE jobs SET status = ?")
    assert not _SQL.match("DELETE /runners") and not _SQL.match("With an invalid token")
    assert _owner("jobsvc.http.handlers.base") == "jobsvc.http"
    assert "jobsvc.http" not in ALLOWED["storage"] and "aiohttp" in FORBIDDEN["domain"]


_SQL = re.compile(
    r"^\s*(SELECT\b.*\bFROM\b|INSERT\s+INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|WITH\s+RECURSIVE\b|PRAGMA\s+\w+)",
    re.S,
)
_DB_CALLS = {"fetchone", "fetchall", "execute", "executemany", "executescript"}


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if _part(p) not in ("storage",)],
    ids=lambda p: p.relative_to(PACKAGE).as_posix(),
)
def test_no_sql_outside_storage(path: Path):
    """The repository is the only way to the database: no statement and no driver call anywhere else."""
    found = []
    for node in ast.walk(pysource.parse(path)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL.match(node.value):
            found.append(f"line {node.lineno}: {node.value.strip()[:40]!r}")
        elif isinstance(node, ast.Attribute) and node.attr in _DB_CALLS:
            found.append(f"line {node.lineno}: .{node.attr}(")
    assert found == []
