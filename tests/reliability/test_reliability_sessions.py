"""Hostile session saves in a child process: bounded, typed, and no session id anywhere.

Each case runs a real request through the WSGI session middleware in a fresh
interpreter (``run_bounded``), which records every text a person could see: the error,
its traceback, and every log record at DEBUG (botocore's and redis-py's included). The
session id must appear in none of them (issue #23), nor any configured secret.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

from cachehub_dynamodb import DynamoDBCache, LocalDynamoDB
from cachehub_redis import RedisCache
from cachehub_redis.server import RedisServer

from cachehub.api import BaseCache
from cachehub.contrib.wsgi import SessionMiddleware
from cachehub.session import SessionStore, TrackedSession

from .conftest import SECRET_MARK, dynamodb_settings, fresh_namespace, redis_settings
from .sandbox import assert_contained, run_bounded


def _cache(provider: str, settings: dict[str, Any], namespace: str) -> BaseCache:
    kind = RedisCache if provider == "redis" else DynamoDBCache
    return kind(settings, namespace=namespace, storage=True, name="sessions")


def _request(
    provider: str, settings: dict[str, Any], namespace: str, sid: str, path: str, hold: bool
) -> str:
    """Child: one request on session ``sid``; ``hold`` first plants a claim on its next
    version that never lapses (a writer elsewhere that hung), so the save must give up."""
    cache = _cache(provider, settings, namespace)
    store = SessionStore(cache, lock_ttl=0.2, lock_timeout=0.5)
    if hold:
        cache.add(store.storage_key(sid) + "#2", "write", time_span=600)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session: TrackedSession = environ["cachehub.session"]
        if path == "/big":  # incompressible, beyond DynamoDB's 400 KB item limit
            session["blob"] = os.urandom(500_000)
        else:
            session["x"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    environ: dict[str, Any] = {"PATH_INFO": path, "HTTP_COOKIE": f"session={sid}"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = SessionMiddleware(app, store)(environ, lambda s, h, e=None: status.append(s))
    b"".join(body)
    return status[0]


def _session(provider: str, settings: dict[str, Any], namespace: str) -> str:
    return SessionStore(_cache(provider, settings, namespace)).create({"user_id": 42})


def test_save_behind_a_hung_writer_is_bounded_and_names_no_id(
    redis_server: RedisServer,
) -> None:
    settings, namespace = redis_settings(redis_server), fresh_namespace("sess")
    sid = _session("redis", settings, namespace)
    outcome = run_bounded(_request, "redis", settings, namespace, sid, "/set", True, seconds=60)
    assert outcome.kind == "error", outcome.describe()
    assert_contained(outcome, errors=("SessionBusyError",), forbidden=(sid, SECRET_MARK))
    assert SessionStore(_cache("redis", settings, namespace)).load(sid) == {"user_id": 42}


def test_item_too_large_names_no_id(local_dynamodb: LocalDynamoDB, shared_table: str) -> None:
    settings, namespace = dynamodb_settings(local_dynamodb.endpoint), fresh_namespace("sess")
    sid = _session("dynamodb", settings, namespace)
    outcome = run_bounded(_request, "dynamodb", settings, namespace, sid, "/big", False, seconds=60)
    assert outcome.kind == "error", outcome.describe()
    assert_contained(outcome, errors=("CacheValueError",), forbidden=(sid, SECRET_MARK))
    assert "400 KB" in outcome.message
    assert SessionStore(_cache("dynamodb", settings, namespace)).load(sid) == {"user_id": 42}
