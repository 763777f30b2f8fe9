"""The DynamoDB client of a cache: region resolution, credentials, timeouts, retries.

All caches of a process share one botocore session, used only to build clients: loading
DynamoDB's service model costs ~0.3 s, and a shared session loads it once. Credentials
given in the settings are passed to each client and never stored on the shared session.

The client skips botocore's client-side parameter validation: it walks every attribute of
every request against the service model (~0.6 ms of client CPU per 100-key BatchGetItem or
25-item BatchWriteItem), and the requests of the cache API are built by the provider in a
fixed shape. Parameters that come from users (every ``dynamodb_command``, and the
bootstrap's table and key names from the settings) are validated explicitly with
:func:`validate`, so their errors are unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Final

import botocore.session
from botocore.config import Config
from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url
from botocore.validate import validate_parameters

from cachehub.errors import ConfigError
from cachehub.provider import abandon_transport, fork_safe_lock
from cachehub.scrub import shown_value

__all__ = [
    "check_host",
    "resolve_region",
    "make_client",
    "make_async_client",
    "abandon_async_client",
    "validate",
    "DEFAULT_LOCAL_REGION",
]

DEFAULT_LOCAL_REGION = "us-east-1"
"""Region used when only ``host`` is set: DynamoDB Local and moto accept any region."""

_SESSION: Any = None
# botocore sessions are not thread-safe while creating clients (tens of ms: a fork
# may well land while a thread holds it)
_SESSION_LOCK = fork_safe_lock()


def _session() -> Any:
    global _SESSION
    if _SESSION is None:
        _SESSION = botocore.session.get_session()
    return _SESSION


def resolve_region(settings: Mapping[str, Any], where: str) -> str:
    """The region to use; checks the credential settings too. No network is used.

    Credentials: both ``accessKeyId`` and ``secretkey``, or neither (boto3's default
    chain: environment, shared files, IAM role). The values never appear in messages.
    """
    access_key = settings["accessKeyId"] or None
    secret_key = settings["secretkey"] or None
    if (access_key is None) != (secret_key is None):
        given, missing = (
            ("accessKeyId", "secretkey") if access_key else ("secretkey", "accessKeyId")
        )
        raise ConfigError(
            f"{where}: '{given}' is set but '{missing}' is not.",
            hint="set both accessKeyId and secretkey, or neither to use the default AWS "
            "credential chain (environment, ~/.aws, IAM role).",
        )
    region = settings["region"]
    if not region:
        with _SESSION_LOCK:
            region = _session().get_config_variable("region")
    if not region:
        if not settings["host"]:
            raise ConfigError(
                f"{where}: no AWS region is configured.",
                hint="set region (e.g. 'us-east-1') in the cache settings or AWS_DEFAULT_REGION "
                "in the environment; for DynamoDB Local set host instead.",
            )
        region = DEFAULT_LOCAL_REGION
    return str(region)


_DEFAULT_ENDPOINTS: Final = frozenset({"dynamodb.amazonaws.com", "https://dynamodb.amazonaws.com"})


def normalize_host(host: str | None) -> str | None:
    """``host`` as the Lucee extension reads it: no scheme means ``https://``, and
    ``dynamodb.amazonaws.com`` (or an empty value) means the region's default endpoint."""
    if host is None:
        return None
    host = host.strip()
    if not host or host.rstrip("/").lower() in _DEFAULT_ENDPOINTS:
        return None
    if "://" not in host:
        host = f"https://{host}"
    return host


def check_host(host: str | None, where: str) -> None:
    """Refuse a ``host`` botocore would reject on first use (its error quotes the URL)."""
    if not host or is_valid_endpoint_url(host) or is_valid_ipv6_endpoint_url(host):
        return
    raise ConfigError(
        f"{where}: setting 'host' is not a valid endpoint URL: {shown_value(host)}.",
        hint="write it like http://localhost:8000 (scheme, host, optional port); "
        "percent-encode special characters of a user:password part.",
    )


