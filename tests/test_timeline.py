"""The conformance kit's ``Timeline``: schedules of waits that do not drift."""

from __future__ import annotations

import time

import pytest

from cachehub.testing import FakeClock
from cachehub.testing.support import Timeline

pytestmark = pytest.mark.timeout(30)


def test_wait_until_moves_a_fake_clock_to_the_scheduled_instant() -> None:
    clock = FakeClock(1_000.0)
    timeline = Timeline(clock, 60.0)
    start = timeline.now()
    clock.advance(7.0)  # a slow request in between does not push the schedule back
    timeline.wait_until(start, 0.5)
    assert clock() == 1_030.0
    timeline.wait_until(start, 1.0)
    assert clock() == 1_060.0


def test_wait_until_never_moves_time_backwards() -> None:
    clock = FakeClock(1_000.0)
    timeline = Timeline(clock, 60.0)
    start = timeline.now()
    clock.advance(90.0)
    timeline.wait_until(start, 1.0)  # already past: nothing to do
    assert clock() == 1_090.0


def test_wait_until_in_real_time_sleeps_only_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    now = [500.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds + 0.06  # every real sleep overshoots

    monkeypatch.setattr(time, "time", lambda: now[0])
    monkeypatch.setattr(time, "sleep", sleep)
    timeline = Timeline(None, 0.4)
    start = timeline.now()
    now[0] += 0.1  # the request took 0.1 s: the first wait is shorter by that much
    timeline.wait_until(start, 0.6)
    timeline.wait_until(start, 1.2)  # the overshoot is not carried into the schedule
    now[0] += 5.0
    timeline.wait_until(start, 1.8)  # late already: no sleep
    assert slept == [pytest.approx(0.14), pytest.approx(0.18)]
