"""The Caches registry: lookup, lazy construction, defaults, validation, global helpers."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cachehub_memory import MemoryCache
from spec_examples import CFCONFIG, SECRET

from cachehub import plugins, registry
from cachehub.errors import (
    CacheError,
    ConfigError,
    MissingPackageError,
    ReadOnlyCacheError,
    UnknownProviderError,
)
from cachehub.hookspecs import hookimpl
from cachehub.registry import Caches, UnknownCacheError, configure, get_caches


class CountingCache(MemoryCache):
    """Counts constructions and closes, to observe the registry's laziness."""

    built: ClassVar[int] = 0
    closed: ClassVar[int] = 0

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        type(self).built += 1
        super().__init__(settings, **kwargs)

    def _close(self) -> None:
        type(self).closed += 1


class ExplodingCache(MemoryCache):
    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        raise RuntimeError("constructor bug for redis://u:pw-value@host/0")


class FailingCloseCache(MemoryCache):
    def _close(self) -> None:
        raise CacheError("close failed")


class ProvidersPlugin:
    @hookimpl
    def cachehub_providers(self) -> dict[str, Any]:
        return {
            "counting": CountingCache,
            "exploding": ExplodingCache,
            "failing-close": FailingCloseCache,
        }


@pytest.fixture(autouse=True)
def providers() -> Iterator[None]:
    plugin = ProvidersPlugin()
    plugins.register(plugin)
    CountingCache.built = CountingCache.closed = 0
    yield
    plugins.unregister(plugin)


