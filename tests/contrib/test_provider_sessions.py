"""SessionStore on the real Redis server and the moto DynamoDB server.

Same servers as the providers' own test fixtures. Without redis-server / moto the tests
skip locally but fail under CI (env var CI set).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cachehub.api import BaseCache
from cachehub.session import SessionStore
from cachehub.testing import unavailable


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    from cachehub_redis.server import INSTALL_HINT, RedisServer, redis_server_available

    if not redis_server_available():
        unavailable(f"no redis-server found: {INSTALL_HINT}.")
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="module")
def dynamodb_endpoint() -> Iterator[str]:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        unavailable("moto[server] is not installed.")
    from cachehub_dynamodb import LocalDynamoDB

    with LocalDynamoDB() as local:
        yield local.endpoint


@pytest.fixture(params=["redis", "dynamodb"])
def make_provider(request: pytest.FixtureRequest) -> Iterator[Callable[..., BaseCache]]:
    made: list[BaseCache] = []
    table = f"cachehub_sessions_{uuid.uuid4().hex[:8]}"

    def make(**kwargs: Any) -> BaseCache:
        kwargs.setdefault("namespace", f"s{uuid.uuid4().hex[:8]}:")
        cache: BaseCache
        if request.param == "redis":
            from cachehub_redis import RedisCache

            cache = RedisCache(url=request.getfixturevalue("redis_url"), **kwargs)
        else:
            from cachehub_dynamodb import DynamoDBCache

            settings = {
                "tableName": table,
                "host": request.getfixturevalue("dynamodb_endpoint"),
                "accessKeyId": "AKIADUMMYTESTKEY0001",
                "secretkey": "dummy-secret-for-tests",
            }
            cache = DynamoDBCache(settings, **kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


def test_session_lifecycle(make_provider: Callable[..., BaseCache]) -> None:
    store = SessionStore(make_provider(storage=True))
    sid = store.create({"user": "ann", "roles": ["admin"]})
    assert store.load(sid) == {"user": "ann", "roles": ["admin"]}
    new = store.regenerate(sid)
    assert store.load(sid) is None
    assert store.load(new) == {"user": "ann", "roles": ["admin"]}
    assert store.delete(new)
    assert store.load(new) is None


def test_concurrent_commits_merge(make_provider: Callable[..., BaseCache]) -> None:
    store = SessionStore(make_provider(storage=True))
    sid = store.create({"base": 0})
    workers = 6
    sessions = [store.open(sid) for _ in range(workers)]
    barrier = threading.Barrier(workers)

    def request(n: int) -> None:
        sessions[n][f"k{n}"] = n
        barrier.wait()
        store.commit(sessions[n])

    threads = [threading.Thread(target=request, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.load(sid) == {"base": 0, **{f"k{n}": n for n in range(workers)}}
