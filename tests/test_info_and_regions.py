"""cache.info() (cacheGetProperties) and Caches.add/remove (cacheRegionNew/Remove)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cachehub_dynamodb.local import LocalDynamoDB
from cachehub_redis.server import RedisServer, redis_server_available
from click.testing import CliRunner

from cachehub.api import BaseCache
from cachehub.cli.app import cli
from cachehub.errors import CacheUnavailableError, ConfigError, UnknownCacheError
from cachehub.registry import Caches

SECRET = "Info-Secret-NeverShown-77"


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[LocalDynamoDB]:
    with LocalDynamoDB() as local:
        yield local


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    if not redis_server_available():
        pytest.skip("no redis-server")
    with RedisServer(password=SECRET) as server:
        yield server


def _base(info: dict[str, Any], name: str) -> None:
    assert info["name"] == name
    assert {"provider", "namespace", "readOnly", "storage", "distributed", "codec"} <= set(info)
    json.dumps(info)  # plain JSON types only
    assert SECRET not in json.dumps(info)


def test_memory_info_counts_entries_and_bytes() -> None:
    with Caches({"m": {"class": "memory", "custom": {"maxsize": 50, "policy": "lfu"}}}) as caches:
        cache = caches["m"]
        cache.put("a", "x" * 100)
        cache.put("b", 2)
        cache.put("gone", 1, time_span=0.001)
        info = cache.info()
        _base(info, "m")
        assert info["maxsize"] == 50
        assert info["policy"] == "lfu"
        assert info["count"] == 2 or info["count"] == 3  # "gone" may still be alive
        assert info["bytes"] > 100
        refs = Caches({"r": {"class": "memory", "custom": {"serialize": False}}})["r"]
        refs.put("a", [1])
        assert refs.info()["bytes"] is None


def test_memory_info_counts_only_its_namespace() -> None:
    config = {
        "a": {"class": "memory", "custom": {"store": "info-shared", "namespace": "a:"}},
        "b": {"class": "memory", "custom": {"store": "info-shared", "namespace": "b:"}},
    }
    with Caches(config) as caches:
        caches["a"].put_many({f"k{i}": i for i in range(5)})
        caches["b"].put("k", 1)
        assert caches["a"].info()["count"] == 5
        assert caches["a"].info()["storeSize"] == 6


def test_dynamodb_info_reports_the_table(dynamodb: LocalDynamoDB) -> None:
    entry = {
        "class": "dynamodb",
        "custom": {
            "table": "info_table",
            "host": dynamodb.endpoint,
            "accessKeyId": "AKIAINFO",
            "secretkey": SECRET,
        },
    }
    with Caches({"d": entry}) as caches:
        cache = caches["d"]
        cache.put("k", 1)
        info = cache.info()
    _base(info, "d")
    assert info["table"] == "info_table"
    assert info["tableStatus"] == "ACTIVE"
    assert info["keySchema"] == [{"name": "cacheKey", "type": "HASH"}]
    assert info["billingMode"] in ("PAY_PER_REQUEST", "PROVISIONED")
    assert info["ttlStatus"] == "ENABLED"
    assert info["ttlAttribute"]
    assert info["indexes"] == []
    assert isinstance(info["itemCount"], int)


def test_redis_info_reports_server_and_namespace(redis: RedisServer) -> None:
    custom = {"host": redis.host, "port": redis.port, "password": SECRET, "namespace": "inf:"}
    with Caches({"r": {"class": "redis", "custom": custom}}) as caches:
        cache = caches["r"]
        cache.put_many({"a": 1, "b": 2, "c": 3})
        info = cache.info()
    _base(info, "r")
    assert info["serverVersion"]
    assert info["serverInfo"] == "ok"
    assert info["mode"] == "single"
    assert info["usedMemory"] > 0
    assert info["count"] == 3


def test_info_of_an_unreachable_backend_is_typed_even_under_on_error_miss() -> None:
    custom = {"host": "127.0.0.1", "port": 9, "onError": "miss", "retries": 0, "password": SECRET}
    with Caches({"r": {"class": "redis", "custom": custom}}) as caches:
        with pytest.raises(CacheUnavailableError) as info:
            caches["r"].info()
        assert SECRET not in str(info.value)


def test_cli_info(tmp_path: Path) -> None:
    path = tmp_path / "caches.json"
    path.write_text(json.dumps({"m": {"class": "memory"}, "n": {"class": "memory"}}))
    result = CliRunner().invoke(cli, ["--config", str(path), "info", "n", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["name"] == "n"
    table = CliRunner().invoke(cli, ["--config", str(path), "info", "m"])
    assert table.exit_code == 0
    assert "policy" in table.stdout
    missing = CliRunner().invoke(cli, ["--config", str(path), "info", "nope"])
    assert missing.exit_code != 0
    assert "Traceback" not in missing.output


# ---------------------------------------------------------------------- add / remove


def test_add_and_remove_at_run_time() -> None:
    caches = Caches({"main": {"class": "memory"}})
    added = caches.add("reports", {"class": "memory", "custom": {"maxsize": 10}})
    assert caches["REPORTS"] is added
    assert caches.names() == ["main", "reports"]
    assert caches.default_name == "main"  # a second cache does not take the default away
    added.put("k", 1)
    caches.remove("Reports")
    assert "reports" not in caches
    with pytest.raises(UnknownCacheError):
        caches["reports"]
    assert caches.default_name == "main"


def test_add_refuses_clashes_and_changes_nothing() -> None:
    caches = Caches({"main": {"class": "memory", "default": True}})
    before = caches.names()
    with pytest.raises(ConfigError, match="already configured"):
        caches.add("MAIN", {"class": "memory"})
    with pytest.raises(ConfigError, match="several caches are marked default"):
        caches.add("other", {"class": "memory", "default": True})
    with pytest.raises(ConfigError, match="unknown setting"):
        caches.add("bad", {"class": "memory", "custom": {"maxsise": 3}})
    with pytest.raises(ConfigError, match="non-empty string"):
        caches.add(" padded ", {"class": "memory"})
    with pytest.raises(ConfigError, match="non-empty string"):
        caches.add("", {"class": "memory"})
    with pytest.raises(ConfigError, match="must be a mapping"):
        caches.add("x", "memory")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="lies inside"):
        shared = {"store": "regions-shared"}
        caches.add("outer", {"class": "memory", "custom": {**shared, "namespace": "a:"}})
        caches.add("inner", {"class": "memory", "custom": {**shared, "namespace": "a:b:"}})
    assert caches.names() == [*before, "outer"]
    assert caches.default_name == "main"


def test_add_with_an_unset_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGIONS_UNSET", raising=False)
    caches = Caches({"main": {"class": "memory"}})
    with pytest.raises(ConfigError, match="REGIONS_UNSET"):
        caches.add("x", {"class": "memory", "custom": {"namespace": "${REGIONS_UNSET}"}})
    assert "x" not in caches


def test_remove_closes_the_cache_and_recomputes_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caches = Caches({"a": {"class": "memory"}, "b": {"class": "memory"}})
    assert caches.default_name is None
    built = caches["a"]
    closed: list[BaseCache] = []
    monkeypatch.setattr(built, "close", lambda: closed.append(built))
    caches.remove("a")
    assert closed == [built]
    assert caches.default_name == "b"  # the only cache left
    with pytest.raises(UnknownCacheError):
        caches.remove("a")


def test_add_remove_and_get_from_threads_stay_consistent() -> None:
    caches = Caches({"main": {"class": "memory"}})
    errors: list[BaseException] = []
    rounds = 40

    def churn(worker: int) -> None:
        try:
            for i in range(rounds):
                name = f"w{worker}-{i}"
                cache = caches.add(name, {"class": "memory"})
                cache.put("k", i)
                assert caches[name].get("k") == i
                caches["main"].incr("n")
                caches.remove(name)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert caches.names() == ["main"]
    assert caches["main"].get("n") == 4 * rounds
