"""The pluggy provider registry: aliases, class resolution, requirements, observers."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub import plugins, resolve
from cachehub.api import BaseCache
from cachehub.errors import ConfigError, MissingPackageError, UnknownProviderError
from cachehub.hookspecs import OperationEvent, hookimpl
from cachehub.registry import Caches

CHECKOUT = Path(__file__).resolve().parents[1]
"""This source checkout: the tests run on its editable install."""


def from_checkout(provider: str) -> str:
    """The install hint for a provider of this checkout."""
    return f"pip install {CHECKOUT / 'providers' / provider}"


class ThirdPartyCache(MemoryCache):
    """A provider from a 'third-party' package, registered with register()."""


class ProviderPlugin:
    @hookimpl
    def cachehub_providers(self) -> dict[str, Any]:
        return {"thirdparty": ThirdPartyCache, "thirdparty-path": f"{__name__}:ThirdPartyCache"}


class Recorder:
    """An observer plugin collecting every operation event."""

    def __init__(self) -> None:
        self.events: list[OperationEvent] = []

    @hookimpl
    def cachehub_operation(self, event: OperationEvent) -> None:
        self.events.append(event)


def observer_of(cache: BaseCache) -> object:
    """Read the observer through a call, so type narrowing does not carry across steps."""
    return cache._observer


@pytest.fixture
def use_plugin() -> Iterator[Any]:
    """Register plugins for one test; unregister whatever is still registered after it."""
    added: list[object] = []

    def add(plugin: object) -> object:
        plugins.register(plugin)
        added.append(plugin)
        return plugin

    yield add
    for plugin in added:
        if plugins.plugin_manager().is_registered(plugin):
            plugins.unregister(plugin)


# ---------------------------------------------------------------------- aliases


def test_memory_provider_registers_through_its_entry_point() -> None:
    aliases = resolve.provider_aliases()
    for alias in ("memory", "lucee.runtime.cache.eh.EHCache", "lucee.runtime.cache.ram.RamCache"):
        assert aliases[alias] == "cachehub_memory:MemoryCache"
    assert "cachehub_memory.plugin" not in plugins.registered_plugins()
    assert "memory" in plugins.registered_plugins()  # entry-point name


@pytest.mark.parametrize(
    "name",
    [
        "memory",
        "Memory",
        "lucee.runtime.cache.eh.EHCache",
        "lucee.runtime.cache.ram.RamCache",
        "org.lucee.extension.cache.eh.EHCache",
        "cachehub_memory.MemoryCache",
        "cachehub_memory:MemoryCache",
        "cachehub_memory.cache.MemoryCache",
    ],
)
def test_resolve_memory_provider(name: str) -> None:
    assert resolve.resolve_provider(name) is MemoryCache


def test_unknown_alias_suggests_a_known_one() -> None:
    with pytest.raises(UnknownProviderError, match="Did you mean 'memory'") as info:
        resolve.resolve_provider("memroy")
    assert "memory" in str(info.value.hint)


def test_unknown_bare_name_without_close_match() -> None:
    with pytest.raises(UnknownProviderError, match="unknown cache class 'zzzzqqq'"):
        resolve.resolve_provider("zzzzqqq")


@pytest.mark.parametrize("bad", ["", "   ", None, 42])
def test_class_name_must_be_a_non_empty_string(bad: Any) -> None:
    with pytest.raises(ConfigError, match="non-empty string"):
        resolve.resolve_provider(bad)


def test_non_cache_class_is_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match=r"'collections:OrderedDict'.*not a subclass"):
        resolve.resolve_provider("collections:OrderedDict")


def test_missing_module_is_unknown_provider() -> None:
    with pytest.raises(UnknownProviderError, match=r"module 'no_such_pkg.sub' does not exist"):
        resolve.resolve_provider("no_such_pkg.sub:Cache")


def test_missing_attribute_suggests_spelling() -> None:
    with pytest.raises(UnknownProviderError, match="Did you mean 'MemoryCache'"):
        resolve.resolve_provider("cachehub_memory:MemoryCach")


def test_missing_dependency_of_a_provider_module(tmp_path: Any, monkeypatch: Any) -> None:
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingPackageError, match="'no_such_dependency_xyz' is not installed"):
        resolve.resolve_provider("needs_dep:Cache")


def test_module_raising_on_import_is_a_config_error(tmp_path: Any, monkeypatch: Any) -> None:
    (tmp_path / "broken_provider.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"importing 'broken_provider' failed: RuntimeError"):
        resolve.resolve_provider("broken_provider:Cache")


@pytest.mark.parametrize("name", ["dynamodb", "org.lucee.extension.aws.dynamodb.DynamoDBCache"])
def test_dynamodb_names_resolve_to_the_dynamodb_package(name: str) -> None:
    cls = resolve.resolve_provider(name)
    assert issubclass(cls, BaseCache)
    assert cls.__module__.startswith("cachehub_dynamodb")


@pytest.mark.parametrize("name", ["dynamodb", "org.lucee.extension.aws.dynamodb.DynamoDBCache"])
def test_dynamodb_names_without_the_package_say_what_to_install(
    name: str, without_distribution: Any
) -> None:
    without_distribution("cachehub-dynamodb", "cachehub_dynamodb")
    with pytest.raises(MissingPackageError) as info:
        resolve.resolve_provider(name)
    assert info.value.hint == from_checkout("dynamodb")
    assert isinstance(info.value, ImportError)


@pytest.mark.parametrize(
    "name",
    [
        "redis",
        "lucee.extension.io.cache.redis.RedisCache",
        "lucee.extension.io.cache.redis.simple.RedisCache",
    ],
)
def test_redis_names_resolve_to_the_redis_package(name: str) -> None:
    assert resolve.resolve_provider(name).__module__.startswith("cachehub_redis")


@pytest.mark.parametrize(
    "name",
    [
        "redis",
        "lucee.extension.io.cache.redis.RedisCache",
        "lucee.extension.io.cache.redis.simple.RedisCache",
    ],
)
def test_redis_names_without_the_package_say_what_to_install(
    name: str, without_distribution: Any
) -> None:
    without_distribution("cachehub-redis", "cachehub_redis")
    with pytest.raises(MissingPackageError) as info:
        resolve.resolve_provider(name)
    assert info.value.hint == from_checkout("redis")


def test_provider_module_path_of_a_missing_distribution(without_distribution: Any) -> None:
    without_distribution("cachehub-redis", "cachehub_redis")
    with pytest.raises(MissingPackageError) as info:
        resolve.resolve_provider("cachehub_redis:RedisCache")
    assert info.value.hint == from_checkout("redis")


# ---------------------------------------------------------------------- third-party plugins


def test_registered_plugin_provides_new_aliases(use_plugin: Any) -> None:
    assert "thirdparty" not in resolve.provider_aliases()
    plugin = use_plugin(ProviderPlugin())
    aliases = resolve.provider_aliases()
    assert aliases["thirdparty"] == f"{__name__}:ThirdPartyCache"
    assert resolve.resolve_provider("thirdparty") is ThirdPartyCache
    assert resolve.resolve_provider("thirdparty-path") is ThirdPartyCache
    caches = Caches({"tp": {"class": "thirdparty"}})
    assert type(caches["tp"]) is ThirdPartyCache
    plugins.unregister(plugin)
    with pytest.raises(UnknownProviderError):
        resolve.resolve_provider("thirdparty")


def test_later_plugin_overrides_an_alias(use_plugin: Any) -> None:
    class Override:
        @hookimpl
        def cachehub_providers(self) -> dict[str, Any]:
            return {"memory": ThirdPartyCache}

    use_plugin(Override())
    assert resolve.resolve_provider("memory") is ThirdPartyCache


def test_register_twice_is_a_config_error(use_plugin: Any) -> None:
    plugin = use_plugin(ProviderPlugin())
    with pytest.raises(ConfigError, match="already registered"):
        plugins.register(plugin)


def test_unregister_unknown_plugin() -> None:
    with pytest.raises(ConfigError, match="not registered"):
        plugins.unregister(ProviderPlugin())


def test_misspelled_hook_is_rejected_with_suggestion() -> None:
    class Typo:
        @hookimpl
        def cachehub_provider(self) -> dict[str, Any]:
            return {}

    typo = Typo()
    with pytest.raises(ConfigError, match="Did you mean 'cachehub_providers'"):
        plugins.register(typo)
    assert not plugins.plugin_manager().is_registered(typo)


def test_plugin_returning_garbage_is_named(use_plugin: Any) -> None:
    class Garbage:
        @hookimpl
        def cachehub_providers(self) -> Any:
            return ["memory"]

    use_plugin(Garbage())
    with pytest.raises(ConfigError, match="must return a dict"):
        resolve.provider_aliases()


def test_plugin_with_non_class_target_is_named(use_plugin: Any) -> None:
    class BadTarget:
        @hookimpl
        def cachehub_providers(self) -> Any:
            return {"bad": 42}

    use_plugin(BadTarget())
    with pytest.raises(ConfigError, match=r"'bad' -> 42"):
        resolve.resolve_provider("memory")


def test_plugin_raising_in_hook_is_named(use_plugin: Any) -> None:
    class Raises:
        @hookimpl
        def cachehub_providers(self) -> Any:
            raise RuntimeError("nope")

    use_plugin(Raises())
    with pytest.raises(ConfigError, match="raised RuntimeError in cachehub_providers"):
        resolve.provider_aliases()


def test_alias_pointing_at_a_missing_provider_module(use_plugin: Any) -> None:
    class Dangling:
        @hookimpl
        def cachehub_providers(self) -> Any:
            return {"dangling": "no_such_module_abc:Cache"}

    use_plugin(Dangling())
    with pytest.raises(UnknownProviderError, match="provider alias 'dangling'"):
        resolve.resolve_provider("dangling")


# ---------------------------------------------------------------------- requirements


def test_requirement_satisfied() -> None:
    plugins.check_requirement("cachehub-memory>=0.1")
    plugins.check_requirement("cachehub-memory")


def test_requirement_missing_gives_exact_pip_command() -> None:
    with pytest.raises(MissingPackageError, match="not installed") as info:
        plugins.check_requirement("cachehub-no-such-provider>=0.1")
    assert info.value.hint == "pip install 'cachehub-no-such-provider>=0.1'"


def test_requirement_dynamodb_missing(without_distribution: Any) -> None:
    without_distribution("cachehub-dynamodb", "cachehub_dynamodb")
    with pytest.raises(MissingPackageError) as info:
        plugins.check_requirement("cachehub-dynamodb>=0.1")
    assert info.value.hint == from_checkout("dynamodb")


def test_requirement_wrong_version_names_installed_version() -> None:
    installed = importlib.metadata.version("cachehub-memory")
    with pytest.raises(MissingPackageError) as info:
        plugins.check_requirement("cachehub-memory>=99")
    assert f"cachehub-memory {installed} is installed" in str(info.value)
    assert info.value.hint == "pip install 'cachehub-memory>=99'"


def _installed_outside_a_checkout(monkeypatch: pytest.MonkeyPatch, site: Path) -> None:
    """Make cachehub look as if a wheel had put it in ``site`` (site-packages)."""
    monkeypatch.setattr(plugins, "__file__", str(site / "cachehub" / "plugins.py"))


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        (
            "cachehub-dynamodb",
            "pip install cachehub-dynamodb "
            "(from a cachehub source checkout: pip install ./providers/dynamodb)",
        ),
        (
            "cachehub-redis[local]>=0.1",
            "pip install 'cachehub-redis[local]>=0.1' "
            "(from a cachehub source checkout: pip install ./providers/redis)",
        ),
        ("cachehub", "pip install cachehub (from a cachehub source checkout: pip install .)"),
        ("cachehub-no-such-provider>=0.1", "pip install 'cachehub-no-such-provider>=0.1'"),
        ("other-package", "pip install other-package"),
    ],
)
def test_outside_a_checkout_the_hint_names_the_index_and_the_checkout_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, requirement: str, expected: str
) -> None:
    _installed_outside_a_checkout(monkeypatch, tmp_path / "site-packages")
    assert plugins.install_command(requirement) == expected


def test_in_a_checkout_the_hint_installs_from_it_with_extras_and_from_any_directory() -> None:
    assert plugins.install_command("cachehub-memory>=0.1") == from_checkout("memory")
    expected = shlex.quote(f"{CHECKOUT / 'providers' / 'redis'}[local]")
    assert plugins.install_command("cachehub-redis[local]") == f"pip install {expected}"
    assert plugins.install_command("cachehub") == f"pip install {CHECKOUT}"
    # The checkout's version does not fit: only the index can help.
    assert plugins.install_command("cachehub-memory>=99") == "pip install 'cachehub-memory>=99'"


@pytest.mark.parametrize(
    "pyproject",
    [
        '[project]\nname = "someone-else"\nversion = "0.1.0"\n',  # a different project
        '[project]\nname = "cachehub-dynamodb"\n',  # no version to compare
        '[project]\nname = "cachehub-dynamodb"\nversion = "not a version"\n',
        "[project\n",  # broken TOML
        None,  # not UTF-8
    ],
)
def test_a_look_alike_checkout_is_not_trusted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pyproject: str | None
) -> None:
    root = tmp_path / "with space; rm -rf x"
    folder = root / "providers" / "dynamodb"
    folder.mkdir(parents=True)
    content = b"\xff\xfe" if pyproject is None else pyproject.encode()
    (folder / "pyproject.toml").write_bytes(content)
    _installed_outside_a_checkout(monkeypatch, root)
    assert plugins.install_command("cachehub-dynamodb>=0.1").startswith(
        "pip install 'cachehub-dynamodb>=0.1' (from a cachehub source checkout"
    )


def test_a_checkout_path_is_quoted_for_the_shell(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "my checkout; echo pwned"
    folder = root / "providers" / "dynamodb"
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "cachehub-dynamodb"\nversion = "0.1.0"\n', encoding="utf-8"
    )
    _installed_outside_a_checkout(monkeypatch, root)
    hint = plugins.install_command("cachehub-dynamodb")
    assert hint == f"pip install {shlex.quote(str(folder))}"
    assert shlex.split(hint) == ["pip", "install", str(folder)]


def test_requirement_with_marker_for_another_python_is_skipped() -> None:
    plugins.check_requirement('cachehub-no-such-provider>=1; python_version < "3"')


def test_invalid_requirement() -> None:
    with pytest.raises(ConfigError, match="not a valid pip requirement") as info:
        plugins.check_requirement("not valid!!")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------- observers


def test_no_observer_plugin_means_no_observer() -> None:
    assert plugins.operation_observer() is None
    cache = Caches({"m": {"class": "memory"}})["m"]
    assert cache._observer is None


def test_observer_plugin_receives_hits_and_misses(use_plugin: Any) -> None:
    recorder = use_plugin(Recorder())
    cache = Caches({"m": {"class": "memory"}})["m"]
    assert cache._observer is not None
    cache.get("k")
    cache.put("k", 1)
    cache.get("k")
    cache.exists("nope")
    seen = [(e.cache, e.operation, e.key, e.hit) for e in recorder.events]
    assert seen == [
        ("m", "get", "k", False),
        ("m", "put", "k", None),
        ("m", "get", "k", True),
        ("m", "exists", "nope", False),
    ]
    assert all(e.provider == "MemoryCache" and e.error is None for e in recorder.events)


def test_live_caches_are_rebound_when_plugins_change(use_plugin: Any) -> None:
    caches = Caches({"m": {"class": "memory"}})
    cache = caches["m"]
    assert observer_of(cache) is None
    recorder = use_plugin(Recorder())
    assert observer_of(cache) is not None
    cache.put("k", 1)
    assert [e.operation for e in recorder.events] == ["put"]
    plugins.unregister(recorder)
    assert observer_of(cache) is None
    cache.put("k", 2)
    assert len(recorder.events) == 1


def test_raising_observer_does_not_break_operations(
    use_plugin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        @hookimpl
        def cachehub_operation(self, event: OperationEvent) -> None:
            raise RuntimeError("observer bug")

    use_plugin(Broken())
    cache = Caches({"m": {"class": "memory"}})["m"]
    with caplog.at_level(logging.WARNING, logger="cachehub.plugins"):
        cache.put("k", 1)
    assert cache.get("k") == 1
    assert "cachehub_operation plugin raised" in caplog.text


def test_listeners_are_held_weakly() -> None:
    calls: list[int] = []

    class Listener:
        def changed(self) -> None:
            calls.append(1)

    listener = Listener()
    plugins.add_change_listener(listener.changed)
    plugin = ProviderPlugin()
    plugins.register(plugin)
    plugins.unregister(plugin)
    assert calls == [1, 1]
    del listener
    plugins.register(plugin)
    plugins.unregister(plugin)
    assert calls == [1, 1]


def test_installed_distribution_without_its_alias_says_reinstall() -> None:
    manager = plugins.plugin_manager()
    memory_plugin = manager.get_plugin("memory")
    plugins.unregister(memory_plugin)
    try:
        with pytest.raises(UnknownProviderError, match="registers no 'memory' provider") as info:
            resolve.resolve_provider("lucee.runtime.cache.eh.EHCache")
        assert info.value.hint == "reinstall it: pip install --force-reinstall cachehub-memory"
    finally:
        plugins.register(memory_plugin, name="memory")
    assert resolve.resolve_provider("memory") is MemoryCache


# ---------------------------------------------------------------------- hostile plugins


_BUILD = """
import sys
from cachehub.errors import CacheError
from cachehub.registry import Caches
try:
    Caches({"c": {"class": "memory"}})["c"]
