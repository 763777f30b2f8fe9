"""No secret in the traceback of a failed request, on any provider, sync or async.

A typed error's message is scrubbed, but a traceback shows every exception chained to it
too: botocore's ``EndpointConnectionError`` quotes the endpoint URL whole (its userinfo
password, a ``X-Amz-Security-Token`` in its query), and the DynamoDB provider used to
raise ``from`` it, so ``logging.exception`` / ``traceback.format_exc()`` printed the
password. The rule, for every provider: a client library's exception is never chained
(``raise ... from None``; the DynamoDB provider still reads it as ``__context__``, which a
traceback then hides). Each case runs in a child (:func:`~.sandbox.run_bounded`), which
formats the raised error's traceback and every log record (the application's
``log.exception`` and botocore/urllib3/redis DEBUG included).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from cachehub_redis.server import RedisServer

from .conftest import REDIS_PASSWORD, SECRET_MARK, fresh_namespace, redis_settings
from .sandbox import assert_contained, run_bounded

TAIL = "zq9Tail"
"""Second marker, after a secret's special characters (a partial leak is caught too)."""
DOWN = "127.0.0.1:1"
"""A closed port: connections are refused at once."""
SECRETS = {
    "secretkey": f"{SECRET_MARK}-secret+/{TAIL}",
    "sessionToken": f"{SECRET_MARK}-session-token=={TAIL}",
}
FAST_DYNAMO = {
    "tableName": "t",
    "region": "us-east-1",
    "maxAttempts": 1,
    "liveTimeout": 2000,
    "accessKeyId": "AKIATRACEBACKTEST001",
    **SECRETS,
}
OPERATIONS = ("get", "put", "get_many", "exists", "aget", "aput")


def fail_and_log(provider: str, settings: dict[str, Any], operation: str) -> None:
    """Child: one request that fails, logged as an application logs it, then raised again.

    The sandbox formats the raised error (its traceback with causes and contexts) and every
    log record, the application's ``log.exception`` included.
    """
    from cachehub.errors import CacheError

    if provider == "redis":
        from cachehub_redis import RedisCache

        cache: Any = RedisCache(settings)
    else:
        from cachehub_dynamodb import DynamoDBCache

        cache = DynamoDBCache(settings)

    async def on_the_loop() -> None:
        shell = cache.aio()
        try:
            if operation == "aget":
                await shell.get("k")
            else:
                await shell.put("k", "v")
        finally:
            await shell.close()

    try:
        if operation == "get":
            cache.get("k")
        elif operation == "put":
            cache.put("k", "v")
        elif operation == "get_many":
            cache.get_many(["k", "l"])
        elif operation == "exists":
            cache.exists("k")
        else:
            asyncio.run(asyncio.wait_for(on_the_loop(), 20))
    except CacheError:
        logging.getLogger("app").exception("the cache failed")
        raise
    finally:
        cache.close()


def _check(
    provider: str, settings: dict[str, Any], operation: str, errors: tuple[str, ...]
) -> None:
    outcome = run_bounded(fail_and_log, provider, settings, operation, seconds=40)
    assert outcome.kind == "error", outcome.describe()
    assert_contained(outcome, errors=errors, forbidden=(SECRET_MARK, TAIL))
    traceback_text = outcome.texts[2]
    # The one rule: the client library's exception is not chained, whatever its text.
    assert "direct cause" not in traceback_text, traceback_text[-600:]
    assert "During handling" not in traceback_text, traceback_text[-600:]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    "host",
    [
        pytest.param(f"http://admin:{SECRET_MARK}%40%3A{TAIL}@{DOWN}", id="userinfo-password"),
        pytest.param(f"http://{DOWN}/?X-Amz-Security-Token={SECRET_MARK}{TAIL}&a=1", id="query"),
    ],
)
def test_a_dynamodb_endpoint_secret_is_in_no_traceback(host: str, operation: str) -> None:
    _check("dynamodb", {**FAST_DYNAMO, "host": host}, operation, ("CacheUnavailableError",))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_redis_url_password_is_in_no_traceback(operation: str) -> None:
    url = f"redis://user:{SECRET_MARK}%40%23{TAIL}@{DOWN}/0"
    settings = {"url": url, "socketTimeout": 1, "retries": 0, "namespace": fresh_namespace()}
    _check("redis", settings, operation, ("CacheUnavailableError",))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_wrong_redis_password_is_in_no_traceback(
    redis_server: RedisServer, operation: str
) -> None:
    wrong = f"{SECRET_MARK}-wrong:@#{TAIL}"
    settings = redis_settings(redis_server, password=wrong, namespace=fresh_namespace())
    assert wrong != REDIS_PASSWORD
    _check("redis", settings, operation, ("CachePermissionError",))
