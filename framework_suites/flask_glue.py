"""Flask-Caching's ``app`` fixture with cachehub's adapter as its cache type.

Imported at the end of Flask-Caching's extracted ``conftest.py`` by
``python -m framework_suites``, so that it replaces the suite's own ``app`` fixture
(which uses ``SimpleCache``); tests that pick another ``CACHE_TYPE`` themselves keep it.
"""

from __future__ import annotations

import os
from typing import Any

import cachelib.simple
import flask
import pytest

from cachehub.registry import Caches, get_caches
from framework_suites.backends import PROVIDERS, SECRET, configure, entry

_NAMES = configure("flask:")
_CLOCKED = Caches(
    # The suite's `clock` fixture moves the clock of cachelib's SimpleCache module (an
    # internal of that backend). On the memory provider the adapter's cache follows the
    # same clock, so those tests run; Redis and DynamoDB expire entries in real time on
    # the server, which no test can move: there they are skipped, with that reason.
    {"fw-memory-clocked": entry("memory", "flask:clocked:")},
    clock=lambda: cachelib.simple.time(),  # type: ignore[attr-defined]
)
CLOCK_SKIP = (
    "the test moves cachelib.simple's module clock (a SimpleCache internal); Redis and "
    "DynamoDB expire entries in real time on the server (the test runs on memory)"
)


@pytest.fixture(params=PROVIDERS)
def _cachehub_provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(request: pytest.FixtureRequest, _cachehub_provider: str) -> flask.Flask:
    """A Flask app whose cache is ``CacheHubFlaskCache`` on one provider (parametrized)."""
    provider = _cachehub_provider
    faked = "clock" in request.fixturenames
    if faked and provider != "memory":
        pytest.skip(CLOCK_SKIP)
    backing: Any = (
        _CLOCKED.get("fw-memory-clocked") if faked else get_caches().get(_NAMES[provider])
    )
    backing.clear()
    app = flask.Flask(request.module.__name__, template_folder=os.path.dirname(request.path))
    app.testing = True
    app.config["SECRET_KEY"] = SECRET
    app.config["CACHE_TYPE"] = "cachehub.contrib.flask_cache.CacheHubFlaskCache"
    app.config["CACHEHUB_CACHE"] = backing
    return app
