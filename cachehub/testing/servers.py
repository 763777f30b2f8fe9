"""Skipping tests that need a server, except on CI, where a missing server is a failure."""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest

__all__ = ["closed_port", "unavailable"]


def unavailable(message: str) -> NoReturn:
    """Skip the calling test (or fixture) because ``message`` says what is missing.

    When the environment variable ``CI`` is set the test fails instead: CI must really
    run every server-backed test, never pass by skipping it.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: this test must run, not skip)")
    pytest.skip(message)


def closed_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on (connections are refused at once).

    For an "unreachable backend" cache in tests. The port was free a moment ago; another
    process could take it meanwhile, which on a loopback test machine is very unlikely.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port
