"""Connection settings: the option schema, their validation, and building the redis-py client.

Nothing here connects: :func:`build_client` returns a client whose pool opens sockets on
first use, so a cache can be constructed while Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit

import redis.utils
from redis import Redis
from redis.asyncio import BlockingConnectionPool as AsyncBlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel

from cachehub.config import LuceeOption, Option, millis_to_seconds
from cachehub.errors import ConfigError
from cachehub.provider import abandon_transport, fork_safe_lock

from .commandtable import offload_command_table
from .topology import offload_topology

T = TypeVar("T")

MAX_DB: Final = 2**31 - 1
"""The highest database index a server can have (its ``databases`` setting is a C int):
a larger ``db`` failed every call with a bare "value is out of range" from the server."""
MAX_WAIT_S: Final = 86_400.0
"""The longest ``socketTimeout``/``socketConnectTimeout`` (a day): a request record lives
as long as the client's last re-send may come (:func:`.records.record_ms`), and 1e308 s
overflowed that arithmetic."""

MAX_RETRIES: Final = 20
"""The most re-sends after a connection error: each waits for a reconnect, so a count of
10**30 made every call against a server that is down retry for ever."""

# redis-py 8 reads its own package metadata (a file) when the first client of the process
# is built, and keeps it (functools.cache): read it now, at import, not in a callback of
# an event loop (an async client is built on the loop).
with contextlib.suppress(Exception):
    getattr(redis.utils, "get_lib_version", lambda: None)()

__all__ = [
    "OPTIONS",
    "ConnectionPlan",
    "WaitingCluster",
    "plan_connection",
    "build_client",
    "build_async_client",
    "abandon_async_client",
    "sentinel_clients",
    "acquire_client",
    "release_client",
]

OPTIONS: Final[tuple[Option, ...]] = (
    Option(
        "url",
        str,
        None,
        "connection URL: redis://[user:password@]host:port/db, rediss:// (TLS) or "
        "unix:///path/redis.sock; replaces host/port/db/username/password.",
    ),
    Option("host", str, None, "Redis server host name or IP (default localhost)."),
    Option("port", int, None, "Redis server port (default 6379).", minimum=1, maximum=65535),
    Option(
        "db",
        int,
        None,
        "database index (default 0; must be 0 in cluster mode).",
        minimum=0,
        maximum=MAX_DB,
    ),
    Option("username", str, None, "ACL user name (Redis 6+); omit for the default user."),
    Option("password", str, None, "password (requirepass or the ACL user's).", secret=True),
    Option("ssl", bool, False, "connect with TLS (or use a rediss:// url)."),
    Option("sslCaCerts", str, None, "path of the CA bundle that signed the server certificate."),
    Option("sslCertfile", str, None, "client certificate file, for mutual TLS."),
    Option("sslKeyfile", str, None, "client private key file, for mutual TLS."),
    Option(
        "sslCertReqs",
        str,
        "required",
        "server certificate check: 'required' (default), 'optional' or 'none'.",
        choices=("required", "optional", "none"),
    ),
    Option(
        "socketTimeout",
        float,
        5.0,
        "seconds to wait for a reply before the cache reports Redis unavailable.",
        minimum=0.001,
        maximum=MAX_WAIT_S,
    ),
    Option(
        "socketConnectTimeout",
        float,
        5.0,
        "seconds to wait for a TCP connection before reporting Redis unavailable.",
        minimum=0.001,
        maximum=MAX_WAIT_S,
    ),
    Option(
        "maxConnections",
        int,
        None,
        "connection pool size per server (default 50).",
        minimum=1,
    ),
    Option(
        "retries",
        int,
        2,
        "reconnect attempts after a connection error, with exponential backoff (0 disables).",
        minimum=0,
        maximum=MAX_RETRIES,
    ),
    Option("cluster", bool, False, "connect to a Redis Cluster (host/url names any node)."),
    Option("sentinel", str, None, "Sentinel service (master) name; needs 'sentinels'."),
    Option(
        "sentinels",
        object,
        None,
        "Sentinel addresses: a list of 'host:port' strings, or one comma separated string.",
    ),
    Option("sentinelPassword", str, None, "password of the Sentinel processes.", secret=True),
    # Setting names of Lucee's Redis extension, so an existing .CFConfig.json works as is.
    Option(
        "databaseIndex", int, None, "Lucee name of 'db' (-1 means the default).", maximum=MAX_DB
    ),
    Option("maxTotal", int, None, "Lucee name of 'maxConnections'.", minimum=1),
    Option("masterName", str, None, "Lucee name of 'sentinel' (RedisSentinelCache)."),
)


def _key_prefix(value: Any) -> str:
    """Lucee's ``keyPrefix``: a colon is appended when missing (``myapp`` -> ``myapp:``)."""
    prefix = str(value).strip()
    return prefix if not prefix or prefix.endswith(":") else prefix + ":"


