"""An attacker's view of configuration files and provider ``class`` names.

The bounded, child-process cases (``/dev/zero``, a FIFO, a sparse file, modules that run
a program on import) are in ``tests/reliability/test_config_attacks.py``; these are the
cases that cannot crash or stall the test process.
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cachehub import hookimpl, loader, plugins, resolve
from cachehub.errors import MAX_MESSAGE_CHARS, CacheError, ConfigError, UnknownProviderError
from cachehub.loader import load_file, parse_entries
from cachehub.registry import Caches
from cachehub.scrub import register_secret

SECRET = "HuntcSecret-9f3b"


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "caches.json"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------- duplicate keys


@pytest.mark.parametrize(
    ("text", "key"),
    [
        # Two caches of one name: the second silently replaced the first.
        ('{"main": {"class": "memory"}, "main": {"class": "redis"}}', "main"),
        # Two classes in one entry: which provider serves the cache depended on order.
        ('{"main": {"class": "redis", "class": "memory"}}', "class"),
        # A setting given twice: a reviewer reading the first value is misled.
        (
            '{"caches": {"m": {"class": "memory", "custom": '
            f'{{"signingKey": "{SECRET}", "signingKey": "other"}}}}}}}}',
            "signingKey",
        ),
    ],
)
def test_a_key_given_twice_in_a_file_is_an_error(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"key '{key}' appears twice") as info:
        parse_entries(_file(tmp_path, text))
    assert SECRET not in str(info.value)


def test_the_same_key_in_different_objects_is_fine(tmp_path: Path) -> None:
    text = '{"a": {"class": "memory", "custom": {"namespace": "a:"}}, "b": {"class": "memory"}}'
    assert set(parse_entries(_file(tmp_path, text))) == {"a", "b"}


# ---------------------------------------------------------------------- numbers


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(tmp_path: Path, constant: str) -> None:
    path = _file(tmp_path, f'{{"m": {{"class": "memory", "custom": {{"maxsize": {constant}}}}}}}')
    with pytest.raises(ConfigError, match=f"{constant} is not a JSON value"):
        load_file(path)


def test_an_integer_of_thousands_of_digits_is_a_config_error(tmp_path: Path) -> None:
    # Python refuses to convert it (int_max_str_digits) with a raw ValueError.
    digits = "9" * 5000
    path = _file(tmp_path, f'{{"m": {{"class": "memory", "custom": {{"maxsize": {digits}}}}}}}')
    with pytest.raises(ConfigError, match="integer of thousands of digits") as info:
        load_file(path)
    assert "set_int_max_str_digits" not in str(info.value)  # not advice for a config file


# ---------------------------------------------------------------------- size and kind


def test_a_file_over_the_size_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = '{"m": {"class": "memory"}}'
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", len(text))
    assert load_file(_file(tmp_path, text)) == {"m": {"class": "memory"}}  # at the limit
    with pytest.raises(ConfigError, match="larger than"):
        load_file(_file(tmp_path, text + " "))


def test_a_directory_is_not_a_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Is a directory|not a regular file"):
        Caches.from_file(tmp_path)


def test_a_byte_order_mark_is_still_accepted(tmp_path: Path) -> None:
    path = tmp_path / "caches.json"
    path.write_bytes(b'\xef\xbb\xbf{"m": {"class": "memory"}}')
    assert load_file(path) == {"m": {"class": "memory"}}


# ---------------------------------------------------------------------- class names


@pytest.mark.parametrize("name", ["json.tool:X", "pip.__main__:X"])
def test_a_script_or_stdlib_module_is_refused_unimported(name: str) -> None:
    module = name.partition(":")[0]
    already = module in sys.modules
    with pytest.raises(ConfigError, match=r"not a cachehub provider|not a subclass"):
        resolve.resolve_provider(name)
    if not already:
        assert module not in sys.modules


def test_an_imported_stdlib_class_is_still_named_as_not_a_provider() -> None:
    with pytest.raises(ConfigError, match=r"'collections:OrderedDict'.*not a subclass"):
        resolve.resolve_provider("collections:OrderedDict")


@pytest.mark.parametrize(
    "name", ["..up:Cache", "a-b:Cache", "pkg..mod:Cache", "pkg:Ca-che", "x: Y"]
)
def test_a_path_that_no_import_can_name_is_refused(name: str) -> None:
    with pytest.raises(UnknownProviderError, match="is not a 'module:Class'"):
        resolve.resolve_provider(name)


def test_a_module_exiting_on_import_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "exits_on_import.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"importing 'exits_on_import' failed: SystemExit"):
        resolve.resolve_provider("exits_on_import:Cache")


def test_an_import_error_text_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "leaky_provider.py").write_text(
        f"raise RuntimeError('cannot reach redis://user:{SECRET}@db:6379/0')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="RuntimeError") as info:
        resolve.resolve_provider("leaky_provider:Cache")
    assert SECRET not in str(info.value)


_OBJECTS_MODULE = f"""
class Settings:
    def __repr__(self):
        return "Settings(password='{SECRET}', " + "x" * 100_000 + ")"

