"""What the storage layer hands out: rows as plain mappings, and one page type for every list.

Outside a backend, a row is a ``dict`` of column name to value (never a driver's row type),
so the layers above work the same on every database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows, whether another page follows, and the total when it was counted."""

    rows: list[Row]
    has_next: bool = False
    total: int | None = field(default=None)