def _no_secret_manager(value: Any) -> None:
    if str(value).strip():
        raise ConfigError(
            "Lucee setting 'secretName' (log in with credentials from AWS Secrets Manager) "
            "is not supported by cachehub.",
            hint="drop secretName and set password (and username) from the environment, "
            'e.g. "password": "${REDIS_PASSWORD}".',
        )


_POOL_NOTE: Final = "connection-pool tuning; redis-py manages its pool itself"
_MODES: Final = {"standalone": False, "sentinel": False, "cluster": True}

LUCEE_OPTIONS: Final[tuple[LuceeOption, ...]] = (
    # Lucee's Redis extension (RedisCache / RedisSentinelCache, 3.x and 4.x admin forms).
    LuceeOption(
        "socketTimeout", "socketTimeout", millis_to_seconds, "socket timeout in milliseconds"
    ),
    LuceeOption(
        "connectionMode",
        "cluster",
        lambda v: _MODES[str(v).strip().lower()],
        "connectionMode must be standalone, sentinel or cluster",
    ),
    LuceeOption("sentinelMasterName", "sentinel", when=("connectionMode", "sentinel")),
    LuceeOption("sentinelNodes", "sentinels", when=("connectionMode", "sentinel")),
    LuceeOption(
        "clusterNodes",
        note="cachehub reaches the cluster through host/port, any node",
        when=("connectionMode", "cluster"),
    ),
    LuceeOption("keyPrefix", "namespace", _key_prefix, "key prefix"),
    LuceeOption("secretName", convert=_no_secret_manager),
    LuceeOption("region", note="AWS Secrets Manager login is not supported"),
    LuceeOption("accessKeyId", note="AWS Secrets Manager login is not supported"),
    LuceeOption("secretKey", note="AWS Secrets Manager login is not supported"),
    LuceeOption(
        "timeToLiveSeconds",
        note="default expiry of every entry; pass time_span to put()",
        defaults=("0", "0.0"),
    ),
    LuceeOption(
        "idleTimeoutSeconds",
        note="default idle expiry; pass idle_time to put()",
        defaults=("0", "0.0"),
    ),
    LuceeOption("touchOnAccess", note="idle entries always slide on read", defaults=("false",)),
    LuceeOption("alwaysClone", note="values are always copies", defaults=("false", "true")),
    LuceeOption("sessionLockingEnabled", note="session locking", defaults=("false",)),
    LuceeOption("sessionLockExpiration", note="session locking", defaults=("30",)),
    LuceeOption("sessionLockTimeout", note="session locking", defaults=("5000",)),
    LuceeOption("minIdle", note=_POOL_NOTE),
    LuceeOption("maxIdle", note=_POOL_NOTE),
    LuceeOption("maxLowPriority", note=_POOL_NOTE),
    LuceeOption("liveTimeout", note=_POOL_NOTE),
    LuceeOption("idleTimeout", note=_POOL_NOTE),
    LuceeOption("connectionTimeout", note=_POOL_NOTE),
    LuceeOption("timeout", note=_POOL_NOTE),
)
"""The Lucee Redis extension's settings that are not cachehub settings too (``host``,
``port``, ``password``, ``databaseIndex``, ``maxTotal``, ``masterName``... are), with
their units: Lucee's milliseconds stay milliseconds."""

