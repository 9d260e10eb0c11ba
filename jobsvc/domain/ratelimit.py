"""A fixed-window request counter per user and endpoint (GitLab's check_rate_limit!)."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self._clock = clock
        self._windows: dict[tuple[str, int], tuple[int, int]] = {}

    def hit(self, endpoint: str, user_id: int) -> int | None:
        """Count one request; returns the seconds to wait when over the limit, else None."""
        if self.per_minute <= 0:
            return None
        now = self._clock()
        window = int(now // 60)
        key = (endpoint, user_id)
        start, count = self._windows.get(key, (window, 0))
        if start != window:
            start, count = window, 0
        count += 1
        self._windows[key] = (start, count)
        if len(self._windows) > 100_000:
            self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
        if count > self.per_minute:
            return max(1, int((window + 1) * 60 - now))
        return None