except CacheError as exc:
    print(type(exc).__name__, exc)
print("still alive")
"""


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        ("import sys; sys.exit('plugin refuses')", "sys.exit(): plugin refuses"),
        ("raise RuntimeError('boom')", "RuntimeError: boom"),
        (None, "ModuleNotFoundError"),
    ],
)
def test_a_broken_entry_point_is_named_and_cannot_end_the_program(
    tmp_path: Path, module: str | None, reason: str
) -> None:
    # On main pluggy's loader stopped with the plugin's own exception, naming neither its
    # distribution nor its entry point, and a sys.exit() in it ended the host program.
    import subprocess
    import sys

    info = tmp_path / "fake_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cachehub]\nbroken = fake_plugin_module\n")
    if module is not None:
        (tmp_path / "fake_plugin_module.py").write_text(module + "\n")
    done = subprocess.run(
        [sys.executable, "-c", _BUILD],
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ConfigError" in done.stdout
    assert "entry point 'broken'" in done.stdout
    assert "fake-plugin" in done.stdout
    assert reason in done.stdout
    assert done.stdout.rstrip().endswith("still alive")


def test_a_hook_calling_sys_exit_is_a_config_error(use_plugin: Any) -> None:
    # On main SystemExit went through resolve's `except Exception` and ended the program.
    class Exits:
        @hookimpl
        def cachehub_providers(self) -> Any:
            raise SystemExit(3)

    use_plugin(Exits())
    with pytest.raises(ConfigError, match="raised SystemExit in cachehub_providers"):
        resolve.provider_aliases()


def test_an_observer_calling_sys_exit_drops_its_event(use_plugin: Any) -> None:
    class Exits:
        @hookimpl
        def cachehub_operation(self, event: OperationEvent) -> None:
            raise SystemExit(3)

    use_plugin(Exits())
    cache = Caches({"c": {"class": "memory"}})["c"]
    cache.put("k", 1)
    assert cache.get("k") == 1


def test_aliases_that_differ_only_in_case_are_named_not_blamed_on_the_install(
    use_plugin: Any,
) -> None:
    # On main 'MEMORY' with aliases 'Memory' and 'memory' said cachehub-memory "registers
    # no 'memory' provider (its entry point is missing)": reinstall advice for a clash.
    class Shadow:
        @hookimpl
        def cachehub_providers(self) -> dict[str, Any]:
            return {"Memory": ThirdPartyCache}

    use_plugin(Shadow())
    with pytest.raises(ConfigError, match=r"'Memory' .* and 'memory' .* differ only in case"):
        resolve.resolve_provider("MEMORY")
    assert resolve.resolve_provider("memory") is MemoryCache  # an exact spelling still works


def test_an_environment_marker_that_cannot_be_evaluated_is_a_config_error() -> None:
    # On main packaging's UndefinedComparison escaped (the CLI: "unexpected ... report it").
    with pytest.raises(ConfigError, match="environment marker cannot be evaluated"):
        plugins.check_requirement("cachehub-memory>=0.1; python_full_version ~= 'zz'")
    plugins.check_requirement("cachehub-memory>=0.1; python_version >= '3.11'")