_DEFAULT_POOL: Final = 50
_HOST_PORT = re.compile(r"^\s*(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\s]+)):(?P<port>\d{1,5})\s*$")


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """Validated connection settings; building the client from it never raises ConfigError."""

    mode: str
    """'single', 'cluster' or 'sentinel'."""
    endpoint: str
    """Where we connect, safe to show (no password)."""
    kwargs: dict[str, Any] = field(repr=False)
    url: str | None = field(default=None, repr=False)
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Strings that must never appear in a message (scrubbed from redis-py errors)."""
    store: tuple[Any, ...] = ()
    """The key space this plan writes to, normalised (see ``RedisCache.backend_identity``)."""


_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def _node(host: str, port: int) -> tuple[str, int]:
    """A server address as one spelling: case-folded, loopback aliases merged."""
    host = host.strip().strip("[]").lower()
    return ("localhost" if host in _LOOPBACK else host, int(port))


def _pick(settings: dict[str, Any], name: str, lucee: str, where: str) -> Any:
    """The value of ``name``, or of its Lucee spelling; both given and different is an error."""
    ours, theirs = settings.get(name), settings.get(lucee)
    if ours is not None and theirs is not None and ours != theirs:
        raise ConfigError(
            f"{where}: '{name}' and its Lucee name '{lucee}' are both set, to different values.",
            hint=f"keep only '{name}'.",
        )
    return ours if ours is not None else theirs


def parse_sentinels(value: Any, where: str) -> tuple[tuple[str, int], ...]:
    """``["h1:26379", "h2:26379"]`` or ``"h1:26379, h2:26379"`` -> ``((h1, 26379), ...)``."""
    if isinstance(value, str):
        items = [v for v in re.split(r"[,\s]+", value) if v]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise ConfigError(
            f"{where}: 'sentinels' must be a list of 'host:port' strings, "
            f"got {type(value).__name__}.",
            hint="set e.g. sentinels: ['10.0.0.1:26379', '10.0.0.2:26379'].",
        )
    if not items:
        raise ConfigError(
            f"{where}: 'sentinels' is empty.",
            hint="list at least one Sentinel as 'host:port'.",
        )
    parsed = []
    for item in items:
        m = _HOST_PORT.match(item)
        port = int(m["port"]) if m else 0
        if m is None or not 1 <= port <= 65535:
            raise ConfigError(
                f"{where}: sentinel address {item!r} is not 'host:port'.",
                hint="write each Sentinel as host:port, e.g. 'sentinel-1:26379' or '[::1]:26379'.",
            )
        parsed.append((m["v6"] or m["host"], port))
    return tuple(parsed)


def _ssl_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "ssl_ca_certs": settings["sslCaCerts"],
        "ssl_certfile": settings["sslCertfile"],
        "ssl_keyfile": settings["sslKeyfile"],
        "ssl_cert_reqs": settings["sslCertReqs"],
    }


_ENCODE_HINT: Final = (
    "percent-encode special characters of the password (# as %23, ? as %3F, @ as %40, / as "
    "%2F, space as %20) and use redis://host:6379/0, rediss://host:6380/0 or "
    "unix:///path/redis.sock."
)


def _check_url_shape(url: str, where: str) -> None:
    """Refuse a redis:// url whose host part ended before its credentials did.

    An unencoded '/', '?' or '#' in a password ends the host part early: in
    ``redis://:Adm1n@Pr0dSecret/2024@host`` the host is ``Pr0dSecret`` - a piece of the
    password, which was then shown as the endpoint, in errors, logs and the CLI, and
    looked up in DNS. Only the part redis-py took for the password was masked.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return  # parse_url refuses it, with the encoding advice
    if parts.scheme in ("redis", "rediss") and "@" in f"{parts.path}{parts.query}{parts.fragment}":
        raise ConfigError(
            f"{where}: 'url' has an '@' after its host part: a '/', '?' or '#' in the "
            "password ends the host early, and the rest would be taken for the host.",
            hint=_ENCODE_HINT,
        )


_URL_OPTIONS: Final = ("db", "client_name", "username", "password")
"""The query options a url may carry; redis-py turns every other one into a client keyword
argument that overrides the cache's own, and an unknown or ill-typed one failed only at
first use, as "a bug"."""
_URL_SETTINGS: Final = {
    "socket_timeout": "socketTimeout",
    "socket_connect_timeout": "socketConnectTimeout",
    "max_connections": "maxConnections",
    "ssl_cert_reqs": "sslCertReqs",
    "ssl_ca_certs": "sslCaCerts",
    "ssl_certfile": "sslCertfile",
    "ssl_keyfile": "sslKeyfile",
}
"""redis-py query options that are cache settings: one place for each, checked when the
cache is built (the url's value would override the setting)."""
_URL_WIRE: Final = frozenset(
    {"decode_responses", "encoding", "encoding_errors", "protocol", "legacy_responses"}
)
"""redis-py query options that change the replies: the cache parses raw RESP2 bytes."""
_DB_PATH: Final = re.compile(r"/(?:[0-9]|[1-9][0-9]{0,9})")


