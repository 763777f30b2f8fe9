"""pytest plugin (entry point ``pytest11: cachehub``): fixtures for cache tests.

Loaded automatically once cachehub is installed; disable with ``-p no:cachehub``. The
conformance suite does not depend on it: its fixtures live on the suite class.
"""

from __future__ import annotations

import uuid

import pytest

from .clock import FakeClock

__all__ = ["cache_namespace", "fake_clock"]


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`FakeClock` at the current time; pass it as ``clock=`` to a cache."""
    return FakeClock()


@pytest.fixture
def cache_namespace() -> str:
    """A namespace unique to this test, so tests can share one cache backend safely."""
    return f"chtest-{uuid.uuid4().hex[:16]}:"


def pytest_configure(config: pytest.Config) -> None:
    """Register the conformance suite's markers (``--strict-markers`` accepts them)."""
    config.addinivalue_line(
        "markers", "cancellation: a cancellation conformance case (cachehub.testing.cancel)"
    )
    config.addinivalue_line(
        "markers",
        "cancel_smoke: the cancellation cases worth running again on other dependency "
        "versions (a read, a write, a batch, a fill, a lock, a close, loop shutdown)",
    )
