"""pytest plugin (entry point ``pytest11: cachehub``): fixtures for cache tests.

Loaded automatically once cachehub is installed; disable with ``-p no:cachehub``. The
conformance suite does not depend on it: its fixtures live on the suite class.
"""

from __future__ import annotations

import socket
import uuid
from typing import Final

import pytest

from .clock import FakeClock

__all__ = ["CPU_NOTED", "NOTED_PROPERTY", "cache_namespace", "fake_clock"]

CPU_NOTED: Final = 0.025
"""CPU seconds above which an event-loop callback of the async conformance suite is listed
in the run's summary (not failed; the failing limit is
:data:`cachehub.testing.asyncshell.CPU_PER_CALLBACK`): where to look first when a
provider's callbacks grow."""

NOTED_PROPERTY: Final = "cachehub_loop_cpu_peak"
"""The test report's user property carrying an async case's heaviest event-loop callback
above :data:`CPU_NOTED` (CPU seconds): report properties
reach this summary from pytest-xdist's workers too."""

NOTED_SHOWN: Final = 5
"""How many of the heaviest noted callbacks the summary names."""


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`FakeClock` at the current time; pass it as ``clock=`` to a cache."""
    return FakeClock()


@pytest.fixture
def cache_namespace() -> str:
    """A namespace unique to this test, so tests can share one cache backend safely."""
    return f"chtest-{uuid.uuid4().hex[:16]}:"


@pytest.hookimpl(trylast=True)  # after pytest-rerunfailures made its socket
def pytest_configure(config: pytest.Config) -> None:
    """Register the conformance suite's markers (``--strict-markers`` accepts them), and
    send pytest-rerunfailures' per-test bookkeeping without Nagle's delay.

    Under pytest-xdist, rerunfailures (which confirms the suite's event-loop verdicts)
    keeps every test's run count on the controller, and each worker asks for it over a
    local TCP socket before each test: a ``set`` sent without waiting for an answer, then
    the next test's ``get``. With Nagle's algorithm on, that second small write waits for
    the controller's delayed ACK of the first, up to 40 ms: a 4,385-test suite took 103 s
    on two workers instead of 16 s. TCP_NODELAY sends each request at once; what is
    sent, and so every rerun decision, stays the same. (A private attribute of the
    plugin: where it is missing, nothing is changed.)
    """
    sock = getattr(getattr(config, "failures_db", None), "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    config.addinivalue_line(
        "markers", "cancellation: a cancellation conformance case (cachehub.testing.cancel)"
    )
    config.addinivalue_line(
        "markers",
        "cancel_smoke: the cancellation cases worth running again on other dependency "
        "versions (a read, a write, a batch, a fill, a lock, a close, loop shutdown)",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the async cases whose event loop ran a callback above :data:`CPU_NOTED`:
    not failures (one callback's CPU time stretches on a shared machine), but where to
    look first when a provider's callbacks grow (docs/conformance.md, "Blocking detector")."""
    noted: list[tuple[float, str]] = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == NOTED_PROPERTY and isinstance(value, int | float):
                    noted.append((float(value), report.nodeid))
    if not noted:
        return
    noted.sort(reverse=True)
    title = f"event-loop callbacks above {CPU_NOTED * 1000:.0f} ms of CPU (noted, not failed)"
    terminalreporter.write_sep("-", title)
    terminalreporter.write_line(f"{len(noted)} case(s); the heaviest:")
    for used, nodeid in noted[:NOTED_SHOWN]:
        terminalreporter.write_line(f"  {used * 1000:.1f} ms  {nodeid}")