def _db_path(path: str) -> bool:
    """Whether a redis:// url's path is a database part: /N, N from 0 to MAX_DB in ASCII
    digits, no sign or padding."""
    return bool(_DB_PATH.fullmatch(path)) and int(path[1:]) <= MAX_DB


_CLIENT_NAME: Final = re.compile(r"[\x21-\x7e]{1,128}")


def _option_name(name: str) -> str:
    """A url option's name, safe to show: quoted, and cut (a hostile one may be huge).
    Its value never is shown: it may be a password."""
    return repr(name[:40]) + ("..." if len(name) > 40 else "")


def _check_url_query(url: str, where: str) -> None:
    """Refuse the url's query options the cache does not support (see ``_URL_OPTIONS``)."""
    if not url.lower().startswith(("redis://", "rediss://", "unix://")):
        return  # parse_url refuses the scheme
    try:
        parts = urlsplit(url)
        options = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return  # parse_url refuses it, with the encoding advice
    seen: set[str] = set()
    for name, value in options:
        shown = _option_name(name)
        if name in _URL_SETTINGS:
            setting = _URL_SETTINGS[name]
            raise ConfigError(
                f"{where}: 'url' has the option {shown}, which is the cache setting "
                f"{setting!r} here.",
                hint=f"remove {shown} from the url and set {setting!r} in the cache's "
                "settings: one place for each setting, checked when the cache is built.",
            )
        if name in _URL_WIRE:
            raise ConfigError(
                f"{where}: 'url' has the option {shown}, which cachehub cannot honour.",
                hint=f"remove {shown} from the url: cachehub reads raw bytes over RESP2 "
                "and parses the replies itself.",
            )
        if name not in _URL_OPTIONS:
            raise ConfigError(
                f"{where}: 'url' has the option {shown}, which cachehub does not pass on.",
                hint="a url may only carry the query options db, client_name, username and "
                "password; connection behaviour (timeouts, pool size, TLS, retries) is set "
                "with the cache's settings.",
            )
        if name in seen:
            raise ConfigError(
                f"{where}: 'url' has the option {shown} more than once.",
                hint="give each option once (redis-py would use the first and ignore the rest).",
            )
        seen.add(name)
        if name == "client_name" and not _CLIENT_NAME.fullmatch(value):
            raise ConfigError(
                f"{where}: 'url' option 'client_name' is not 1 to 128 printable ASCII "
                "characters without spaces.",
                hint="Redis refuses a connection name with spaces or newlines (CLIENT "
                "SETNAME), which would fail every connection; use e.g. client_name=web-1.",
            )
        if name == "db":
            if not re.fullmatch("[0-9]{1,10}", value) or int(value) > MAX_DB:
                raise ConfigError(
                    f"{where}: 'url' option 'db' is not a database number.",
                    hint=f"write db=N, N from 0 to {MAX_DB}, or end the url with /N "
                    "(e.g. redis://host:6379/2).",
                )
            if parts.scheme != "unix" and parts.path.strip("/"):
                raise ConfigError(
                    f"{where}: 'url' gives the database twice, in its path and as option 'db'.",
                    hint="keep one: end the url with /N (e.g. redis://host:6379/2).",
                )
        if name in ("username", "password") and value and getattr(parts, name):
            raise ConfigError(
                f"{where}: 'url' gives the {name} twice, before its host and as option {shown}.",
                hint=f"keep the one before the host (redis-py ignores the option {shown}).",
            )


