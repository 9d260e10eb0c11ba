"""A fixed-window request counter per user and endpoint (GitLab's check_rate_limit!).

The arithmetic is here; where the counts live is the limiter's business: in this process's
memory (``RateLimiter``, one process on SQLite), or in the database that several processes
share (jobsvc.services.ratelimits).
"""

from __future__ import annotations

import time
from collections.abc import Callable

WINDOW = 60  # seconds


def window_of(now: float) -> int:
    return int(now // WINDOW)


def retry_after(count: int, per_minute: int, now: float) -> int | None:
    """The seconds to wait when ``count`` requests in the current window are over the limit, else None."""
    if per_minute <= 0 or count <= per_minute:
        return None
    return max(1, int((window_of(now) + 1) * WINDOW - now))


class RateLimiter:
    """Counts in this process's memory."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.time):
        self.per_minute = per_minute
        self._clock = clock
        self._windows: dict[tuple[str, int], tuple[int, int]] = {}

    async def hit(self, endpoint: str, user_id: int) -> int | None:
        """Count one request; returns the seconds to wait when over the limit, else None."""
        if self.per_minute <= 0:
            return None
        now = self._clock()
        window = window_of(now)
        key = (endpoint, user_id)
        start, count = self._windows.get(key, (window, 0))
        if start != window:
            start, count = window, 0
        count += 1
        self._windows[key] = (start, count)
        if len(self._windows) > 100_000:
            self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
        return retry_after(count, self.per_minute, now)
