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


@pytest.mark.parametrize(
    ("option", "setting"),
    [
        ("socket_timeout=5", "socketTimeout"),
        ("socket_timeout=abc", "socketTimeout"),
        ("socket_connect_timeout=-1", "socketConnectTimeout"),
        ("max_connections=-1", "maxConnections"),
        ("max_connections=abc", "maxConnections"),
        ("ssl_cert_reqs=none", "sslCertReqs"),
        ("ssl_ca_certs=/etc/ca.pem", "sslCaCerts"),
        ("ssl_certfile=/etc/c.pem", "sslCertfile"),
        ("ssl_keyfile=/etc/k.pem", "sslKeyfile"),
    ],
)
def test_a_url_option_that_is_a_setting_is_refused(option: str, setting: str) -> None:
    """redis-py let the url's value override the setting, and a bad one failed at first
    use as "a bug" (or as "not a Redis URL", with advice about the password)."""
    name = option.partition("=")[0]
    for scheme in ("redis", "rediss"):
        with pytest.raises(ConfigError, match=f"option '{name}'") as caught:
            RedisCache(url=f"{scheme}://cache.example:6379/0?{option}")
        assert f"'{setting}'" in caught.value.hint
        assert "percent-encode" not in caught.value.hint


@pytest.mark.parametrize(
    "option", ["decode_responses=maybe", "encoding=latin-1", "encoding_errors=ignore", "protocol=9"]
)
def test_a_url_option_that_changes_the_replies_is_refused(option: str) -> None:
    with pytest.raises(ConfigError, match=f"option '{option.partition('=')[0]}'") as caught:
        RedisCache(url=f"redis://cache.example:6379/0?{option}")
    assert "RESP2" in caught.value.hint
    assert "remove" in caught.value.hint


@pytest.mark.parametrize(
    "option",
    [
        "foo=bar",
        "foo",
        "health_check_interval=x",
        "retry_on_timeout=yes",
        "timeout=1",
        "Socket_Timeout=1",  # option names are case-sensitive
        "ssl=true",
    ],
)
def test_an_unknown_url_option_is_refused(option: str) -> None:
    """redis-py passed it to the connection: TypeError at first use, reported as a bug."""
    name = option.partition("=")[0]
    with pytest.raises(
        ConfigError, match=f"option '{name}', which cachehub does not pass on"
    ) as caught:
        RedisCache(url=f"redis://cache.example:6379/0?{option}")
    assert "client_name" in caught.value.hint
    assert "cache's settings" in caught.value.hint


def test_a_unix_socket_url_option_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="option 'foo'"):
        RedisCache(url="unix:///tmp/r.sock?foo=1")
    with pytest.raises(ConfigError, match="option 'socket_timeout'"):
        RedisCache(url="unix:///tmp/r.sock?socket_timeout=1")
    assert RedisCache(url="unix:///tmp/r.sock?db=3&client_name=web-1")._plan.store == (
        "redis",
        ("unix", "/tmp/r.sock"),
        3,
    )


def test_a_cluster_url_option_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="option 'max_connections'"):
        RedisCache(url="redis://127.0.0.1:7000/0?max_connections=5", cluster=True)
    cache = RedisCache(url="redis://127.0.0.1:7000?client_name=web-1", cluster=True)
    assert cache._plan.mode == "cluster"


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache.example:6379/0?client_name=web-1",
        "redis://cache.example:6379?db=2",
        "redis://cache.example:6379/?db=2&client_name=a.b:c",
        "rediss://cache.example:6380/1?client_name=" + "x" * 128,
        "redis://cache.example:6379/0?password=Qz8%26w",
        "redis://cache.example:6379/0?username=alice&password=Qz8w",
        "redis://:Qz8w@cache.example:6379/0?username=alice",
    ],
)
def test_supported_url_options(url: str) -> None:
    cache = RedisCache(url=url)
    assert cache.endpoint.startswith("cache.example:")


def test_url_query_options_reach_the_client() -> None:
    cache = RedisCache(url="redis://cache.example:6379?db=2&client_name=web-1&password=Qz8%26w")
    assert cache._plan.store == ("redis", ("cache.example", 6379), 2)
    assert "Qz8&w" in cache._plan.secrets  # masked like a password before the host
    pool_kwargs = build_client(cache._plan, 0).connection_pool.connection_kwargs
    assert (pool_kwargs["db"], pool_kwargs["client_name"]) == (2, "web-1")
    assert pool_kwargs["password"] == "Qz8&w"
    assert pool_kwargs["socket_timeout"] == 5.0