def plan_connection(settings: dict[str, Any], where: str) -> ConnectionPlan:
    """Check the connection settings for conflicts and turn them into redis-py arguments."""
    url = settings["url"]
    db = _pick(settings, "db", "databaseIndex", where)
    if db is not None and db < 0:
        db = None  # Lucee's -1: "the default database"
    pool = _pick(settings, "maxConnections", "maxTotal", where) or _DEFAULT_POOL
    service = _pick(settings, "sentinel", "masterName", where)
    secrets = tuple(s for s in (settings["password"], settings["sentinelPassword"]) if s)
    kwargs: dict[str, Any] = {
        "socket_timeout": settings["socketTimeout"],
        "socket_connect_timeout": settings["socketConnectTimeout"],
        "max_connections": pool,
    }
    ssl = settings["ssl"]

    if url is not None:
        clashing = [n for n in ("host", "port", "username", "password") if settings[n] is not None]
        if db is not None:
            clashing.append("db")
        if clashing:
            raise ConfigError(
                f"{where}: 'url' and {', '.join(repr(c) for c in clashing)} are both set.",
                hint="put everything in the url (redis://user:password@host:port/db), "
                "or drop the url and use host/port/db/username/password.",
            )
        _check_url_shape(url, where)
        _check_url_query(url, where)
        try:
            parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            # redis-py's message may quote a piece of a password that broke the parsing
            # (a '#' ends the host part: "Port could not be cast ... 'secret'"): only its
            # kind is shown.
            reason = "unsupported scheme" if "scheme" in str(exc) else "it cannot be parsed"
            raise ConfigError(
                f"{where}: 'url' is not a Redis URL ({reason}).",
                # The encoding advice first: an '@' after a URL in the same text reads as
                # that URL's credentials, and the secret scrubber masks it all.
                hint=_ENCODE_HINT,
            ) from None
        if ssl and not url.startswith("rediss://"):
            raise ConfigError(
                f"{where}: 'ssl' is true but the url does not start with rediss://.",
                hint="use a rediss:// url for TLS (and drop 'ssl').",
            )
        if parsed.get("password"):
            secrets += (str(parsed["password"]),)
        path = urlsplit(url).path
        if "path" not in parsed and path not in ("", "/") and not _db_path(path):
            # redis-py drops a path that is not a number (/1a wrote to db 0), and reads
            # what int() takes once the slashes are gone: /1/2 was db 12, /-1 and /+1 and
            # Arabic-Indic digits were taken too.
            raise ConfigError(
                f"{where}: the url's database part is not a number.",
                hint="end the url with /N, N the database number (e.g. redis://host:6379/2), "
                "or leave it out for database 0.",
            )
        ssl = url.startswith("rediss://")
        if "path" in parsed:
            endpoint = f"unix://{parsed['path']}"
            address: tuple[Any, ...] = ("unix", str(parsed["path"]))
            db = parsed.get("db", db)
        else:
            endpoint = f"{parsed.get('host', 'localhost')}:{parsed.get('port', 6379)}"
            address = _node(str(parsed.get("host", "localhost")), parsed.get("port", 6379))
            db = parsed.get("db", db)
    else:
        host = settings["host"] or "localhost"
        port = settings["port"] or 6379
        endpoint = f"{host}:{port}"
        address = _node(host, port)
        kwargs.update(
            host=host,
            port=port,
            username=settings["username"],
            password=settings["password"],
            ssl=ssl,
        )
        if db is not None:
            kwargs["db"] = db
    if ssl:
        kwargs.update(_ssl_kwargs(settings))

    if settings["cluster"]:
        if service is not None:
            raise ConfigError(
                f"{where}: 'cluster' and 'sentinel' cannot be combined.",
                hint="Sentinel manages a primary with replicas; Cluster shards by itself. "
                "Pick the one your deployment runs.",
            )
        if address[0] == "unix":
            raise ConfigError(
                f"{where}: 'cluster' is true but the url is a unix socket.",
                hint="a Redis Cluster is reached over TCP: give a seed node as "
                "redis://host:port (or rediss://), or drop 'cluster'.",
            )
        if db not in (None, 0):
            raise ConfigError(
                f"{where}: Redis Cluster only has database 0, but db is {db}.",
                hint="drop 'db' (or the /db part of the url) in cluster mode; "
                "use 'namespace' to separate caches.",
            )
        kwargs.pop("db", None)
        # Any node names the cluster; two seed nodes of one cluster cannot be told apart
        # without connecting, so they count as different stores.
        return ConnectionPlan(
            "cluster",
            f"cluster via {endpoint}",
            kwargs,
            url,
            secrets=secrets,
            store=("redis", "cluster", address),
        )

    if service is not None or settings["sentinels"] is not None:
        if service is None or settings["sentinels"] is None:
            raise ConfigError(
                f"{where}: Sentinel needs both 'sentinel' (the service name) and 'sentinels'.",
                hint="set e.g. sentinel: 'mymaster' and sentinels: ['sentinel-1:26379'].",
            )
        if url is not None:
            raise ConfigError(
                f"{where}: 'url' cannot be combined with Sentinel.",
                hint="with Sentinel, give username/password/db as separate settings; "
                "Sentinel tells the client where the primary is.",
            )
        nodes = parse_sentinels(settings["sentinels"], where)
        for name in ("host", "port"):
            kwargs.pop(name, None)
        shown = ",".join(f"{h}:{p}" for h, p in nodes)
        return ConnectionPlan(
            "sentinel",
            f"Sentinel service '{service}' via {shown}",
            kwargs,
            sentinels=nodes,
            service=service,
            sentinel_password=settings["sentinelPassword"],
            secrets=secrets,
            store=("redis", "sentinel", service, frozenset(_node(*n) for n in nodes), db or 0),
        )
    return ConnectionPlan(
        "single", endpoint, kwargs, url, secrets=secrets, store=("redis", address, db or 0)
    )


