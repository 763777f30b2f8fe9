"""Skipping tests that need a server, except on CI, where a missing server is a failure."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["unavailable"]


def unavailable(message: str) -> NoReturn:
    """Skip the calling test (or fixture) because ``message`` says what is missing.

    When the environment variable ``CI`` is set the test fails instead: CI must really
    run every server-backed test, never pass by skipping it.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: this test must run, not skip)")
    pytest.skip(message)
