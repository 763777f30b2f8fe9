"""Outages and refused credentials: typed errors, no secrets, and recovery without a new cache."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.server import RedisServer

from cachehub.errors import CachePermissionError, CacheUnavailableError

PASSWORD = "s3cret-Pa55word-xyz"


@pytest.fixture
def own_server(require_redis: None) -> Iterator[RedisServer]:
    """A private persistent server this test may kill and restart."""
    with RedisServer(persistence=True) as server:
        yield server


@pytest.fixture(scope="module")
def locked_server(require_redis: None) -> Iterator[RedisServer]:
    """A server with requirepass."""
    with RedisServer(password=PASSWORD) as server:
        yield server


def test_outage_raises_unavailable_and_the_same_cache_recovers(own_server: RedisServer) -> None:
    cache = RedisCache(
        host=own_server.host, port=own_server.port, socketTimeout=1, socketConnectTimeout=1
    )
    cache.put("kept", {"v": 1})
    cache.put_many({"a": 1, "b": 2})

    own_server.stop()
    for operation in (
        lambda: cache.get("kept"),
        lambda: cache.put("x", 1),
        lambda: cache.get_many(["a", "b"]),
        lambda: cache.count(),
        lambda: list(cache.keys()),
    ):
        with pytest.raises(CacheUnavailableError) as info:
            operation()
        message = str(info.value)
        assert f"{own_server.host}:{own_server.port}" in message
        assert "redis-server is running" in message

    own_server.start()  # same port; the append-only file brings the data back
    assert cache.get("kept") == {"v": 1}
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
    cache.put("x", 2)
    assert cache.incr("counter") == 1
    cache.close()


def test_restart_without_scripts_reloads_them(own_server: RedisServer) -> None:
    cache = RedisCache(url=own_server.url)
    cache.put_many({"a": 1, "b": 2})
    own_server.client().script_flush()  # what a restart without persistence does
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
    assert cache.delete_many(["a", "b"]) == 2
    cache.close()


def test_on_error_miss_degrades_to_a_miss(own_server: RedisServer) -> None:
    cache = RedisCache(url=own_server.url, onError="miss", socketTimeout=1)
    cache.put("k", "v")
    own_server.stop()
    assert cache.get("k", "fallback") == "fallback"
    own_server.start()
    assert cache.get("k") == "v"
    cache.close()


def test_unreachable_host_fails_on_use_not_on_construction() -> None:
    cache = RedisCache(host="127.0.0.1", port=1, socketConnectTimeout=1, retries=0)
    with pytest.raises(CacheUnavailableError, match="check url/host/port"):
        cache.get("k")


@pytest.mark.parametrize("style", ["settings", "url"])
def test_wrong_password_is_a_permission_error_without_the_password(
    locked_server: RedisServer, caplog: pytest.LogCaptureFixture, style: str
) -> None:
    wrong = "wrong-" + PASSWORD
    if style == "url":
        cache = RedisCache(url=f"redis://:{wrong}@{locked_server.host}:{locked_server.port}/0")
    else:
        cache = RedisCache(host=locked_server.host, port=locked_server.port, password=wrong)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CachePermissionError) as info:
        cache.put("k", "v")
    for shown in (str(info.value), repr(info.value), repr(cache), caplog.text):
        assert wrong not in shown
        assert PASSWORD not in shown
    assert "password" in str(info.value)


def test_missing_password_is_a_permission_error(locked_server: RedisServer) -> None:
    cache = RedisCache(url=locked_server.url)
    with pytest.raises(CachePermissionError):
        cache.get("k")


def test_right_password_works_and_stays_hidden(
    locked_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cache = RedisCache(host=locked_server.host, port=locked_server.port, password=PASSWORD)
    cache.put("k", "v")
    assert cache.get("k") == "v"
    assert PASSWORD not in repr(cache)
    assert PASSWORD not in caplog.text
    via_url = RedisCache(url=f"redis://default:{PASSWORD}@127.0.0.1:{locked_server.port}/0")
    assert via_url.get("k") == "v"
    assert PASSWORD not in repr(via_url)
    cache.close()
    via_url.close()