def _retry(retries: int, retry_class: Any = Retry) -> Any:
    # Few attempts with a short backoff: an outage must fail fast, a blip must not.
    return retry_class(ExponentialBackoff(cap=0.5, base=0.05), retries)


# What a retry covers. redis-py 6+ retries these by default; 5.x retries only the errors
# named here, so without them 'retries' did nothing there on a dropped connection.
_RETRY_ON: Final = [RedisConnectionError, RedisTimeoutError]


# The plan -> redis-py arguments translation, written once: the sync and the async
# builders below differ only in the client classes they name.


def _client_kwargs(plan: ConnectionPlan, retry: Any, *, cluster: bool = False) -> dict[str, Any]:
    """``plan``'s client arguments with the connection-level retry. A cluster client takes
    no ``retry_on_error`` and only this retry: cluster-level retries would multiply the wait."""
    kwargs = {**plan.kwargs, "retry": retry}
    if not cluster:
        kwargs["retry_on_error"] = _RETRY_ON
    return kwargs


def _open(client_class: Any, plan: ConnectionPlan, **kwargs: Any) -> Any:
    """``client_class`` for ``plan``'s url, or for its host/port when it has none."""
    if plan.url is not None:
        return client_class.from_url(plan.url, **kwargs)
    return client_class(**kwargs)


def _sentinel(plan: ConnectionPlan, sentinel_class: Any, retry: Any) -> Any:
    """The Sentinel manager of ``plan`` (``sentinel_class`` is the sync or async one;
    redis-py 5 ships it untyped, 6+ typed, so it is passed as Any: mypy --strict stays
    clean on every version the provider declares, with no version-specific ignores)."""
    return sentinel_class(
        list(plan.sentinels),
        sentinel_kwargs={
            "socket_timeout": plan.kwargs["socket_timeout"],
            "socket_connect_timeout": plan.kwargs["socket_connect_timeout"],
            "password": plan.sentinel_password,
        },
        **_client_kwargs(plan, retry),
    )


def _service(plan: ConnectionPlan) -> str:
    # plan_connection() only makes a Sentinel plan with a service name.
    assert plan.service is not None
    return plan.service


def _build_cluster(plan: ConnectionPlan, retries: int) -> RedisCluster:
    cluster: RedisCluster = _open(
        RedisCluster, plan, **_client_kwargs(plan, _retry(retries), cluster=True)
    )
    return cluster


def build_client(plan: ConnectionPlan, retries: int) -> Redis | RedisCluster:
    """Create the redis-py client (it connects lazily, on its first command)."""
    if plan.mode == "cluster":
        return _build_cluster(plan, retries)
    if plan.mode == "sentinel":
        master: Redis = _sentinel(plan, Sentinel, _retry(retries)).master_for(_service(plan))
        return master
    client: Redis = _open(Redis, plan, **_client_kwargs(plan, _retry(retries)))
    return client


def _node_client(plan: ConnectionPlan, retries: int, host: str, port: int) -> Redis:
    """A sync client of one cluster node (``host``:``port``) with ``plan``'s credentials,
    TLS and timeouts, holding one connection (the command table's reader)."""
    kwargs = {**_client_kwargs(plan, _retry(retries)), "max_connections": 1}
    client: Redis = _open(Redis, plan, **kwargs)
    # The url (or host/port) names the seed node; this client talks to the one given.
    client.connection_pool.connection_kwargs.update(host=host, port=port)
    return client


_HOLDING: ContextVar[bool] = ContextVar("cachehub_redis_permit", default=False)
"""Whether the running task already holds a :class:`WaitingCluster` permit."""