class Lazy:  # django.conf:settings before settings.configure()
    @property
    def __class__(self):
        raise RuntimeError("settings are not configured")

class Proxy:  # flask:request outside a request
    def __getattr__(self, name):
        raise RuntimeError("working outside of request context")

settings = Settings()
lazy = Lazy()
proxy = Proxy()
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Its repr was the message: a settings object showed its password, 100 KB long.
        ("cfg_objects:settings", "resolves to a Settings object, which is not a subclass"),
        # isinstance() asked the lazy object's __class__: RuntimeError, not a ConfigError.
        ("cfg_objects:lazy", "resolves to a Lazy object, which is not a subclass"),
        # getattr() on a proxy raised its own error: RuntimeError, not a ConfigError.
        ("cfg_objects:proxy.Cache", "reading 'Cache' of 'cfg_objects:proxy.Cache' raised"),
    ],
)
def test_a_class_path_to_a_lazy_or_talkative_object_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, expected: str
) -> None:
    (tmp_path / "cfg_objects.py").write_text(_OBJECTS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cfg_objects", raising=False)
    with pytest.raises(ConfigError, match=re.escape(expected)) as info:
        resolve.resolve_provider(name)
    assert SECRET not in str(info.value)
    assert len(str(info.value)) < 1000


def test_a_plugin_hook_error_is_named_and_scrubbed() -> None:
    class Leaky:
        @hookimpl
        def cachehub_providers(self) -> Any:
            raise RuntimeError(f"login failed for redis://app:{SECRET}@cache:6379 " + "x" * 5000)

    name = plugins.register(Leaky(), name="leaky-plugin")
    try:
        with pytest.raises(ConfigError, match="plugin 'leaky-plugin' raised RuntimeError") as info:
            resolve.resolve_provider("memory")
    finally:
        plugins.unregister(plugins.plugin_manager().get_plugin(name))
    assert SECRET not in str(info.value)
    assert len(str(info.value)) < 1000


# ---------------------------------------------------------------------- namespace


def test_a_namespace_of_bytes_that_are_not_utf8_is_refused_when_built() -> None:
    # os.environ holds undecodable bytes as lone surrogates (surrogateescape); every key
    # passed its own check, and then every Redis or DynamoDB request failed to encode.
    hostile = b"app:\xff:".decode("utf-8", "surrogateescape")
    caches = Caches(
        {"c": {"class": "memory", "custom": {"namespace": "${NS}"}}}, environ={"NS": hostile}
    )
    with pytest.raises(ConfigError, match="'namespace' contains a lone surrogate"):
        caches["c"]


def test_a_namespace_longer_than_a_key_is_refused() -> None:
    from cachehub_memory import MemoryCache

    from cachehub.api import MAX_KEY_LENGTH

    MemoryCache({"namespace": "n" * MAX_KEY_LENGTH})  # at the limit
    with pytest.raises(ConfigError, match="'namespace' is 16,385 characters long"):
        MemoryCache({"namespace": "n" * (MAX_KEY_LENGTH + 1)})


# ---------------------------------------------------------------------- numbers as strings


@pytest.mark.parametrize("value", ["inf", "-inf", "1e309", "nan", float("inf")])
def test_a_float_setting_must_be_finite(value: Any) -> None:
    from cachehub_redis import RedisCache

    # Built without connecting; the Redis constructor raised a raw OverflowError.
    with pytest.raises(ConfigError, match="setting 'socketTimeout' must be float"):
        RedisCache({"host": "127.0.0.1", "socketTimeout": value})
    from cachehub_memory import MemoryCache

    with pytest.raises(ConfigError, match="setting 'hitFlushInterval' must be float"):
        MemoryCache({"hitFlushInterval": value})


_REDIS = ("cachehub_redis", "RedisCache", {"host": "127.0.0.1", "port": 1})
_DYNAMO = (
    "cachehub_dynamodb",
    "DynamoDBCache",
    {"host": "http://127.0.0.1:1", "region": "us-east-1", "tableName": "t"},
)


@pytest.mark.parametrize(
    ("provider", "name", "over", "at_most"),
    [
        # 1e308 s overflowed the request record's lifetime (a raw OverflowError).
        (_REDIS, "socketTimeout", 1e308, 86_400),
        (_REDIS, "socketConnectTimeout", "1e300", 86_400),
        # 10**30 re-sends: every call against a server that is down retried for ever.
        (_REDIS, "retries", 10**30, 20),
        (_REDIS, "retries", "21", 20),
        (_DYNAMO, "maxAttempts", 10**30, 20),
        (_DYNAMO, "maxAttempts", 2**63, 20),
        # 10**13 ms overflowed time_t on every request, reported as a backend bug.
        (_DYNAMO, "liveTimeout", 10**13, 86_400_000),
        # urllib3 fills the pool slot by slot: 10**7 took 15 s, 10**30 never returned.
        (_DYNAMO, "maxConnections", 10**30, 1_000),
        (_DYNAMO, "maxConnections", 10**7, 1_000),
        # a thread (or task) and a page per segment: 10**6 exhausted the threads.
        (_DYNAMO, "scanSegments", 10**6, 64),
        (_DYNAMO, "scanSegments", 10**30, 64),
        # past a C int: every call failed with the server's bare "value is out of range".
        (_REDIS, "db", 10**30, 2**31 - 1),
        (_REDIS, "databaseIndex", 2**31, 2**31 - 1),
    ],
)
def test_a_setting_that_bounds_waiting_or_resources_has_a_maximum(
    provider: tuple[str, str, dict[str, Any]], name: str, over: Any, at_most: int
) -> None:
    module, cls_name, base = provider
    cls = getattr(__import__(module), cls_name)
    with pytest.raises(ConfigError, match=rf"setting '{name}' is .*above its maximum {at_most}"):
        cls({**base, name: over})
    cls({**base, name: at_most}).close()  # the bound itself is accepted


@pytest.mark.parametrize(
    ("value", "expected"),
    [("false", False), ("FALSE", False), ("0", False), ("no", False), (" true ", True)],
)
def test_boolean_settings_read_the_strings_of_environment_variables(
    value: str, expected: bool
) -> None:
    from cachehub_memory import MemoryCache

    assert MemoryCache({"serialize": value}).settings["serialize"] is expected


def test_an_unparsable_redis_url_gets_its_whole_advice() -> None:
    # The hint named the URLs first and the '@' of its encoding advice after them: the
    # secret scrubber read that '@' as the unix URL's credentials and masked the advice.
    from cachehub_redis import RedisCache

    with pytest.raises(ConfigError) as caught:
        RedisCache({"url": "redis://127.0.0.1:99999/0"})
    text = str(caught.value)
    assert "*****" not in text
    assert "@ as %40" in text
    assert "unix:///path/redis.sock" in text


# ---------------------------------------------------------------------- size of a config


def test_a_config_of_thousands_of_caches_checks_each_setting_name_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every setting of every cache was asked whether its name looks secret (a fuzzy match
    # of ~100 us), to quote its value in an error that was never raised: 32,000 memory
    # caches took 11 s of CPU to load, and the hostile-config case timed out under load.
    import difflib

    calls = 0
    real = difflib.get_close_matches

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(difflib, "get_close_matches", counted)
    config = {
        f"c{i}": {"class": "memory", "custom": {"namespace": f"n{i}:", "store": "one"}}
        for i in range(2_000)
    }
    caches = Caches(config)
    try:
        assert len(caches) == 2_000
    finally:
        caches.close()
    assert calls < 100  # a few names, each matched once; was 8,000


# ---------------------------------------------------------------------- expansion bombs

_MIB = 1024 * 1024


@pytest.mark.parametrize(
    "config",
    [
        # One short string, a variable's value inserted once per reference: 40 references
        # of a 1 MiB variable were joined into 40 MiB (a 32 MiB file of "${A}" references,
        # terabytes).
        {"c": {"class": "memory", "custom": {"x": "${BIG}" * 40}}},
        # Through fallbacks and lists: the same text, reached another way.
        {"c": {"class": "memory", "custom": {"x": ["${UNSET:-${BIG}}"] * 40}}},
        # Spread over many caches, each of them small: they add up for the configuration.
        {f"c{i}": {"class": "memory", "custom": {"x": "${BIG}"}} for i in range(40)},
        # The class itself, not only settings.
        {"c": {"class": "${BIG}" * 40}},
    ],
)
def test_environment_variables_cannot_blow_a_configuration_up(config: dict[str, Any]) -> None:
    environ = {"BIG": SECRET + "x" * (_MIB - len(SECRET))}
    expected = r"insert more than 32 MiB of text .*at character"
    with pytest.raises(ConfigError, match=expected) as info:
        parse_entries(config, environ=environ)
    assert SECRET not in str(info.value)
    assert SECRET not in str(info.value.hint)


def test_a_large_variable_referenced_a_few_times_is_still_inserted() -> None:
    # A certificate bundle or a long token in a variable is fine: the limit is the
    # configuration's total, far above what real settings insert.
    value = "b" * (4 * _MIB)
    config = {f"c{i}": {"class": "memory", "custom": {"x": "${BIG}"}} for i in range(7)}
    entries = parse_entries(config, environ={"BIG": value})
    assert all(entry.custom["x"] == value for entry in entries.values())


@pytest.mark.parametrize(
    "entries",
    [
        {"c": {"class": "x" * 1_000_000}},
        {"c": {"class": "pkg." * 250_000 + "Cache"}},
        {"c" * 1_000_000: {"class": "no.such:Cache"}},
    ],
    ids=["class", "dotted-class", "cache-name"],
)
def test_a_huge_quoted_config_text_gives_a_bounded_message(entries: dict[str, Any]) -> None:
    # On main the error quoted the 1 MB text whole: a 1,000,492-character message.
    with pytest.raises(CacheError) as info:
        Caches(entries).validate()
    rendered = str(info.value)
    assert len(rendered) <= 2 * MAX_MESSAGE_CHARS
    assert rendered.count("…") >= 1


def test_a_long_message_is_cut_after_its_secrets_are_masked() -> None:
    secret = f"hunter2-{uuid.uuid4().hex}"  # this test's own: masked in this process only
    register_secret(secret)
    # Cut first, "hunt" would be left of it, past the scrubber's recognition.
    error = CacheError("x" * (MAX_MESSAGE_CHARS - 5) + secret, hint="h")
    assert "hunt" not in str(error)  # masked first, then cut
    assert len(error.message) <= MAX_MESSAGE_CHARS
