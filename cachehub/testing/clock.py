"""A manual clock for deterministic expiry tests.

Every cache takes ``clock=`` (a callable returning epoch seconds) and computes all expiry
from it, so a test can move time forward instantly instead of sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta

from cachehub.errors import CacheValueError

__all__ = ["FakeClock"]


class FakeClock:
    """A callable clock that starts at the real time and moves only when told to.

    ``clock()`` returns epoch seconds, like :func:`time.time`. It is thread-safe, and it
    never goes backwards: :meth:`advance` refuses negative or non-finite steps.

    >>> clock = FakeClock(1_000.0)
    >>> clock.advance(2.5)
    1002.5
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else self._check(start, "start")
        self._lock = threading.Lock()

    @staticmethod
    def _check(value: float, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CacheValueError(
                f"FakeClock {what} must be a number of seconds, got {type(value).__name__}.",
                hint=f"pass e.g. {what}=60 or a timedelta to advance().",
            )
        if not math.isfinite(value):
            raise CacheValueError(
                f"FakeClock {what} must be finite, got {value!r}.",
                hint="pass a finite number of seconds.",
            )
        return float(value)

    def __call__(self) -> float:
        """The current fake time in epoch seconds."""
        with self._lock:
            return self._now

    def advance(self, seconds: float | timedelta) -> float:
        """Move the clock forward by ``seconds`` (or a timedelta); return the new time."""
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        step = self._check(step, "step")
        if step < 0:
            raise CacheValueError(
                f"FakeClock cannot go backwards (advance({step!r})).",
                hint="advance by zero or more seconds; build a new FakeClock to start over.",
            )
        with self._lock:
            self._now += step
            return self._now

    def datetime(self) -> datetime:
        """The current fake time as an aware UTC datetime."""
        return datetime.fromtimestamp(self(), UTC)

    def __repr__(self) -> str:
        return f"FakeClock({self():.6f})"