class WaitingCluster(AsyncRedisCluster):
    """redis.asyncio's cluster client, whose callers wait for a free connection.

    The async cluster client fails at once (``MaxConnectionsError``) when all of a node's
    ``max_connections`` are busy, where the other clients' blocking pools make a caller
    wait. Here every request - one command, or one pipeline, which takes at most one
    connection per node - holds one of ``max_connections`` permits, so no node ever runs
    out; a request beyond waits up to ``wait_timeout`` seconds for a permit, then raises
    ``MaxConnectionsError`` (a typed ``CacheUnavailableError`` for the user).
    """

    def __init__(self, *args: Any, wait_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._size = int(kwargs.get("max_connections", _DEFAULT_POOL))
        self._permits = asyncio.Semaphore(self._size)
        self._wait = wait_timeout

    async def _take_permit(self) -> None:
        try:
            async with asyncio.timeout(self._wait):
                await self._permits.acquire()
        except TimeoutError:
            raise MaxConnectionsError(
                f"all {self._size} connections stayed busy for {self._wait:g} s"
            ) from None

    @asynccontextmanager
    async def permit(self) -> AsyncIterator[None]:
        """Hold one permit for one request (nested requests of a holder reuse its own)."""
        if _HOLDING.get():
            yield
            return
        await self._take_permit()
        token = _HOLDING.set(True)
        try:
            yield
        finally:
            _HOLDING.reset(token)
            self._permits.release()

    async def request(self, send: Callable[[], Awaitable[T]]) -> T:
        """``await send()`` (one request: a command, or a pipeline's ``execute``) under a
        permit, carried to its end even when the caller is cancelled.

        A cancel (a timeout around the call) reaches only the caller: the request runs on
        in a task of its own, which hands its connections back and then the permit.
        redis-py 5's cluster node drops a connection cancelled mid-request without
        handing it back to its free list, so each such cancel used up one of the node's
        ``max_connections`` for good, and the node then refused every request ("pool
        exhausted"). Nested requests of a holder run in place, in its task.
        """
        if _HOLDING.get():
            return await send()
        await self._take_permit()
        token = _HOLDING.set(True)  # the task copies the context: its nested requests
        try:
            task = asyncio.ensure_future(send())
        except BaseException:
            self._permits.release()
            raise
        finally:
            _HOLDING.reset(token)
        # The permit goes back when the task ends, however: a task cancelled before its
        # first step (the loop shutting down, asyncio.run cancelling what is left) never
        # runs a ``finally`` of its coroutine, and kept the permit for good.
        task.add_done_callback(self._ended)
        return await asyncio.shield(task)

    def _ended(self, task: asyncio.Future[Any]) -> None:
        self._permits.release()
        _retrieve(task)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        send = super().execute_command
        return await self.request(lambda: send(*args, **kwargs))


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a request's outcome as seen: its caller may have been cancelled, and an error
    nobody awaited must not be logged by asyncio as "never retrieved"."""
    if not task.cancelled():
        task.exception()


class _BlockingSentinelPool(AsyncSentinelConnectionPool, AsyncBlockingConnectionPool):
    """redis.asyncio's Sentinel pool with the blocking pool's wait for a free connection
    (its own fails at once when ``max_connections`` are busy)."""


def build_async_client(plan: ConnectionPlan, retries: int) -> AsyncRedis | AsyncRedisCluster:
    """The ``redis.asyncio`` client for ``plan``: the same server, settings and retries as
    :func:`build_client`'s, for one event loop (it connects on its first command).

    Tasks are cheap: a thousand may ask at once. In every mode a request beyond
    ``maxConnections`` waits (up to ``socketTimeout``) for a free connection instead of
    failing at once: a blocking pool on a single server and under Sentinel, permits on a
    cluster (:class:`WaitingCluster`).
    """
    wait = plan.kwargs["socket_timeout"]
    retry = _retry(retries, AsyncRetry)
    if plan.mode == "cluster":
        kwargs = _client_kwargs(plan, retry, cluster=True)
        cluster: AsyncRedisCluster = _open(WaitingCluster, plan, wait_timeout=wait, **kwargs)
        # Its command table is read, and its first topology built, in worker threads:
        # neither is parsed on the loop.
        offload_command_table(cluster, lambda host, port: _node_client(plan, retries, host, port))
        offload_topology(cluster)
        return cluster
    if plan.mode == "sentinel":
        master: AsyncRedis = _sentinel(plan, AsyncSentinel, retry).master_for(
            _service(plan), connection_pool_class=_BlockingSentinelPool, timeout=wait
        )
        return master
    shape: AsyncRedis = _open(AsyncRedis, plan, **_client_kwargs(plan, retry))
    pool = shape.connection_pool
    blocking = AsyncBlockingConnectionPool(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        timeout=wait,
        **pool.connection_kwargs,
    )
    client = AsyncRedis(connection_pool=blocking)
    # The client owns its pool: closing it (aclose(), or close() on redis-py 5.0.0) closes
    # the pool too (redis-py 5.0.0 has no from_pool()).
    client.auto_close_connection_pool = True
    return client


def sentinel_clients(client: Any) -> list[Any]:
    """The clients of the Sentinels behind a client built through Sentinel (none for
    another client): its own ``close``/``aclose`` leaves their connections open."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return list(getattr(manager, "sentinels", ()))


def abandon_async_client(client: AsyncRedis | AsyncRedisCluster) -> None:
    """Close the sockets of ``client``, whose event loop was closed with it open (see
    :meth:`cachehub.provider.RemoteCache._abandon`): its ``aclose()`` cannot run there.

    Each connection's socket is closed and the connection marked disconnected, as
    ``aclose()`` leaves them; every pool of the client is visited (the client's own, a
    Sentinel's sentinels', a cluster's nodes). redis-py's own state is reached by its
    attribute names, read with defaults: a version without them leaves the rest to the
    collector.
    """
    pools: list[Any] = []
    nodes = getattr(client, "nodes_manager", None)
    if nodes is not None:  # a cluster: each node keeps its connections itself
        for where in ("nodes_cache", "startup_nodes"):
            pools.extend(getattr(nodes, where, {}).values())
        # What aclose() leaves: no topology, so the client warns of nothing.
        nodes.default_node = None
        cast(Any, client)._initialize = True
    else:
        pools.append(cast(Any, client).connection_pool)
        pools.extend(sentinel.connection_pool for sentinel in sentinel_clients(client))
    for pool in pools:
        connections = [
            *getattr(pool, "_connections", ()),  # a cluster node
            *getattr(pool, "_available_connections", ()),
            *getattr(pool, "_in_use_connections", ()),
        ]
        for connection in connections:
            writer = getattr(connection, "_writer", None)
            if writer is not None:
                abandon_transport(writer.transport)
            connection._writer = connection._reader = None


# A RedisCluster client discovers the topology and downloads the command table when it
# is created (hundreds of ms), so caches with identical cluster settings share one
# client, counted by users. When the last user closes, its sockets are closed but the
# client (topology, command table) is kept for the next cache with the same settings.
# Single-node and Sentinel clients are cheap to create and never shared.
_shared_lock = fork_safe_lock()
_shared: dict[tuple[Any, ...], tuple[RedisCluster, int]] = {}


def _share_key(plan: ConnectionPlan, retries: int) -> tuple[Any, ...]:
    return (plan.url, retries, tuple(sorted(plan.kwargs.items())))


def acquire_client(plan: ConnectionPlan, retries: int) -> Redis | RedisCluster:
    """The client for ``plan``: a new one, or the shared one of a cluster."""
    if plan.mode != "cluster":
        return build_client(plan, retries)
    key = _share_key(plan, retries)
    with _shared_lock:
        shared = _shared.get(key)
        client, users = shared if shared is not None else (_build_cluster(plan, retries), 0)
        _shared[key] = (client, users + 1)
        return client


def release_client(plan: ConnectionPlan, retries: int, client: Redis | RedisCluster) -> None:
    """Give back a client from :func:`acquire_client`; the last user closes it."""
    if plan.mode == "cluster":
        key = _share_key(plan, retries)
        with _shared_lock:
            shared = _shared.get(key)
            if shared is not None and shared[0] is client:
                users = max(0, shared[1] - 1)
                _shared[key] = (client, users)
                if users == 0:
                    client.disconnect_connection_pools()  # type: ignore[no-untyped-call]
                return
    # Through Sentinel, the Sentinels' own clients too: each close left a connection to
    # a Sentinel open for the collector to find (the async close already did this).
    for each in (client, *sentinel_clients(client)):
        each.close()
        # redis-py 5.0.0's close() gives back the client's own connection only; later
        # versions also disconnect the pool the client made, as this does.
        each.connection_pool.disconnect()
