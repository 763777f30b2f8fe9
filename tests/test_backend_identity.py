"""Backend identity comes from the provider; check_namespaces only compares identities."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_memory import MemoryCache
from cachehub_redis import RedisCache

from cachehub import Caches
from cachehub.api import BASE_OPTIONS
from cachehub.config import validate_settings
from cachehub.errors import ConfigError
from cachehub.testing.reference import ReferenceCache


def _identity(cls: Any, **custom: Any) -> Hashable | None:
    settings = validate_settings(custom, (*BASE_OPTIONS, *cls.options), where="test")
    result: Hashable | None = cls.backend_identity(settings)
    return result


def _nested(cls: str, outer: Mapping[str, Any], inner: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "outer": {"class": cls, "custom": {**outer, "namespace": "app:"}},
        "inner": {"class": cls, "custom": {**inner, "namespace": "app:x:"}},
    }


# ---------------------------------------------------------------------- memory


def test_two_private_memory_caches_never_share(caplog: pytest.LogCaptureFixture) -> None:
    # Each private store is its own backend: no refusal and no false warning.
    with caplog.at_level(logging.WARNING):
        Caches(_nested("memory", {}, {}))
        Caches({"a": {"class": "memory"}, "b": {"class": "memory", "custom": {"namespace": "b:"}}})
    assert caplog.records == []
    assert _identity(MemoryCache) is None


def test_memory_caches_on_one_named_store_are_checked() -> None:
    with pytest.raises(ConfigError, match="lies inside"):
        Caches(_nested("memory", {"store": "s"}, {"store": "s"}))
    Caches(_nested("memory", {"store": "s"}, {"store": "t"}))


# ---------------------------------------------------------------------- redis


@pytest.mark.parametrize(
    ("outer", "inner"),
    [
        ({"url": "redis://cache.example:6379/0"}, {"host": "cache.example", "port": 6379}),
        ({"url": "redis://cache.example:6380/2"}, {"host": "CACHE.example", "port": 6380, "db": 2}),
        ({"url": "redis://localhost/0"}, {"host": "127.0.0.1"}),
        ({"host": "::1", "port": 6379}, {}),  # defaults: localhost:6379, db 0
        ({"databaseIndex": -1}, {"db": 0}),  # Lucee's "default database"
        ({"url": "redis://:pw@cache.example:6379"}, {"url": "redis://cache.example:6379/0"}),
    ],
    ids=["url-vs-host", "case-and-db", "localhost", "ipv6-loopback", "lucee-db", "password"],
)
def test_redis_spellings_of_one_server_are_one_backend(
    outer: dict[str, Any], inner: dict[str, Any]
) -> None:
    assert _identity(RedisCache, **outer) == _identity(RedisCache, **inner)
    with pytest.raises(ConfigError, match="lies inside"):
        Caches(_nested("redis", outer, inner))


@pytest.mark.parametrize(
    ("outer", "inner"),
    [
        ({"url": "redis://h:6379/0"}, {"url": "redis://h:6379/1"}),
        ({"host": "h", "port": 6379}, {"host": "h", "port": 6380}),
        ({"host": "a"}, {"host": "b"}),
        ({"url": "unix:///tmp/r.sock"}, {"url": "unix:///tmp/other.sock"}),
        ({"host": "h"}, {"host": "h", "cluster": True}),
    ],
    ids=["db", "port", "host", "socket", "cluster"],
)
def test_redis_different_servers_are_different_backends(
    outer: dict[str, Any], inner: dict[str, Any]
) -> None:
    assert _identity(RedisCache, **outer) != _identity(RedisCache, **inner)
    Caches(_nested("redis", outer, inner))


def test_redis_sentinel_identity_ignores_sentinel_order() -> None:
    one = _identity(RedisCache, sentinel="m", sentinels=["s1:26379", "s2:26379"])
    two = _identity(RedisCache, masterName="m", sentinels="s2:26379, s1:26379")
    assert one == two
    assert one != _identity(RedisCache, sentinel="other", sentinels=["s1:26379"])


def test_redis_identity_never_holds_the_password() -> None:
    identity = _identity(RedisCache, url="redis://user:SuperSecret-123@h:6379/0")
    assert "SuperSecret-123" not in repr(identity)


# ---------------------------------------------------------------------- dynamodb


def test_dynamodb_one_table_on_one_endpoint_is_one_backend() -> None:
    creds = {"accessKeyId": "a", "secretkey": "b"}
    outer = {"tableName": "t", "host": "http://localhost:8000/", **creds}
    inner = {"tableName": " t ", "host": "HTTP://localhost:8000", "consistentRead": True, **creds}
    assert _identity(DynamoDBCache, **outer) == _identity(DynamoDBCache, **inner)
    with pytest.raises(ConfigError, match="lies inside"):
        Caches(_nested("dynamodb", outer, inner))
    assert _identity(DynamoDBCache, tableName="t", region="eu-west-1") != _identity(
        DynamoDBCache, tableName="t", region="us-east-1"
    )
    assert _identity(DynamoDBCache, tableName="t", region="eu-west-1") != _identity(
        DynamoDBCache, tableName="u", region="eu-west-1"
    )


# ---------------------------------------------------------------------- the core's part


class _Shared(ReferenceCache):
    """A distributed provider with no identity of its own: the conservative default."""

    distributed: ClassVar[bool] = True


class _BrokenIdentity(ReferenceCache):
    @classmethod
    def backend_identity(cls, settings: Mapping[str, Any]) -> Hashable | None:
        raise RuntimeError("identity bug")


class _UnhashableIdentity(ReferenceCache):
    @classmethod
    def backend_identity(cls, settings: Mapping[str, Any]) -> Hashable | None:
        return ("x", ["a list"])


def test_default_identity_of_a_distributed_provider_is_its_settings() -> None:
    path = f"{__name__}:_Shared"
    with pytest.raises(ConfigError, match="lies inside"):
        Caches(_nested(path, {"log": "x"}, {"log": "x"}))
    Caches(_nested(path, {"log": "x"}, {"log": "y"}))  # may differ: not refused
    assert _identity(ReferenceCache) is None  # not distributed: private


def test_invalid_settings_fall_back_to_equal_settings() -> None:
    # The provider cannot read these settings (no tableName), but equal ones are one store.
    custom = {"host": "http://127.0.0.1:1"}
    with pytest.raises(ConfigError, match="lies inside"):
        Caches(_nested("dynamodb", custom, custom))


def test_unresolvable_class_is_left_to_fail_on_use() -> None:
    caches = Caches(_nested("no_such_module_xyz:Cache", {}, {}))
    with pytest.raises(ConfigError):
        caches["outer"]


@pytest.mark.parametrize(
    ("provider", "message"),
    [("_BrokenIdentity", "RuntimeError: identity bug"), ("_UnhashableIdentity", "unhashable")],
)
def test_a_broken_identity_hook_is_a_config_error(provider: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Caches({"a": {"class": f"{__name__}:{provider}"}})
    assert provider in str(info.value)


@pytest.mark.parametrize("spelling", ["namespace", "Namespace", "NAMESPACE", "name_space"])
def test_every_spelling_of_namespace_is_checked_for_nesting(spelling: str) -> None:
    # On main the check read custom["namespace"] raw: "Namespace" (a spelling the settings
    # accept) slipped past it, and outer.clear() wiped the inner cache.
    config = {
        "outer": {"class": "memory", "custom": {"store": "s1", spelling: "app:"}},
        "inner": {"class": "memory", "custom": {"store": "s1", spelling: "app:x:"}},
    }
    with pytest.raises(ConfigError, match="lies inside cache 'outer'"):
        Caches(config)


def test_a_lucee_key_prefix_is_the_namespace_it_sets() -> None:
    # Redis's Lucee "keyPrefix" sets the namespace: two caches on one server whose
    # prefixes nest are refused as two cachehub namespaces would be.
    lucee = "lucee.extension.io.cache.redis.RedisCache"
    config = {
        "outer": {"class": lucee, "custom": {"host": "127.0.0.1", "keyPrefix": "app:"}},
        "inner": {"class": "redis", "custom": {"host": "127.0.0.1", "namespace": "app:x:"}},
    }
    with pytest.raises(ConfigError, match="lies inside cache 'outer'"):
        Caches(config)
