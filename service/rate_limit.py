"""The per-user rate limit: a moving window, in this process's memory."""
import time
from typing import Optional

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimit:
    def __init__(self, spec: str):
        self._limit = parse(spec)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, user: str) -> Optional[int]:
        """None when allowed; else the seconds until the caller may retry."""
        if self._limiter.hit(self._limit, "user", user):
            return None
        reset, _ = self._limiter.get_window_stats(self._limit, "user", user)
        return max(1, int(reset - time.time()) + 1)