@pytest.fixture
def fresh_global(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No process-wide registry, no CACHEHUB_CONFIG, and an empty working directory."""
    monkeypatch.setattr(registry, "_current", None)
    monkeypatch.delenv(registry.CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------------- lookup


def test_lookup_is_lazy_and_memoised() -> None:
    caches = Caches({"a": {"class": "counting"}, "b": {"class": "counting"}})
    assert CountingCache.built == 0
    first = caches["a"]
    assert CountingCache.built == 1
    assert caches["a"] is first
    assert caches.get("a") is first
    assert caches["A"] is first  # Lucee cache names are case-insensitive
    assert CountingCache.built == 1


def test_concurrent_first_lookups_build_once() -> None:
    caches = Caches({"a": {"class": "counting"}})
    barrier = threading.Barrier(8)
    seen: list[Any] = []

    def look() -> None:
        barrier.wait()
        seen.append(caches["a"])

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert CountingCache.built == 1
    assert len({id(c) for c in seen}) == 1


def test_construction_arguments_reach_the_provider() -> None:
    def clock() -> float:
        return 1000.0

    caches = Caches(
        {
            "s": {
                "class": "memory",
                "storage": True,
                "readOnly": False,
                "custom": {"maxsize": 7, "namespace": "app:"},
            }
        },
        clock=clock,
    )
    cache = caches["s"]
    assert isinstance(cache, MemoryCache)
    assert cache.name == "s"
    assert cache.storage is True
    assert cache.read_only is False
    assert cache.settings["maxsize"] == 7
    assert cache.namespace == "app:"
    assert cache._clock is clock
    cache.put("k", 1, time_span=10)
    assert cache.metadata("k").created.timestamp() == 1000.0


def test_read_only_entry_rejects_writes() -> None:
    cache = Caches({"ro": {"class": "memory", "readOnly": True}})["ro"]
    assert cache.get("k", "dflt") == "dflt"
    with pytest.raises(ReadOnlyCacheError, match="cache 'ro' is read-only"):
        cache.put("k", 1)
    with pytest.raises(ReadOnlyCacheError):
        cache.delete("k")


def test_unknown_name_lists_names_and_suggests() -> None:
    caches = Caches({"sessions": {"class": "memory"}, "queries": {"class": "memory"}})
    with pytest.raises(UnknownCacheError, match="Did you mean 'sessions'") as info:
        caches["sesions"]
    assert "sessions, queries" in str(info.value)
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, ConfigError)
    with pytest.raises(KeyError):
        caches.get("nope")


@pytest.mark.parametrize("bad", [None, 3])
def test_getitem_needs_a_name(bad: Any) -> None:
    caches = Caches({"a": {"class": "memory"}})
    with pytest.raises(UnknownCacheError):
        caches[bad]


def test_container_protocol() -> None:
    caches = Caches({"a": {"class": "memory"}, "b": {"class": "memory", "default": "object"}})
    assert caches.names() == ["a", "b"]
    assert list(caches) == ["a", "b"]
    assert len(caches) == 2
    assert "a" in caches
    assert "B" in caches
    assert "c" not in caches
    assert 3 not in caches
    assert [e.name for e in caches.entries()] == ["a", "b"]
    assert caches.entry().name == "b"
    assert caches.entry("A").class_name == "memory"


# ---------------------------------------------------------------------- defaults


def test_default_is_the_marked_entry() -> None:
    caches = Caches({"a": {"class": "memory"}, "b": {"class": "memory", "default": True}})
    assert caches.default_name == "b"
    assert caches.get() is caches["b"]


def test_default_is_the_only_entry() -> None:
    caches = Caches({"only": {"class": "memory"}})
    assert caches.get() is caches["only"]


def test_no_default_among_several() -> None:
    caches = Caches({"a": {"class": "memory"}, "b": {"class": "memory"}})
    assert caches.default_name is None
    with pytest.raises(ConfigError, match=r"no default cache: 2 caches are configured \(a, b\)"):
        caches.get()


def test_several_defaults_fail_at_load() -> None:
    with pytest.raises(ConfigError, match="several caches are marked default"):
        Caches(
            {"a": {"class": "memory", "default": True}, "b": {"class": "memory", "default": 1 > 0}}
        )


def test_empty_registry() -> None:
    caches = Caches()
    assert caches.names() == []
    assert caches.validate() == {}
    with pytest.raises(ConfigError, match="none is marked default"):
        caches.get()


# ---------------------------------------------------------------------- spec examples


def test_spec_cfconfig_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    path = tmp_path / ".CFConfig.json"
    path.write_text(CFCONFIG)
    caches = Caches.from_file(path)
    assert caches.default_name == "dynamo"  # the only entry
    cache = caches["dynamo"]
    assert type(cache).__module__.startswith("cachehub_dynamodb")
    assert cache.read_only is False
    assert SECRET not in repr(cache)
    assert SECRET not in repr(caches)


def test_spec_cfconfig_example_without_the_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, without_distribution: Any
) -> None:
    without_distribution("cachehub-dynamodb", "cachehub_dynamodb")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    path = tmp_path / ".CFConfig.json"
    path.write_text(CFCONFIG)
    caches = Caches.from_file(path)
    with pytest.raises(MissingPackageError) as info:
        caches["dynamo"]
    checkout = Path(__file__).resolve().parents[1] / "providers" / "dynamodb"
    assert info.value.hint == f"pip install {checkout}"
    assert "cache 'dynamo'" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(caches)


def test_spec_ehcache_migration_example() -> None:
    config = {
        "cache": {
            "connections": {
                "ehcache": {"class": "lucee.runtime.cache.eh.EHCache", "storage": False},
                "dynamo": {
                    "class": "org.lucee.extension.aws.dynamodb.DynamoDBCache",
                    "maven": "org.lucee:dynamodb:1.0.0.7-RC",
                    "storage": False,
                    "custom": {"tableName": "app_cache", "region": "us-east-1"},
                },
            }
        }
    }
    caches = Caches(config)
    ehcache = caches["ehcache"]
    assert type(ehcache) is MemoryCache
    ehcache.put("key", "value")
    assert ehcache.get("key") == "value"
    assert type(caches["dynamo"]).__module__.startswith("cachehub_dynamodb")


def test_application_overrides_server(tmp_path: Path) -> None:
    server = tmp_path / "server.json"
    server.write_text(json.dumps({"caches": {"main": {"class": "dynamodb"}}}))
    caches = Caches({"main": {"class": "memory"}}, server_config=server)
    assert type(caches["main"]) is MemoryCache


# ---------------------------------------------------------------------- construction errors


def test_package_requirement_checked_on_build() -> None:
    caches = Caches({"a": {"class": "memory", "package": "cachehub-no-such-provider>=0.1"}})
    with pytest.raises(MissingPackageError, match="cache 'a'") as info:
        caches["a"]
    assert info.value.hint == "pip install 'cachehub-no-such-provider>=0.1'"
    ok = Caches({"a": {"class": "memory", "package": "cachehub-memory>=0.1"}})
    assert type(ok["a"]) is MemoryCache


def test_provider_settings_errors_name_the_cache() -> None:
    caches = Caches({"a": {"class": "memory", "custom": {"maxsise": 3}}})
    with pytest.raises(ConfigError, match=r"cache 'a'.*Did you mean 'maxsize'"):
        caches["a"]


def test_foreign_constructor_exception_becomes_config_error() -> None:
    caches = Caches({"x": {"class": "exploding"}})
    with pytest.raises(ConfigError, match="creating ExplodingCache failed: RuntimeError") as info:
        caches["x"]
    assert "pw-value" not in str(info.value)


def test_validate_returns_providers() -> None:
    caches = Caches({"a": {"class": "memory"}, "b": {"class": "counting"}})
    assert caches.validate() == {
        "a": "cachehub_memory.cache:MemoryCache",
        "b": f"{__name__}:CountingCache",
    }
    assert CountingCache.built == 1
    assert caches["b"] is caches.get("b")
    assert CountingCache.built == 1


def test_validate_reraises_a_single_error_with_its_type() -> None:
    caches = Caches({"good": {"class": "memory"}, "bad": {"class": "memroy"}})
    with pytest.raises(UnknownProviderError, match=r"cache 'bad'.*Did you mean 'memory'"):
        caches.validate()


def test_validate_lists_every_broken_entry() -> None:
    caches = Caches(
        {
            "good": {"class": "memory"},
            "bad1": {"class": "memroy"},
            "bad2": {"class": "memory", "custom": {"policy": "nope"}},
        }
    )
    with pytest.raises(ConfigError) as info:
        caches.validate()
    message = str(info.value)
    assert "2 of 3 caches are misconfigured" in message
    assert "cache 'bad1'" in message
    assert "cache 'bad2'" in message
    assert "good" not in message


# ---------------------------------------------------------------------- lifecycle, repr


def test_close_and_context_manager() -> None:
    with Caches({"a": {"class": "counting"}, "b": {"class": "counting"}}) as caches:
        caches["a"].put("k", 1)
    assert CountingCache.closed == 1  # only built caches are closed
    assert caches["a"].get("k") == 1  # still usable: providers reconnect lazily


def test_close_reports_failures_after_closing_everything() -> None:
    caches = Caches({"a": {"class": "failing-close"}, "b": {"class": "counting"}})
    caches["a"]
    caches["b"]
    with pytest.raises(CacheError, match="close failed"):
        caches.close()
    assert CountingCache.closed == 1


def test_repr_masks_secrets(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        caches = Caches(
            {
                "a": {
                    "class": "memory",
                    "maven": "x",
                    "custom": {"signingKey": SECRET, "codec": "pickle"},
                },
                "b": {"class": "memory", "custom": {"secretkey": SECRET}, "default": True},
            }
        )
        cache = caches["a"]
        with pytest.raises(ConfigError) as info:
            caches["b"]  # memory has no 'secretkey' setting
    assert SECRET not in repr(caches)
    assert SECRET not in str(caches)
    assert SECRET not in repr(cache)
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text
    assert all(SECRET not in str(r.args) for r in caplog.records)
    assert "default='b'" in repr(caches)


# ---------------------------------------------------------------------- process-wide


@pytest.mark.usefixtures("fresh_global")
def test_configure_and_get_caches() -> None:
    first = configure({"a": {"class": "counting"}})
    assert get_caches() is first
    first["a"]
    second = configure({"b": {"class": "memory"}})
    assert get_caches() is second
    assert CountingCache.closed == 1  # the replaced registry was closed


def test_get_caches_from_env_file(fresh_global: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fresh_global / "conf.json"
    path.write_text(json.dumps({"caches": {"fromenv": {"class": "memory"}}}))
    monkeypatch.setenv(registry.CONFIG_ENV, str(path))
    assert get_caches().names() == ["fromenv"]
    assert get_caches() is get_caches()


def test_get_caches_env_file_missing(fresh_global: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.CONFIG_ENV, str(fresh_global / "missing.json"))
    with pytest.raises(ConfigError, match=r"CACHEHUB_CONFIG is set to .*missing.json"):
        get_caches()


def test_get_caches_from_working_directory(fresh_global: Path) -> None:
    (fresh_global / "cachehub.json").write_text(json.dumps({"local": {"class": "memory"}}))
    assert get_caches().names() == ["local"]


def test_configure_without_arguments_rediscovers(fresh_global: Path) -> None:
    configure({"a": {"class": "memory"}})
    (fresh_global / "cachehub.json").write_text(json.dumps({"local": {"class": "memory"}}))
    assert configure().names() == ["local"]


@pytest.mark.usefixtures("fresh_global")
def test_get_caches_unconfigured_explains_how() -> None:
    with pytest.raises(ConfigError) as info:
        get_caches()
    message = str(info.value)
    assert "configure(" in message
    assert "CACHEHUB_CONFIG" in message
    assert "cachehub.json" in message


# ---------------------------------------------------------------------- namespaces


def test_nested_namespaces_on_one_backend_are_refused() -> None:
    config = {
        "app": {"class": "redis", "custom": {"url": "redis://h:1/0", "namespace": "app:"}},
        "sub": {"class": "redis", "custom": {"url": "redis://h:1/0", "namespace": "app:x:"}},
    }
    with pytest.raises(ConfigError, match=r"cache 'sub' \(namespace 'app:x:'\) lies inside"):
        Caches(config)


def test_nested_namespaces_on_different_backends_are_fine() -> None:
    caches = Caches(
        {
            "app": {"class": "redis", "custom": {"url": "redis://h:1/0", "namespace": "app:"}},
            "sub": {"class": "redis", "custom": {"url": "redis://h:1/1", "namespace": "app:x:"}},
            "sib": {"class": "redis", "custom": {"url": "redis://h:1/0", "namespace": "app2:"}},
        }
    )
    assert caches.names() == ["app", "sub", "sib"]


def test_unnamespaced_cache_beside_namespaced_one_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cachehub.config"):
        Caches(
            {
                "main": {"class": "memory", "custom": {"store": "s"}},
                "sessions": {"class": "memory", "custom": {"store": "s", "namespace": "s:"}},
            }
        )
    assert "clear() on 'main' also removes the entries of 'sessions'" in caplog.text
