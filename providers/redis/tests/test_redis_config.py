"""Settings: url parsing, conflicts, Sentinel validation, Lucee names, redaction, registration."""

from __future__ import annotations

from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.connection import build_client, parse_sentinels
from cachehub_redis.plugin import cachehub_providers
from redis import Redis
from redis.sentinel import SentinelConnectionPool

from cachehub.config import SECRET_MASK
from cachehub.errors import ConfigError


def _kwargs(cache: RedisCache) -> dict[str, Any]:
    return cache._plan.kwargs


def test_construction_never_connects() -> None:
    cache = RedisCache(host="203.0.113.1", port=6379)  # TEST-NET: unroutable
    assert cache._conn is None
    assert cache.endpoint == "203.0.113.1:6379"


def test_defaults() -> None:
    cache = RedisCache()
    assert cache.endpoint == "localhost:6379"
    kwargs = _kwargs(cache)
    assert kwargs["socket_timeout"] == 5.0
    assert kwargs["socket_connect_timeout"] == 5.0
    assert kwargs["max_connections"] == 50


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("redis://cache.example:6380/2", "cache.example:6380"),
        ("rediss://user:pw@cache.example:6390", "cache.example:6390"),
        ("unix:///run/redis/redis.sock?db=1", "unix:///run/redis/redis.sock"),
    ],
)
def test_url_forms(url: str, endpoint: str) -> None:
    cache = RedisCache(url=url)
    assert cache.endpoint == endpoint
    assert "pw" not in cache.endpoint


def test_url_client_uses_the_url_settings() -> None:
    cache = RedisCache(url="redis://u:hunter22@cache.example:6380/3", maxConnections=7)
    client = build_client(cache._plan, 1)
    assert isinstance(client, Redis)
    pool_kwargs = client.connection_pool.connection_kwargs
    assert (pool_kwargs["host"], pool_kwargs["port"], pool_kwargs["db"]) == (
        "cache.example",
        6380,
        3,
    )
    assert pool_kwargs["password"] == "hunter22"
    assert client.connection_pool.max_connections == 7
    assert "hunter22" not in repr(cache)
    assert SECRET_MASK in repr(cache)


@pytest.mark.parametrize(
    "url",
    [
        # '/' in the password. (Its pieces are registered as secrets in this process: none
        # may read as hex, which the suite's random namespaces are made of.)
        "redis://:Adm1n@Pr0dSecret/Zq9x@cache.example:6379/0",
        "redis://user:Cl1:p@ss w#rd?x/y@cache.example:6379",
        "rediss://:a@b?c@cache.example",
    ],
)
def test_a_password_that_ends_the_host_part_early_is_refused(url: str) -> None:
    """An unencoded '/', '?' or '#' after an '@' in the password made a piece of it the
    host: shown as the endpoint, in errors, logs and the CLI, and looked up in DNS."""
    with pytest.raises(ConfigError, match="after its host part") as caught:
        RedisCache(url=url)
    shown = f"{caught.value} {caught.value.hint}"
    for piece in ("Pr0dSecret", "Zq9x", "ss w", "rd?x", "a@b"):
        assert piece not in shown
    assert "%40" in shown  # the fix: percent-encode


@pytest.mark.parametrize("path", ["/1a", "/notadb", "/db2", "/0x1"])
def test_a_url_database_that_is_not_a_number_is_refused(path: str) -> None:
    """redis-py drops such a path silently: the cache wrote to database 0."""
    with pytest.raises(ConfigError, match="database part is not a number"):
        RedisCache(url=f"redis://cache.example:6379{path}")
    assert RedisCache(url="redis://cache.example:6379/").endpoint == "cache.example:6379"