def _client_options(region: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """What both clients are built from: endpoint, region, credentials, timeouts, retries.

    One place, so the boto3 and the aiobotocore client of a cache never differ.
    """
    seconds = settings["liveTimeout"] / 1000.0
    return {
        "region_name": region,
        "endpoint_url": settings["host"] or None,
        "aws_access_key_id": settings["accessKeyId"] or None,
        "aws_secret_access_key": settings["secretkey"] or None,
        "aws_session_token": settings["sessionToken"] or None,
        "config": {
            "connect_timeout": seconds,
            "read_timeout": seconds,
            "retries": {
                "mode": settings["retryMode"],
                "total_max_attempts": settings["maxAttempts"],
            },
            "max_pool_connections": settings["maxConnections"],
            "user_agent_extra": "cachehub",
            "parameter_validation": False,  # see the module docstring and validate()
        },
    }


def _bad_endpoint(exc: ValueError) -> ConfigError:
    # botocore's message quotes the endpoint URL: scrubbed by ConfigError's rendering
    return ConfigError(
        f"cannot create the DynamoDB client: {exc}",
        hint="check host (an endpoint URL such as http://localhost:8000) and region.",
    )


def make_client(region: str, settings: Mapping[str, Any]) -> Any:
    """The cache's one DynamoDB client (thread-safe; shared by all threads of the cache)."""
    options = _client_options(region, settings)
    options["config"] = Config(**options["config"])
    try:
        with _SESSION_LOCK:
            return _session().create_client("dynamodb", **options)
    except ValueError as exc:
        raise _bad_endpoint(exc) from None


_AIO_SESSION: Any = None


def _aio_session() -> Any:
    """The process's aiobotocore session, its DynamoDB model loaded (blocking: run in a
    worker thread, never on the event loop)."""
    global _AIO_SESSION
    with _SESSION_LOCK:
        if _AIO_SESSION is None:
            from aiobotocore.session import get_session

            session = get_session()
            # What creating a client reads from disk (~0.3 s), loaded once, here: the
            # loader caches it, so clients made on the loop later read nothing.
            warm = getattr(session, "warm_up_loader_caches", None)
            if warm is not None:
                warm("dynamodb")
            else:  # older aiobotocore: what that method loads, by hand
                loader = session.get_component("data_loader")
                for name in ("_retry", "endpoints", "partitions", "sdk-default-configuration"):
                    loader.load_data(name)
                for kind in ("service-2", "endpoint-rule-set-1"):
                    loader.load_service_model("dynamodb", kind)
            session.get_scoped_config()  # reads ~/.aws/config once
            _AIO_SESSION = session
        return _AIO_SESSION


def _build_async_client(options: dict[str, Any]) -> Any:
    """An aiobotocore client, built on this (worker) thread: building one is 0.1-1 s of
    CPU (the service model turned into a client class, endpoint rules, handlers), too
    long for the event loop. Built with a throwaway loop; the client binds to no loop
    until it is entered, which :func:`make_async_client` does on the caller's loop."""
    from aiobotocore.config import AioConfig

    session = _aio_session()
    options = {**options, "config": AioConfig(**options["config"])}

    async def build() -> Any:
        return await session._create_client("dynamodb", **options)

    return asyncio.run(build())


async def make_async_client(region: str, settings: Mapping[str, Any]) -> Any:
    """A new aiobotocore DynamoDB client for the running event loop, built from the same
    settings as :func:`make_client` (close it with ``await client.close()``)."""
    try:
        client = await asyncio.to_thread(_build_async_client, _client_options(region, settings))
    except ValueError as exc:
        raise _bad_endpoint(exc) from None
    return await client.__aenter__()  # its HTTP session, on this loop


def abandon_async_client(client: Any) -> None:
    """Close the sockets of an aiobotocore ``client`` whose event loop was closed with it
    open (see :meth:`cachehub.provider.RemoteCache._abandon`): ``await client.close()``
    cannot run there.

    Every connection of its aiohttp sessions (one per proxy) has its socket closed, idle
    or in use, then each connector is marked closed: aiohttp's own close on a closed loop
    does only that, and left the sockets open; a session or connector collected unclosed
    logs "Unclosed client session" / "Unclosed connector" at ERROR level. aiohttp's and
    aiobotocore's state is reached by attribute names, read with defaults: a version
    without them leaves the rest to the collector.
    """
    http = getattr(getattr(client, "_endpoint", None), "http_session", None)
    for session in list((getattr(http, "_sessions", None) or {}).values()):
        connector = getattr(session, "_connector", None)
        if connector is None:
            continue
        held = [proto for idle in getattr(connector, "_conns", {}).values() for proto, _ in idle]
        for proto in [*held, *getattr(connector, "_acquired", ())]:
            transport = getattr(proto, "transport", None)
            if transport is not None:
                abandon_transport(transport)
        with contextlib.suppress(RuntimeError):
            connector._close()  # on a closed loop: marks it closed, touches nothing else


def validate(client: Any, operation: str, params: Mapping[str, Any]) -> None:
    """botocore's own parameter validation of one request (``ParamValidationError``).

    What a default client does before every request; this provider's client skips it and
    calls this only for parameters it did not build itself.
    """
    validate_parameters(params, client.meta.service_model.operation_model(operation).input_shape)