@pytest.mark.parametrize("name", ["a%20b", "web%0A1", "tab%09", "", "x" * 200, "caf%C3%A9"])
def test_a_bad_url_client_name_is_refused(name: str) -> None:
    """Redis refuses spaces and newlines in CLIENT SETNAME: every connection failed."""
    with pytest.raises(ConfigError, match="'client_name' is not 1 to 128 printable ASCII"):
        RedisCache(url=f"redis://cache.example:6379/0?client_name={name}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://cache.example:6379?db=-1", "'db' is not a database number"),
        ("redis://cache.example:6379?db=99999999999", "'db' is not a database number"),
        ("redis://cache.example:6379?db=" + "9" * 5000, "'db' is not a database number"),
        ("redis://cache.example:6379?db=1a", "'db' is not a database number"),
        ("redis://cache.example:6379?db=", "'db' is not a database number"),
        ("redis://cache.example:6379/2?db=3", "database twice"),
        ("redis://cache.example:6379/1a?db=3", "database twice"),
        ("redis://cache.example:6379/?db=1&db=2", "'db' more than once"),
        ("redis://cache.example:6379/0?client_name=a&client_name=b", "more than once"),
        ("redis://u:Qz8w@cache.example:6379/0?password=Zz9v", "password twice"),
        ("redis://u:Qz8w@cache.example:6379/0?username=v", "username twice"),
    ],
)
def test_conflicting_url_options_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        RedisCache(url=url)
    shown = f"{caught.value} {caught.value.hint}"
    assert "Qz8w" not in shown
    assert "Zz9v" not in shown


def test_a_url_option_value_is_never_shown() -> None:
    for url in (
        "redis://cache.example:6379/0?socket_timeout=Sup3rSecretValue",
        "redis://cache.example:6379/0?foo=Sup3rSecretValue",
        "redis://cache.example:6379/0?decode_responses=Sup3rSecretValue",
        "redis://cache.example:6379/0?client_name=Sup3r%20SecretValue",
        "redis://cache.example:6379/0?db=Sup3rSecretValue",
        "redis://cache.example:6379/0?password=Sup3rSecretValue&password=Sup3rSecretValue",
    ):
        with pytest.raises(ConfigError) as caught:
            RedisCache(url=url)
        shown = f"{caught.value} {caught.value.hint}"
        assert "Sup3r" not in shown
        assert "cache.example" not in shown  # the url is never echoed


def test_a_huge_url_option_name_is_cut() -> None:
    name = "n" * 100_000
    with pytest.raises(ConfigError, match="does not pass on") as caught:
        RedisCache(url=f"redis://cache.example:6379/0?{name}=1")
    shown = f"{caught.value} {caught.value.hint}"
    assert len(shown) < 1000
    assert "n" * 40 in shown
    assert "n" * 41 not in shown


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


@pytest.mark.parametrize(
    "path", ["/1/2", "/-1", "/+1", "/01", "/1_0", "/\u0661", "/%32", "/2147483648"]
)
def test_a_url_database_part_that_is_not_plain_digits_is_refused(path: str) -> None:
    """redis-py read what int() takes once the slashes were removed: /1/2 was database 12,
    /-1 database -1, Arabic-Indic digits a database too."""
    with pytest.raises(ConfigError, match="database part is not a number"):
        RedisCache(url=f"redis://cache.example:6379{path}")


@pytest.mark.parametrize(("path", "db"), [("", 0), ("/", 0), ("/0", 0), ("/15", 15)])
def test_a_plain_url_database_part_is_taken(path: str, db: int) -> None:
    cache = RedisCache(url=f"redis://cache.example:6379{path}")
    assert cache._plan.store == ("redis", ("cache.example", 6379), db)


def test_a_cluster_over_a_unix_socket_is_refused() -> None:
    """redis-py's cluster client cannot use a unix socket: the cache was built and its
    first call failed."""
    with pytest.raises(ConfigError, match="'cluster' is true but the url is a unix socket"):
        RedisCache(url="unix:///tmp/redis.sock", cluster=True)