def test_password_setting_is_masked() -> None:
    cache = RedisCache(host="h", password="hunter22", sentinelPassword="other-secret")
    assert "hunter22" not in repr(cache)
    assert "other-secret" not in repr(cache)
    assert cache._plan.secrets == ("hunter22", "other-secret")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "http://cache.example"}, "not a Redis URL"),
        ({"url": "redis://h", "host": "x"}, "'url' and 'host'"),
        ({"url": "redis://h", "password": "p"}, "'url' and 'password'"),
        ({"url": "redis://h", "ssl": True}, "rediss://"),
        ({"cluster": True, "db": 3}, "database 0"),
        ({"cluster": True, "url": "redis://h:7000/2"}, "database 0"),
        ({"cluster": True, "sentinel": "m", "sentinels": "h:1"}, "cannot be combined"),
        ({"sentinel": "mymaster"}, "needs both"),
        ({"sentinels": ["h:26379"]}, "needs both"),
        ({"sentinel": "m", "sentinels": "h:1", "url": "redis://h"}, "'url' cannot"),
        ({"db": 1, "databaseIndex": 2}, "Lucee name"),
        ({"socketTimeout": 0}, "minimum"),
        ({"hitFlushInterval": -1}, "hitFlushInterval"),
        ({"hitFlushInterval": "soon"}, "hitFlushInterval"),
        ({"sslCertReqs": "maybe"}, "not one of"),
        ({"hots": "x"}, "Did you mean 'host'"),
    ],
)
def test_invalid_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RedisCache(**settings)


def test_lucee_setting_names() -> None:
    cache = RedisCache(host="h", port=6379, databaseIndex=4, maxTotal=12)
    assert _kwargs(cache)["db"] == 4
    assert _kwargs(cache)["max_connections"] == 12
    assert "db" not in _kwargs(RedisCache(databaseIndex=-1))
    sentinel = RedisCache(masterName="mymaster", sentinels="s1:26379")
    assert sentinel._plan.service == "mymaster"


def test_settings_from_strings_are_coerced() -> None:
    # Values from ${ENV} references arrive as strings.
    cache = RedisCache(port="6390", ssl="true", socketTimeout="2.5", cluster="false")
    assert cache.endpoint == "localhost:6390"
    assert _kwargs(cache)["ssl"] is True
    assert _kwargs(cache)["ssl_cert_reqs"] == "required"
    assert _kwargs(cache)["socket_timeout"] == 2.5


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("s1:26379", (("s1", 26379),)),
        ("s1:26379, s2:26380\ns3:1", (("s1", 26379), ("s2", 26380), ("s3", 1))),
        (["10.0.0.1:26379", "[::1]:26379"], (("10.0.0.1", 26379), ("::1", 26379))),
    ],
)
def test_sentinel_addresses(value: Any, parsed: tuple[tuple[str, int], ...]) -> None:
    assert parse_sentinels(value, "here") == parsed


@pytest.mark.parametrize("value", ["", "s1", "s1:0", "s1:70000", ["s1:1", 5], 26379, "h:x"])
def test_bad_sentinel_addresses(value: Any) -> None:
    with pytest.raises(ConfigError, match="sentinel"):
        RedisCache(sentinel="mymaster", sentinels=value)


def test_sentinel_client_is_built_lazily() -> None:
    cache = RedisCache(sentinel="mymaster", sentinels=["127.0.0.1:1"], password="pw", db=2)
    assert cache.endpoint == "Sentinel service 'mymaster' via 127.0.0.1:1"
    client = build_client(cache._plan, 0)
    assert isinstance(client, Redis)
    assert isinstance(client.connection_pool, SentinelConnectionPool)
    assert client.connection_pool.service_name == "mymaster"


def test_cluster_client() -> None:
    cache = RedisCache(host="127.0.0.1", port=1, cluster=True, socketConnectTimeout=1)
    assert cache.endpoint == "cluster via 127.0.0.1:1"
    assert "db" not in _kwargs(cache)
    assert RedisCache(url="redis://127.0.0.1:1/0", cluster=True)._plan.mode == "cluster"


def test_plugin_registers_alias_and_lucee_class_names() -> None:
    providers = cachehub_providers()
    assert providers["redis"] == "cachehub_redis:RedisCache"
    assert providers["lucee.extension.io.cache.redis.RedisCache"] == "cachehub_redis:RedisCache"
    assert providers["lucee.extension.io.cache.redis.simple.RedisCache"] == (
        "cachehub_redis:RedisCache"
    )
