"""Python source parsed for the tests that read jobsvc's own code (tests/test_layers.py, tests/sqlsites.py).

Each parse runs on a thread of its own. CPython 3.11 before 3.11.8 can fail ``ast.parse`` with "SystemError:
AST constructor recursion depth mismatch" on a thread whose recursion bookkeeping an earlier RecursionError
left off (python/cpython#106905); in a whole run some tests provoke one (a nested YAML or JSON body, say),
so the parse gets a thread whose count starts from nothing.
"""

from __future__ import annotations

import ast
import concurrent.futures
import functools
from pathlib import Path


@functools.cache
def parse(path: Path) -> ast.Module:
    """The module at `path`, parsed once (callers must not change the tree)."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(ast.parse, path.read_text(encoding="utf-8")).result()
